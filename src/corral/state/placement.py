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


class PoolLayout:
    """A pool's hosts, their sizes and, per level (rack, pod, cluster, then the whole pool as
    one domain), each host's domain, the number of domains and, where every domain of the
    level below lies inside one of this level, that map (so counts add up level by level)."""

    def __init__(self, fleet, pool: int, domains: list[np.ndarray]) -> None:  # noqa: ANN001
        hosts = fleet.pool_hosts[pool]
        self.hosts = hosts
        self.every_host = hosts.size == len(fleet.host_gpus)  # (hosts are then 0..n-1, in order)
        self.size = fleet.host_gpus[hosts]
        self.uniform = int(self.size.min()) == int(self.size.max())
        self.levels: list[tuple[np.ndarray, int, np.ndarray | None]] = []
        below: tuple[np.ndarray, int] | None = None
        for dom in [domain[hosts] for domain in domains] + [np.zeros(hosts.size, dtype=np.int64)]:
            bins, parent = int(dom.max()) + 1, None
            if below is not None:
                parent = np.zeros(below[1], dtype=np.int64)
                parent[below[0]] = dom
                if not np.array_equal(parent[below[0]], dom):
                    parent = None
            self.levels.append((dom, bins, parent))
            below = (dom, bins)


class Placer:
    def __init__(self, state: FleetState, config: PlacementConfig | None = None) -> None:
        self.state = state
        self.config = config or PlacementConfig()
        self.grow(state.fleet)

    def grow(self, fleet) -> None:  # noqa: ANN001 (a Fleet with hosts added)
        self._domains = [fleet.host_rack, fleet.host_pod, fleet.host_cluster]
        self._by_pool: dict[int, PoolLayout] = {}

    def _layout(self, pool: int) -> PoolLayout:
        """`pool`'s hosts and topology: fixed until hosts are added."""
        found = self._by_pool.get(pool)
        if found is None:
            found = PoolLayout(self.state.fleet, pool, self._domains)
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
        pool_free = state.pool_free[pool] if free is None else int(self._in_pool(pool, free).sum())
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

    def find_capped(
        self, pool: int, gpus: int, level: int | None, hosts: np.ndarray, most: np.ndarray
    ) -> Placement | None:
        """`find` on the current free GPUs with each of `hosts` given at most `most` free.
        A job on one host goes on the best fit of the other hosts (from the live index) or
        on one of `hosts`, whichever fits better; a gang is placed on the vector so capped."""
        state = self.state
        if gpus > state.pool_max_host_gpus[pool]:
            free = state.free.copy()
            free[hosts] = np.minimum(free[hosts], most)
            return self.find(pool, gpus, False, level, free)
        left = state.left
        best = state.lowest_host_with(pool, gpus, skip=set(hosts.tolist()))
        fit = None if best is None else (left[best], best)
        for host, cap in zip(hosts.tolist(), most.tolist(), strict=True):
            room = min(left[host], cap)
            if room >= gpus and (fit is None or (room, host) < fit):
                fit = (room, host)
        return None if fit is None else ((fit[1], gpus),)

    def unmoved_by(self, pool: int, gpus: int, free: np.ndarray, hosts: list[int]) -> bool:
        """Whether taking GPUs from `hosts` of the vector `free` leaves where `find` puts
        `gpus` on it as it is (placed or not): none of those hosts could take a part of the
        job (a small job's host with room for it; a gang's whole host, or one with room for
        its remainder), so no count or choice `find` makes changes."""
        state = self.state
        host_gpus = state.pool_max_host_gpus[pool]
        if gpus <= host_gpus:
            return all(free[h] < gpus for h in hosts)
        if not self._layout(pool).uniform:  # (a smaller whole host counts as a full one)
            return False
        remainder = gpus % host_gpus
        return all(free[h] < host_gpus and (not remainder or free[h] < remainder) for h in hosts)

    def _in_pool(self, pool: int, free: np.ndarray) -> np.ndarray:
        """`free` of `pool`'s hosts, in host order (the vector itself where the pool is every
        host: no copy of a large fleet's vector)."""
        layout = self._layout(pool)
        return free if layout.every_host else free[layout.hosts]

    def _best_fit(self, pool: int, gpus: int, free: np.ndarray) -> int | None:
        hosts = self.state.fleet.pool_hosts[pool]
        f = self._in_pool(pool, free)
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
        """Whole free hosts (and one host with room for the remainder) in the smallest level
        of domain that has them, the fullest such domain. Hosts are counted per rack once;
        a wider domain's counts are the sums of its racks' (or pods')."""
        layout = self._layout(pool)
        hosts = layout.hosts
        free = self._in_pool(pool, all_free)
        whole = free == layout.size
        host_gpus = self.state.pool_max_host_gpus[pool]
        n_whole, remainder = divmod(gpus, host_gpus)
        whole_at = np.flatnonzero(whole)  # (local indices, ascending)
        partial_at = np.flatnonzero((free >= remainder) & ~whole) if remainder else whole_at[:0]
        if whole_at.size < n_whole or (whole_at.size == n_whole and not partial_at.size and remainder):
            return None  # (no domain has more than the whole pool)
        levels = layout.levels if level is None else layout.levels[:level]
        whole_count = partial_count = np.zeros(0)
        for i, (dom, bins, parent) in enumerate(levels):
            if i == 0 or parent is None:
                whole_count = np.bincount(dom[whole_at], minlength=bins)
                if remainder:
                    partial_count = np.bincount(dom[partial_at], minlength=bins)
            else:
                whole_count = np.bincount(parent, weights=whole_count, minlength=bins)
                if remainder:
                    partial_count = np.bincount(parent, weights=partial_count, minlength=bins)
            fits = whole_count >= n_whole
            if remainder:
                fits &= (partial_count > 0) | (whole_count > n_whole)
            candidates = np.flatnonzero(fits)
            if not candidates.size:
                continue
            best = int(candidates[np.argmin(whole_count[candidates])])
            members = whole_at[dom[whole_at] == best]
            placement = [(int(h), host_gpus) for h in hosts[members[:n_whole]].tolist()]
            if remainder:
                part = partial_at[dom[partial_at] == best]
                # (the partial host with fewest free GPUs, lowest first; else one more whole)
                pick = int(part[np.argmin(free[part])]) if part.size else int(members[n_whole])
                placement.append((int(hosts[pick]), remainder))
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
