"""A whole training run from its step estimate: steps, days, GPU-hours with failures and
checkpoints, energy, cost and CO2. Failures use the reliability work's closed form (Kokolis
et al.'s expected ETTR with Daly's interval), so the planner and the simulator agree.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from corral.errors import InputError
from corral.plan.step import StepEstimate
from corral.reliability.ettr import DAY_S, best_interval_s, expected_ettr, mtbf_s
from corral.reliability.failures import LLAMA3_RATE
from corral.reliability.scenarios import MAINTENANCE_PER_DAY, RESTART_S, WRITE_S

HOUR_S = 3600.0

# Host power over GPU power: an NVIDIA DGX H100 draws up to 10.2 kW (datasheet) for eight
# 700 W GPUs (5.6 kW): CPUs, memory, NICs, NVSwitches and fans add ~82%. An upper bound, as
# the GPU's TDP is: the energy figures are what the facility must supply at full load.
HOST_OVERHEAD = 10.2 / 5.6
# Meta's datacenter power usage effectiveness (sustainability reports, REFERENCE.md sec. 3).
PUE = 1.09
# US EPA eGRID2022 national average output emission rate, 823.1 lb CO2 per MWh.
GRID_KG_CO2_PER_KWH = 823.1 * 0.45359237 / 1000.0
# A rented H100 hour, order of 2025-26 reserved cloud prices; override for your contract.
USD_PER_GPU_HOUR = 2.0
# Electricity for the capex path (US industrial average, order of magnitude).
USD_PER_KWH = 0.08


@dataclass(frozen=True)
class Reliability:
    """The failure process and checkpointing a run lives with; Llama 3's by default."""

    rate_per_1000_node_days: float = LLAMA3_RATE
    restart_s: float = RESTART_S
    write_s: float = WRITE_S
    checkpoint_s: float | None = None  # None: Daly's interval for the job's MTBF (0 if writes are free)
    maintenance_per_day: float = MAINTENANCE_PER_DAY
    gpus_per_host: int = 8

    def ettr(self, gpus: int) -> tuple[float, float]:
        """(effective training time ratio, checkpoint interval) of a job on `gpus` GPUs.
        Planned maintenance checkpoints first, so it costs a restart and no lost work."""
        for name in ("rate_per_1000_node_days", "restart_s", "write_s", "maintenance_per_day"):
            if not getattr(self, name) >= 0:
                raise InputError(f"{name} must be >= 0", field=name)
        if self.gpus_per_host < 1:
            raise InputError("gpus_per_host must be >= 1", field="gpus_per_host")
        nodes = math.ceil(gpus / self.gpus_per_host)
        mtbf = mtbf_s(nodes, self.rate_per_1000_node_days)
        interval = best_interval_s(self.write_s, mtbf) if self.checkpoint_s is None else self.checkpoint_s
        if not interval >= 0 or (interval == 0 and self.write_s > 0):
            why = "checkpoint interval must be > 0 (or 0 with free checkpoints)"
            raise InputError(why, field="checkpoint_s")
        failures = expected_ettr(nodes, self.rate_per_1000_node_days, interval, self.restart_s, self.write_s)
        maintenance = max(0.0, 1.0 - self.maintenance_per_day * self.restart_s / DAY_S)
        return failures * maintenance, interval


@dataclass(frozen=True)
class Prices:
    """What a GPU-hour costs: a rate, or hardware bought and amortised plus its electricity."""

    usd_per_gpu_hour: float = USD_PER_GPU_HOUR
    capex_usd_per_gpu: float | None = None  # all-in: server, network and building share
    amortisation_years: float = 4.0
    usd_per_kwh: float = USD_PER_KWH
    host_overhead: float = HOST_OVERHEAD
    pue: float = PUE
    grid_kg_co2_per_kwh: float = GRID_KG_CO2_PER_KWH


@dataclass(frozen=True)
class RunEstimate:
    """A run of `tokens` tokens: compute time, then wall clock at the expected ETTR."""

    tokens: float
    steps: int
    compute_days: float
    ettr: float
    checkpoint_interval_s: float
    days: float
    gpu_hours: float
    energy_mwh: float
    cost_usd: float
    co2_tonnes: float

    def as_dict(self) -> dict[str, float | None]:
        """As JSON has it: an interval that never comes (a job that never fails) is null."""
        return {k: v if math.isfinite(v) else None for k, v in asdict(self).items()}


def tokens_for_flops(step: StepEstimate, flops: float) -> float:
    """Tokens a model-FLOPs budget buys (the 6N + attention count of the step's sequence)."""
    if not flops > 0:
        raise InputError("the FLOPs budget must be > 0", field="flops")
    return flops / step.model_flops_per_token


def estimate_run(
    step: StepEstimate,
    tokens: float,
    reliability: Reliability | None = None,
    prices: Prices | None = None,
) -> RunEstimate:
    """Scale one step to a run of `tokens` and charge for it."""
    if not tokens > 0:
        raise InputError("tokens must be > 0", field="tokens")
    rel = reliability or Reliability()
    price = prices or Prices()
    steps = math.ceil(tokens / step.batch_tokens)
    compute_s = steps * step.step_s
    ettr, interval = rel.ettr(step.gpus)
    if ettr <= 0:
        raise InputError(
            f"a {step.gpus}-GPU job fails faster than it restarts and checkpoints: no progress",
            field="gpus",
        )
    wall_s = compute_s / ettr
    gpu_hours = step.gpus * wall_s / HOUR_S
    kwh = gpu_hours * step.power_w / 1000.0 * price.host_overhead * price.pue
    if price.capex_usd_per_gpu is None:
        cost = gpu_hours * price.usd_per_gpu_hour
    else:
        hours = price.amortisation_years * 365.0 * 24.0
        cost = gpu_hours * price.capex_usd_per_gpu / hours + kwh * price.usd_per_kwh
    return RunEstimate(
        tokens=tokens,
        steps=steps,
        compute_days=compute_s / DAY_S,
        ettr=ettr,
        checkpoint_interval_s=interval,
        days=wall_s / DAY_S,
        gpu_hours=gpu_hours,
        energy_mwh=kwh / 1000.0,
        cost_usd=cost,
        co2_tonnes=kwh * price.grid_kg_co2_per_kwh / 1000.0,
    )
