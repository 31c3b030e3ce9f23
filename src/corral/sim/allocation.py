"""Who holds which GPUs: the free-GPU count of every host, kept as numpy arrays plus per-pool
indexes that make the common questions (is there a host with k free GPUs?) cheap.

This is mechanism: it records allocations and refuses impossible ones; it never chooses.
"""

from __future__ import annotations

import heapq

import numpy as np

from corral.fleet import Fleet

Placement = tuple[tuple[int, int], ...]
"""(host index, GPUs taken on that host) pairs."""


class AllocationError(RuntimeError):
    """A decision asked for GPUs that are not free: a policy bug, never bad user input."""


class FleetState:
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.free = fleet.host_gpus.astype(np.int64).copy()
        self.pool_free = list(fleet.pool_gpus)
        self.pool_max_host_gpus = [int(fleet.host_gpus[h].max()) for h in fleet.pool_hosts]
        # levels[pool][k]: min-heap of hosts that had k free GPUs when pushed; stale entries
        # (host no longer at k) are dropped lazily when they reach the top.
        self.levels: list[list[list[int]]] = []
        for pool, hosts in enumerate(fleet.pool_hosts):
            heaps: list[list[int]] = [[] for _ in range(self.pool_max_host_gpus[pool] + 1)]
            for h in hosts.tolist():
                heaps[int(self.free[h])].append(h)
            self.levels.append(heaps)
        # Bumped whenever GPUs are returned to a pool: a placement that failed at epoch e
        # cannot succeed before the epoch moves on.
        self.release_epoch = [0] * len(fleet.pools)
        self.out = np.zeros(len(self.free), dtype=bool)  # failed, in maintenance, or a spare

    def take_out(self, host: int) -> None:
        """Withdraw an idle host from scheduling (down, or kept as a spare)."""
        cap = int(self.fleet.host_gpus[host])
        if self.out[host] or self.free[host] != cap:
            raise AllocationError(f"host {host} is busy or already out")
        pool = int(self.fleet.host_pool[host])
        self.out[host] = True
        self._move(pool, host, 0)
        self.pool_free[pool] -= cap

    def put_back(self, host: int) -> None:
        if not self.out[host]:
            raise AllocationError(f"host {host} is not out")
        pool = int(self.fleet.host_pool[host])
        cap = int(self.fleet.host_gpus[host])
        self.out[host] = False
        self._move(pool, host, cap)
        self.pool_free[pool] += cap
        self.release_epoch[pool] += 1

    def lowest_host_with(self, pool: int, gpus: int) -> int | None:
        """Best fit: the lowest-numbered host among those with the fewest free GPUs >= gpus."""
        heaps = self.levels[pool]
        free = self.free
        for k in range(gpus, len(heaps)):
            heap = heaps[k]
            while heap and free[heap[0]] != k:
                heapq.heappop(heap)
            if heap:
                return heap[0]
        return None

    def _move(self, pool: int, host: int, new_free: int) -> None:
        self.free[host] = new_free
        heapq.heappush(self.levels[pool][new_free], host)

    def allocate(self, pool: int, placement: Placement) -> None:
        free = self.free
        for host, gpus in placement:
            if gpus < 1 or free[host] < gpus or self.fleet.host_pool[host] != pool:
                raise AllocationError(f"host {host} cannot give {gpus} GPUs in pool {pool}")
        for host, gpus in placement:
            self._move(pool, host, int(free[host]) - gpus)
            self.pool_free[pool] -= gpus

    def release(self, pool: int, placement: Placement) -> None:
        cap = self.fleet.host_gpus
        for host, gpus in placement:
            new_free = int(self.free[host]) + gpus
            if new_free > cap[host] or self.out[host]:
                raise AllocationError(f"host {host} would have {new_free} free GPUs of {cap[host]}")
            self._move(pool, host, new_free)
            self.pool_free[pool] += gpus
        self.release_epoch[pool] += 1
