"""Capacity brokers: how many replicas each service should hold at each step. Policy only;
the fleet simulation (capacity/sim.py) applies the decisions, reclaims GPUs from training and
charges start-up times.

- static: a fixed partition sized for the horizon's peak, as a fleet that does not move
  capacity would be;
- reactive: autoscaling on the demand seen now, with headroom;
- predictive: a seasonal forecast (same time last week, or yesterday while less than a week
  is known, scaled by how the last hour compares) covering the time a new replica needs to
  reach service, so capacity is there before the peak.

reactive and predictive scale up at once and scale down only after the target has stayed
below the current count by more than `band` for `cooldown_steps` steps (hysteresis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from corral.errors import InputError

BROKERS = ("static", "reactive", "predictive")
DAY_S = 86400.0


@dataclass
class Broker:
    """Replica targets per service. `demand` rows are services, columns steps; a broker may
    read its columns up to and including `t` (what monitoring shows now), and `lead_steps`
    (start-up plus reclaim notice, in steps) per service."""

    kind: str
    headroom: float = 0.1
    band: float = 0.1
    cooldown_steps: int = 6
    level_steps: int = 12
    _held: list[int] = field(default_factory=list)
    _below: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind not in BROKERS:
            raise InputError(f"unknown broker '{self.kind}'; known: {', '.join(BROKERS)}", field="broker")
        if not self.headroom >= 0 or not self.band >= 0 or self.cooldown_steps < 0:
            raise InputError("headroom and band must be >= 0, cooldown_steps >= 0", field="broker")

    def reset(self) -> None:
        """Forget the hysteresis state, before a new simulation."""
        self._held, self._below = [], []

    def targets(
        self,
        t: int,
        demand: np.ndarray,
        gpus_per_replica: np.ndarray,
        min_replicas: np.ndarray,
        lead_steps: np.ndarray,
        step_s: float,
    ) -> np.ndarray:
        services = demand.shape[0]
        if not self._held:
            self._held = [0] * services
            self._below = [0] * services
        out = np.zeros(services, dtype=np.int64)
        for s in range(services):
            want = self.wanted(t, demand[s], int(lead_steps[s]), step_s)
            need = self.replicas_for(want, int(gpus_per_replica[s]), int(min_replicas[s]))
            out[s] = need if self.kind == "static" else self._hysteresis(s, need)
        return out

    def wanted(self, t: int, series: np.ndarray, lead_steps: int, step_s: float) -> float:
        """The demand, in GPUs, a service's replicas are sized for at step `t`: the horizon's
        peak (static), demand now (reactive), or the larger of now and the forecast over the
        lead (predictive)."""
        if self.kind == "static":
            return float(series.max())
        if self.kind == "reactive":
            return float(series[t])
        return max(float(series[t]), self._forecast(series, t, lead_steps, step_s))

    def replicas_for(self, gpus: float, gpus_per_replica: int, min_replicas: int) -> int:
        """Replicas that serve `gpus` of demand with the headroom, never below the floor."""
        return max(min_replicas, math.ceil(gpus * (1 + self.headroom) / gpus_per_replica - 1e-9))

    def _hysteresis(self, s: int, need: int) -> int:
        held = self._held[s]
        if need >= held:
            self._below[s] = 0
            self._held[s] = need
        elif need < held * (1 - self.band):
            self._below[s] += 1
            if self._below[s] >= self.cooldown_steps:
                self._held[s], self._below[s] = need, 0
        else:
            self._below[s] = 0
        return self._held[s]

    def lendable_ceiling(
        self,
        t: int,
        demand: np.ndarray,
        gpus_per_replica: np.ndarray,
        min_replicas: np.ndarray,
        held_gpus: int,
        horizon_steps: int,
        step_s: float,
    ) -> int:
        """The most GPUs serving should be expected to want over the next `horizon_steps`:
        what may be lent to training without being reclaimed before then. Only the
        predictive broker looks ahead; the others lend what serving holds now."""
        if self.kind != "predictive":
            return held_gpus
        total = 0
        for s in range(demand.shape[0]):
            want = max(float(demand[s, t]), self._forecast(demand[s], t, horizon_steps, step_s))
            replicas = self.replicas_for(want, int(gpus_per_replica[s]), int(min_replicas[s]))
            total += replicas * int(gpus_per_replica[s])
        return max(total, held_gpus)

    def _forecast(self, series: np.ndarray, t: int, lead: int, step_s: float) -> float:
        """Highest demand expected over the next `lead` steps: the same steps a week ago
        (a day ago while less than a week is known), scaled by how the last hour compares
        with the same hour then."""
        day = int(round(DAY_S / step_s))
        season = 7 * day if t >= 7 * day - 1 else day
        if t < season - 1:
            return float(series[t])
        ahead = series[t - season + 1 : t - season + 1 + lead]
        k = min(self.level_steps, t - season + 1)
        level = 1.0
        if k >= 1:
            past = series[t - season - k + 1 : t - season + 1].mean()
            level = float(series[t - k + 1 : t + 1].mean() / past) if past > 0 else 1.0
        return level * float(ahead.max()) if len(ahead) else float(series[t])
