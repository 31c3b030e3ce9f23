"""Placement policy: where a gang goes.

- A gang no larger than a host goes on one host, best fit (fewest free GPUs that suffice,
  then lowest host number), to keep whole hosts free for gangs.
- A larger gang takes whole free hosts (plus one host for a remainder) inside the smallest
  topology domain that holds it: rack, then pod, then cluster, then the whole pool
  (consolidation). Among domains of one level it takes the fullest one that fits.
- Relaxed placement (Tiresias lets jobs that are not placement-sensitive skip consolidation)
  spreads a gang over the hosts with the most free GPUs. A job is placed relaxed once it
  has waited `relax_after_s`; None means never.
- A job that requires a topology level (host, rack, pod or cluster; an NVLink domain is the
  host, or the rack where racks are NVLink domains such as GB200 NVL72) is placed inside one
  domain of that level or not at all, and never spread.

`find` works on the live free-GPU counts, or on a hypothetical vector of them (what would be
free if some jobs were preempted), so preemption can check a placement before it acts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from corral.errors import InputError
from corral.state.allocation import FleetState, Placement

HOST, RACK, POD, CLUSTER = 0, 1, 2, 3
LEVELS = {"host": HOST, "rack": RACK, "pod": POD, "cluster": CLUSTER}


@dataclass(frozen=True)
class PlacementConfig:
    relax_after_s: float | None = None

    def __post_init__(self) -> None:
        if self.relax_after_s is not None and not 0 <= self.relax_after_s < math.inf:
            raise InputError(
                f"must be a finite number of seconds >= 0, got {self.relax_after_s}", field="relax-after"
            )


class Placer:
    def __init__(self, state: FleetState, config: PlacementConfig | None = None) -> None:
        self.state = state
        self.config = config or PlacementConfig()
        self.grow(state.fleet)

    def grow(self, fleet) -> None:  # noqa: ANN001 (a Fleet with hosts added)
        self._domains = [fleet.host_rack, fleet.host_pod, fleet.host_cluster]
        self._by_pool: dict[int, list[tuple[np.ndarray, int]]] = {}

    def _pool_domains(self, pool: int) -> list[tuple[np.ndarray, int]]:
        """Each level's domain of every host of `pool` (rack, pod, cluster, then one domain
        for the whole pool), with the number of bins it needs: fixed until hosts are added."""
        found = self._by_pool.get(pool)
        if found is None:
            hosts = self.state.fleet.pool_hosts[pool]
            found = [(dom, int(dom.max()) + 1) for dom in (domain[hosts] for domain in self._domains)]
            found.append((np.zeros(hosts.size, dtype=np.int32), 1))
            self._by_pool[pool] = found
        return found

    def find(
        self,
        pool: int,
        gpus: int,
        relaxed: bool = False,
        level: int | None = None,
        free: np.ndarray | None = None,
    ) -> Placement | None:
        """A placement for `gpus` GPUs in `pool` inside one domain of `level` (None: any),
        on the current free GPUs or on the hypothetical per-host vector `free`, or None. Pure."""
        state = self.state
        hosts = state.fleet.pool_hosts[pool]
        pool_free = state.pool_free[pool] if free is None else int(free[hosts].sum())
        if gpus > pool_free:
            return None
        if gpus <= state.pool_max_host_gpus[pool]:
            host = state.lowest_host_with(pool, gpus) if free is None else self._best_fit(pool, gpus, free)
            if host is not None:
                return ((host, gpus),)
            if level == HOST:
                return None
        elif level != HOST:
            found = self._consolidated(pool, gpus, level, state.free if free is None else free)
            if found is not None:
                return found
        if relaxed and level is None:
            return self._spread(pool, gpus, state.free if free is None else free)
        return None

    def _best_fit(self, pool: int, gpus: int, free: np.ndarray) -> int | None:
        hosts = self.state.fleet.pool_hosts[pool]
        f = free[hosts]
        fits = np.flatnonzero(f >= gpus)
        if fits.size == 0:
            return None
        return int(hosts[fits[np.argmin(f[fits])]])

    def domain_gpus(self, pool: int, level: int) -> int:
        """GPUs in the largest domain of `level` in `pool`: the largest gang it can ever hold."""
        fleet = self.state.fleet
        hosts = fleet.pool_hosts[pool]
        if level == HOST:
            return int(fleet.host_gpus[hosts].max())
        dom = self._domains[level - 1][hosts]
        return int(np.bincount(dom, weights=fleet.host_gpus[hosts]).max())

    def _consolidated(
        self, pool: int, gpus: int, level: int | None, all_free: np.ndarray
    ) -> Placement | None:
        fleet = self.state.fleet
        hosts = fleet.pool_hosts[pool]
        free = all_free[hosts]
        size = fleet.host_gpus[hosts]
        whole = free == size
        host_gpus = self.state.pool_max_host_gpus[pool]
        n_whole, remainder = divmod(gpus, host_gpus)
        partial = (~whole) & (free >= remainder) if remainder else np.zeros_like(whole)
        domains = self._pool_domains(pool)
        for dom, bins in domains if level is None else domains[:level]:
            whole_count = np.bincount(dom[whole], minlength=bins)
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

    def _spread(self, pool: int, gpus: int, all_free: np.ndarray) -> Placement | None:
        hosts = self.state.fleet.pool_hosts[pool]
        free = all_free[hosts]
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
