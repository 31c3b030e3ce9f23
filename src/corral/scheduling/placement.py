"""Placement policy: where a gang goes.

- A gang no larger than a host goes on one host, best fit (fewest free GPUs that suffice,
  then lowest host number), to keep whole hosts free for gangs.
- A larger gang takes whole free hosts (plus one host for a remainder) inside the smallest
  topology domain that holds it: rack, then pod, then cluster, then the whole pool
  (consolidation). Among domains of one level it takes the fullest one that fits.
- Relaxed placement (Tiresias lets jobs that are not placement-sensitive skip consolidation)
  spreads a gang over the hosts with the most free GPUs. A job is placed relaxed once it
  has waited `relax_after_s`; None means never.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from corral.sim.allocation import FleetState, Placement


@dataclass(frozen=True)
class PlacementConfig:
    relax_after_s: float | None = None


class Placer:
    def __init__(self, state: FleetState, config: PlacementConfig | None = None) -> None:
        self.state = state
        self.config = config or PlacementConfig()
        fleet = state.fleet
        self._domains = [fleet.host_rack, fleet.host_pod, fleet.host_cluster]

    def find(self, pool: int, gpus: int, relaxed: bool = False) -> Placement | None:
        """A placement for `gpus` GPUs in `pool` on the current free GPUs, or None. Pure."""
        state = self.state
        if gpus > state.pool_free[pool]:
            return None
        if gpus <= state.pool_max_host_gpus[pool]:
            host = state.lowest_host_with(pool, gpus)
            if host is not None:
                return ((host, gpus),)
        else:
            found = self._consolidated(pool, gpus)
            if found is not None:
                return found
        return self._spread(pool, gpus) if relaxed else None

    def _consolidated(self, pool: int, gpus: int) -> Placement | None:
        fleet = self.state.fleet
        hosts = fleet.pool_hosts[pool]
        free = self.state.free[hosts]
        size = fleet.host_gpus[hosts]
        whole = free == size
        host_gpus = self.state.pool_max_host_gpus[pool]
        n_whole, remainder = divmod(gpus, host_gpus)
        partial = (~whole) & (free >= remainder) if remainder else np.zeros_like(whole)
        for level in [*self._domains, None]:
            dom = level[hosts] if level is not None else np.zeros(hosts.size, dtype=np.int32)
            whole_count = np.bincount(dom[whole], minlength=int(dom.max()) + 1)
            if remainder:
                has_partial = np.bincount(dom[partial], minlength=whole_count.size) > 0
                fits = (whole_count >= n_whole) & (has_partial | (whole_count > n_whole))
            else:
                fits = whole_count >= n_whole
            if not fits.any():
                continue
            candidates = np.flatnonzero(fits)
            best = int(candidates[np.argmin(whole_count[candidates])])
            in_dom = dom == best
            chosen = hosts[in_dom & whole][:n_whole]
            placement = [(int(h), int(host_gpus)) for h in chosen]
            if remainder:
                part = in_dom & partial
                if part.any():
                    idx = np.flatnonzero(part)
                    pick = idx[np.argmin(free[idx])]  # first minimum = lowest host
                    placement.append((int(hosts[pick]), remainder))
                else:
                    spare = hosts[in_dom & whole][n_whole]
                    placement.append((int(spare), remainder))
            return tuple(placement)
        return None

    def _spread(self, pool: int, gpus: int) -> Placement | None:
        hosts = self.state.fleet.pool_hosts[pool]
        free = self.state.free[hosts]
        order = np.argsort(-free, kind="stable")
        taken: list[tuple[int, int]] = []
        need = gpus
        for i in order.tolist():
            f = int(free[i])
            if f <= 0 or need == 0:
                break
            take = min(f, need)
            taken.append((int(hosts[i]), take))
            need -= take
        return tuple(taken) if need == 0 else None
