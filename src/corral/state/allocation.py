"""Who holds which GPUs: the free-GPU count of every host, kept as numpy arrays plus per-pool
indexes that make the common questions (is there a host with k free GPUs?) cheap, and which
GPU indices on each host are taken (what a live executor puts in CUDA_VISIBLE_DEVICES).

This is mechanism: it records allocations and refuses impossible ones; it never chooses.
"""

from __future__ import annotations

import functools
import heapq
from collections.abc import Container

import numpy as np

from corral.fleet import Fleet

Placement = tuple[tuple[int, int], ...]
"""(host index, GPUs taken on that host) pairs: what a policy decides."""

GpuIds = tuple[tuple[int, tuple[int, ...]], ...]
"""(host index, the GPU indices taken on that host) pairs: what an allocation holds."""


class AllocationError(RuntimeError):
    """A decision asked for GPUs that are not free: a policy bug, never bad user input."""


class FleetState:
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        # Free GPUs per host: a plain list is what single-host reads and writes use (numpy's
        # scalars cost several times more); the numpy vector that placement reads catches up
        # with the hosts changed since only when asked for (`free`).
        self._free = fleet.host_gpus.astype(np.int64).copy()
        self.left: list[int] = self._free.tolist()
        self._changed: list[int] = []
        # (plain lists: the per-start checks read single hosts, which numpy does slowly)
        self.host_pool: list[int] = fleet.host_pool.tolist()
        self.host_gpus: list[int] = fleet.host_gpus.tolist()
        self.used = [0] * len(self.left)  # per host, a bit per GPU index taken
        self.pool_free = list(fleet.pool_gpus)
        self.pool_max_host_gpus = [int(fleet.host_gpus[h].max()) for h in fleet.pool_hosts]
        # levels[pool][k]: min-heap of hosts that had k free GPUs when pushed; stale entries
        # (host no longer at k) are dropped lazily when they reach the top.
        self.levels: list[list[list[int]]] = []
        for pool, hosts in enumerate(fleet.pool_hosts):
            heaps: list[list[int]] = [[] for _ in range(self.pool_max_host_gpus[pool] + 1)]
            for h in hosts.tolist():
                heaps[self.left[h]].append(h)
            self.levels.append(heaps)
        # Bumped whenever GPUs are returned to a pool: a placement that failed at epoch e
        # cannot succeed before the epoch moves on.
        self.release_epoch = [0] * len(fleet.pools)
        # Bumped whenever a host of a pool becomes wholly free (or one comes back or joins):
        # a job that needs whole hosts only (GPUs a multiple of the largest host's) and
        # failed at epoch w cannot be placed before it moves, however many GPUs come back.
        self.whole_epoch = [0] * len(fleet.pools)
        self.out = np.zeros(len(self.left), dtype=bool)  # failed, in maintenance, or a spare
        # Closed (cordoned) hosts give no new GPUs but keep their jobs: what they have free
        # is hidden from placement until they reopen.
        self.hidden = [0] * len(self.left)
        self.closed = [False] * len(self.left)

    @property
    def free(self) -> np.ndarray:
        """Free GPUs per host, as a numpy vector (not to be written to)."""
        return self._sync()

    def _sync(self) -> np.ndarray:
        changed = self._changed
        if changed:
            if len(changed) > len(self.left) // 8:
                self._free[:] = self.left
            else:
                vector, left = self._free, self.left
                for host in changed:
                    vector[host] = left[host]
            changed.clear()
        return self._free

    def grow(self, fleet: Fleet) -> None:
        """Take on the hosts `fleet` has beyond this state's (appended, in existing pools),
        idle."""
        old = len(self.left)
        self.fleet = fleet
        self.host_pool = fleet.host_pool.tolist()
        self.host_gpus = fleet.host_gpus.tolist()
        added = fleet.host_gpus[old:].astype(np.int64)
        self._free = np.concatenate([self.free, added])
        self.left += added.tolist()
        self.used += [0] * len(added)
        self.out = np.concatenate([self.out, np.zeros(len(added), dtype=bool)])
        self.hidden += [0] * len(added)
        self.closed += [False] * len(added)
        for i, cap in enumerate(added.tolist()):
            host = old + i
            pool = self.host_pool[host]
            heaps = self.levels[pool]
            while len(heaps) <= cap:
                heaps.append([])
            heapq.heappush(heaps[cap], host)
            self.pool_free[pool] += cap
            self.pool_max_host_gpus[pool] = max(self.pool_max_host_gpus[pool], cap)
            self.release_epoch[pool] += 1
            self.whole_epoch[pool] += 1

    def gpu_ids(self, placement: Placement) -> GpuIds:
        """The GPU indices `placement` would take now: the lowest free ones on each host."""
        ids = []
        for host, gpus in placement:
            used, taken, bit = self.used[host], [], 0
            if not used:  # (an idle host: the first `gpus`)
                ids.append((host, _first(gpus)))
                continue
            while len(taken) < gpus:
                if not used >> bit & 1:
                    taken.append(bit)
                bit += 1
            ids.append((host, tuple(taken)))
        return tuple(ids)

    def take_out(self, host: int) -> None:
        """Withdraw an idle host from scheduling (down, or kept as a spare)."""
        cap = self.host_gpus[host]
        if self.out[host] or self.left[host] != cap:
            raise AllocationError(f"host {host} is busy or already out")
        pool = self.host_pool[host]
        self.out[host] = True
        self._move(pool, host, 0)
        self.pool_free[pool] -= cap

    def close(self, host: int) -> None:
        """Give no more GPUs on `host` (cordoned or draining); its jobs keep theirs."""
        if self.closed[host] or self.out[host]:
            return
        pool = self.host_pool[host]
        self.hidden[host] = self.left[host]
        self.pool_free[pool] -= self.hidden[host]
        self.closed[host] = True
        self._move(pool, host, 0)

    def reopen(self, host: int) -> None:
        if not self.closed[host]:
            return
        pool = self.host_pool[host]
        self.closed[host] = False
        self._move(pool, host, self.hidden[host])
        self.pool_free[pool] += self.hidden[host]
        self.hidden[host] = 0
        self.release_epoch[pool] += 1
        self.whole_epoch[pool] += 1

    def widened(self, pool: int) -> None:
        """Jobs of `pool` may be placed where they could not, though no GPU came back (a
        reservation's window began or ended): what was found unplaceable may be placeable."""
        self.release_epoch[pool] += 1
        self.whole_epoch[pool] += 1

    def put_back(self, host: int) -> None:
        if not self.out[host]:
            raise AllocationError(f"host {host} is not out")
        pool = self.host_pool[host]
        cap = self.host_gpus[host]
        self.out[host] = False
        self._move(pool, host, cap)
        self.pool_free[pool] += cap
        self.release_epoch[pool] += 1
        self.whole_epoch[pool] += 1

    def lowest_host_with(self, pool: int, gpus: int, skip: Container[int] = ()) -> int | None:
        """Best fit: the lowest-numbered host among those with the fewest free GPUs >= gpus
        (other than those in `skip`)."""
        heaps = self.levels[pool]
        free = self.left
        for k in range(gpus, len(heaps)):
            heap = heaps[k]
            while heap and free[heap[0]] != k:
                heapq.heappop(heap)
            if heap and heap[0] not in skip:
                return heap[0]
            if heap:  # (look past the skipped, then put back what was taken off)
                held, found = [], None
                while heap and found is None:
                    host = heapq.heappop(heap)
                    if free[host] == k:
                        held.append(host)
                        found = None if host in skip else host
                for host in held:
                    heapq.heappush(heap, host)
                if found is not None:
                    return found
        return None

    def _move(self, pool: int, host: int, new_free: int) -> None:
        self.left[host] = new_free
        self._changed.append(host)
        if len(self._changed) > 2 * len(self.left) + 64:  # (not read for a long while)
            self._sync()
        heapq.heappush(self.levels[pool][new_free], host)

    def allocate(self, pool: int, placement: Placement, ids: GpuIds | None = None) -> GpuIds:
        """Take `placement`'s GPUs: the given indices (a job found running), else the lowest
        free ones. Returns the indices taken."""
        free = self.left
        for host, gpus in placement:
            if gpus < 1 or free[host] < gpus or self.host_pool[host] != pool or self.out[host]:
                raise AllocationError(f"host {host} cannot give {gpus} GPUs in pool {pool}")
        if ids is None:
            ids = self.gpu_ids(placement)
        else:
            cap = self.host_gpus
            for (host, gpus), (at, taken) in zip(placement, ids, strict=True):
                mask = sum(1 << i for i in taken)
                if at != host or len(set(taken)) != gpus or self.used[host] & mask or max(taken) >= cap[host]:
                    raise AllocationError(f"GPUs {list(taken)} of host {host} are not free")
        for (host, gpus), (_, taken) in zip(placement, ids, strict=True):
            self._move(pool, host, free[host] - gpus)
            self.pool_free[pool] -= gpus
            self.used[host] |= _mask(taken)
        return ids

    def release(self, pool: int, placement: Placement, ids: GpuIds) -> None:
        cap = self.host_gpus
        for host, gpus in placement:
            new_free = self.left[host] + self.hidden[host] + gpus
            if new_free > cap[host] or self.out[host]:
                raise AllocationError(f"host {host} would have {new_free} free GPUs of {cap[host]}")
        for (host, gpus), (_, taken) in zip(placement, ids, strict=True):
            if self.closed[host]:
                self.hidden[host] += gpus
            else:
                self._move(pool, host, self.left[host] + gpus)
                self.pool_free[pool] += gpus
                if self.left[host] == cap[host]:
                    self.whole_epoch[pool] += 1
            self.used[host] &= ~_mask(taken)
        self.release_epoch[pool] += 1


@functools.cache
def _first(gpus: int) -> tuple[int, ...]:
    return tuple(range(gpus))


@functools.cache
def _mask(taken: tuple[int, ...]) -> int:
    """The bits of GPU indices `taken`."""
    return sum(1 << i for i in taken)


class FreeTally:
    """A hypothetical per-host free-GPU vector that jobs' GPUs are given back to one at a
    time, as the what-if searches (EASY's shadow time, preemption victims) walk. The adding
    is done on Python ints, since numpy's scalars cost several times more; the numpy vector
    that placement reads catches up with the hosts changed only when asked for."""

    def __init__(self, free: np.ndarray) -> None:
        self._vector, self.left = free, free.tolist()
        self._changed: list[int] = []

    def release(self, placement: Placement | None) -> list[tuple[int, int]]:
        """Give back `placement`'s GPUs; each host it touched with its free GPUs now."""
        touched = []
        for host, k in placement or ():
            left = self.left[host] + k
            self.left[host] = left
            self._changed.append(host)
            touched.append((host, left))
        return touched

    def vector(self) -> np.ndarray:
        for host in self._changed:
            self._vector[host] = self.left[host]
        self._changed.clear()
        return self._vector
