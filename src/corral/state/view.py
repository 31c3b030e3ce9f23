"""The one read-only face of the cluster state that policies see (scheduling.policy.View).

The mechanism sets `now_s` before it asks a policy to decide. Job attributes are the
cluster's own growable lists, so a job registered after the policy was bound is visible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from corral.state.allocation import Placement
from corral.state.checkpoint import run_parts_many
from corral.state.elastic import speed
from corral.state.reasons import RESERVED_HOSTS, capacity_reason

# The cluster state (state/cluster.py), which the view reads and never writes. Named, not
# imported: the cluster state makes its view, and the two modules form no circle.
ClusterColumns = Any


class ClusterView:
    def __init__(self, cluster: ClusterColumns) -> None:
        self._c = cluster
        self.now_s = 0.0
        self.gpus = cluster.gpus
        self.duration_s = cluster.duration_s
        self.estimate_s = cluster.estimate_s
        self.submit_s = cluster.submit_s
        self.preemptible = cluster.preemptible
        self.pool = cluster.pool
        self.priority = cluster.priority
        self.queue = cluster.queue
        self.level = cluster.level
        self.quota = cluster.quota
        self.explain = cluster.reasons is not None
        # Set by the mechanism for policies that give no reasons of their own: a job the
        # policy tried and could not place is recorded as waiting for GPUs or fragmented.
        self.explains_placement = False

    @property
    def host_gpus(self) -> np.ndarray:
        """Per host of the fleet: how many GPUs it has."""
        return self._c.fleet.host_gpus

    def pool_hosts(self, pool: int) -> np.ndarray:
        return self._c.fleet.pool_hosts[pool]

    def pool_gpus(self, pool: int) -> int:
        return self._c.fleet.pool_gpus[pool]

    def free_gpus(self, pool: int) -> int:
        return self._c.alloc.pool_free[pool]

    def max_host_gpus(self, pool: int) -> int:
        """The most GPUs of one host in `pool`: a job of no more goes on a single host."""
        return self._c.alloc.pool_max_host_gpus[pool]

    def remaining_s(self, job: int) -> float:
        """Work left (oracle: from the true duration)."""
        c = self._c
        if c.run_since[job] < 0.0:
            return c.remaining[job]
        return c.remaining[job] - c.run_parts(job, self.now_s)[0] * c.rate[job]

    def run_s(self, job: int) -> float:
        """How long waiting `job` would run if started now, by its estimate: the work left,
        the checkpoint writes on the way and, if it ran before, its restart cost."""
        c = self._c
        known = c.run_estimate[job]
        if known == known:  # (not NaN)
            return known
        again = c.preemptions[job] or c.interruptions[job]
        left = max(0.0, c.remaining[job] + (c.estimate_s[job] - c.duration_s[job]))
        known = c.run_estimate[job] = (c.restart_cost_s[job] if again else 0.0) + c.wall_s(job, left)
        return known

    def revisions(self) -> int:
        """A count that moves whenever a job's work left changes other than by its own run
        ending (a live job's checkpoint reports, a rebuild): what `run_s` said of a waiting
        job holds until it moves."""
        return self._c.revisions

    def expected_end_s(self, job: int) -> float:
        """When running `job` ends by its estimate if nothing stops it (its start plus what
        `run_s` said then)."""
        return self._c.expected_end[job]

    def run_start(self, job: int) -> tuple[float, float]:
        """When running `job`'s current run began, and the work it had left then."""
        c = self._c
        return c.run_since[job], c.remaining[job]

    def cheapest_first(self, jobs: Sequence[int] | np.ndarray) -> np.ndarray:
        """Running `jobs` ordered by what preempting each would lose: GPU-seconds since its
        last checkpoint, then the least useful work in its current run, then job number."""
        c = self._c
        idx = np.asarray(jobs, dtype=np.int64)
        if not len(idx):
            return idx
        elapsed = np.maximum(0.0, self.now_s - c.np_run_since.a[idx] - c.np_overhead.a[idx])
        useful, saved = run_parts_many(elapsed, c.np_checkpoint.a[idx], c.np_write.a[idx])
        reported = c.np_reported.a[idx]  # (live jobs that report their checkpoints)
        saved = np.where(np.isnan(reported), saved, np.minimum(reported, useful))
        lost = (useful - saved) * c.np_gpus.a[idx]
        return idx[np.lexsort((idx, useful, lost))]

    def placement_of(self, job: int) -> Placement | None:
        return self._c.placement[job]

    def free_vector(self) -> np.ndarray:
        return self._c.alloc.free.copy()

    def free_with(self, jobs: Sequence[int] | np.ndarray) -> np.ndarray:
        """The free-GPU vector once the running `jobs` released theirs (jobs on one host,
        the common case, added at once)."""
        c = self._c
        free = c.alloc.free.copy()
        idx = np.asarray(jobs, dtype=np.int64)
        hosts = c.np_host.a[idx]
        one = hosts >= 0
        np.add.at(free, hosts[one], c.np_gpus.a[idx[one]].astype(np.int64))
        for job in idx[~one].tolist():
            for host, gpus in c.placement[job]:  # type: ignore[union-attr]
                free[host] += gpus
        return free

    def _unbarred(self, job: int, free: np.ndarray | None) -> np.ndarray | None:
        """`free` (None: the GPUs free now) without the hosts reservations keep `job` off,
        or None where they keep it off none and `free` was None."""
        barred = self._c.barred_hosts(job, self.now_s)
        if barred is None:
            return free
        free = (self._c.alloc.free if free is None else free).copy()
        free[barred] = 0
        return free

    def place_on(self, job: int, free: np.ndarray) -> Placement | None:
        c = self._c
        return c.placer.find(c.pool[job], c.gpus[job], False, c.level[job], self._unbarred(job, free))

    def place_capped(self, job: int, hosts: np.ndarray, most: np.ndarray) -> Placement | None:
        """Where `job` would go now were each of `hosts` to have at most `most` GPUs free."""
        c = self._c
        barred = c.barred_hosts(job, self.now_s)
        if barred is not None:
            free = c.alloc.free.copy()
            free[hosts] = np.minimum(free[hosts], most)
            free[barred] = 0
            return c.placer.find(c.pool[job], c.gpus[job], False, c.level[job], free)
        return c.placer.find_capped(c.pool[job], c.gpus[job], c.level[job], hosts, most)

    def unmoved_by(self, job: int, free: np.ndarray, hosts: list[int]) -> bool:
        """Whether taking GPUs from `hosts` of `free` leaves `place_on(job, free)` as it is."""
        c = self._c
        return c.placer.unmoved_by(c.pool[job], c.gpus[job], free, hosts)

    def place_size(self, job: int, gpus: int, free: np.ndarray) -> Placement | None:
        """Where `job` would go on `free` at another size (an elastic job's resize)."""
        c = self._c
        return c.placer.find(c.pool[job], gpus, False, c.level[job], self._unbarred(job, free))

    def speedup(self, job: int, gpus: int) -> float:
        """How much faster running `job` would work on `gpus` GPUs than on what it holds."""
        c = self._c
        return speed(gpus, c.ref_gpus[job], c.scaling[job]) / c.rate[job]

    def resize_cost_s(self, job: int) -> float:
        """What a resize costs running `job` before it works again: its checkpoint write
        and its restart."""
        c = self._c
        return c.write_s[job] + c.restart_cost_s[job]

    def reserved_gpus(self, pool: int) -> int:
        """Free GPUs elastic jobs may not grow into (held for services by a broker)."""
        return self._c.reserved[pool]

    def elastic(self, job: int) -> tuple[int, int, int] | None:
        """An elastic job's (min_gpus, max_gpus, step_gpus); None for a rigid one."""
        c = self._c
        lo, hi = c.min_gpus[job], c.max_gpus[job]
        return None if lo == hi else (lo, hi, c.step_gpus[job])

    def executed_s(self, job: int) -> float:
        return self.duration_s[job] - self.remaining_s(job)

    def last_stop_s(self, job: int) -> float:
        return self._c.last_stop[job]

    def contenders(self, job: int) -> int:
        """Queues with live jobs in the job's pool when it arrived (Themis' N)."""
        return self._c.contenders[job]

    def generation(self, pool: int) -> int | None:
        """A count that moves whenever GPUs return to `pool` (a job stops, a host comes
        back or joins): a placement that failed cannot succeed before it moves. None when
        waiting jobs may be placed relaxed, which also changes with time alone."""
        c = self._c
        return None if c.placer.config.relax_after_s is not None else c.alloc.release_epoch[pool]

    def unplaceable_from(self, pool: int, level: int | None) -> float:
        """The fewest GPUs found unplaceable in `pool` at `level` in this generation (inf if
        none, or if waiting jobs may be placed relaxed)."""
        if self.generation(pool) is None:
            return math.inf
        return _failed_at(self._c.failed_from, (pool, level, False), self._c.alloc.release_epoch[pool])

    def place(self, job: int) -> Placement | None:
        """Where `job` would go now. Failures are remembered, since allocations only make
        placing harder, and they are monotone in size: if g GPUs cannot be placed with some
        topology rule, no more than g can. A failure stands until GPUs come back to the
        pool; one of whole hosts only (a multiple of the largest host's GPUs, not spread
        relaxed) until a host becomes wholly free, however many GPUs come back before."""
        c = self._c
        pool = c.pool[job]
        relax = c.placer.config.relax_after_s
        relaxed = relax is not None and self.now_s - self.submit_s[job] >= relax
        level = c.level[job]
        gpus = self.gpus[job]
        free = self._unbarred(job, None) if c.reservations else None
        if free is not None:  # (held off reserved hosts: no failure remembered for the others)
            found = c.placer.find(pool, gpus, relaxed, level, free)
            if found is None and self.explains_placement:
                c.hold(job, self.now_s, RESERVED_HOSTS)
            return found
        key = (pool, level, relaxed)
        if gpus >= _failed_at(c.failed_from, key, c.alloc.release_epoch[pool]):
            found = None
        else:
            if gpus >= _failed_at(c.failed_whole, key, c.alloc.whole_epoch[pool]):
                found = None
            else:
                found = c.placer.find(pool, gpus, relaxed, level)
                if found is None and not relaxed and gpus % c.alloc.pool_max_host_gpus[pool] == 0:
                    c.failed_whole[key] = (c.alloc.whole_epoch[pool], gpus)
            if found is None:  # (what `unplaceable_from` reports, whichever answered)
                c.failed_from[key] = (c.alloc.release_epoch[pool], gpus)
        if found is None and self.explains_placement:
            c.hold(job, self.now_s, capacity_reason(gpus, c.alloc.pool_free[pool], level))
        return found


def _failed_at(failed: dict[tuple, tuple[int, int]], key: tuple, epoch: int) -> float:
    """The fewest GPUs remembered unplaceable under `key` at `epoch` (inf if none then)."""
    remembered = failed.get(key)
    return remembered[1] if remembered is not None and remembered[0] == epoch else math.inf
