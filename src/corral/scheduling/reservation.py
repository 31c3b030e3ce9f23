"""EASY backfill's reservation, aware of placement and, in a shared fleet, of quota.

The first job in order that cannot start gets a shadow time: the earliest end of running
jobs by which it could be placed, on the GPUs free now plus those released by then, under
the same placement rules (a gang of whole hosts inside one rack or pod, a small job on one
host). Counting GPUs alone is not enough: a gang that needs whole hosts can find enough free
GPUs at its shadow time, all on hosts that small backfilled jobs keep partly busy, and wait
behind a stream of them for ever.

A later job may start if it ends by the shadow time, or if the reserved job can still be
placed at the shadow time beside it: where its usual placement would take GPUs the reserved
job needs then, it is placed off them if it can be (Slurm's backfill keeps the nodes it
reserves the same way), or else where it would usually go if the reserved job could then
go elsewhere.
In a shared fleet it must also leave the reserved job its quota: the reserved job holds its
quota the way an admitted Kueue workload does, even before it runs, since a borrower that
took it, however short, would leave the reserved job over quota at the next pass, which would
drop the reservation and let long jobs take its GPUs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from itertools import chain

import numpy as np

from corral.quota import QuotaTree, WhatIf
from corral.scheduling.policy import View
from corral.state.allocation import FreeTally, Placement
from corral.state.reasons import Reason


class Reservation:
    """One pool's reservation for `job` during a pass (or, without releases, across passes).
    Until a job is checked against it, jobs start beside it freely (those within a guaranteed
    quota): the shadow time is then found on the GPUs as they are."""

    def __init__(
        self, view: View, job: int, find: Callable[[], Shadow], quota: QuotaTree | None = None
    ) -> None:
        """Reserve for `job` with the shadow time `find` gives (`shadow_placement`), asked only
        once a job must be checked against it, on the GPUs as they are then."""
        self.view, self.job, self.quota, self.find = view, job, quota, find
        self.found: Shadow | None = None
        self.shadow_s = math.inf
        self.extra_gpus = 0  # GPUs free at the shadow time beyond its need
        self.at_shadow = np.zeros(0, dtype=np.int64)  # per host, GPUs free at the shadow time
        self.spot: dict[int, int] | None = None  # host -> GPUs it would take then; None: no time
        # the spot's hosts, and the most GPUs each may have free now for jobs that outlast
        # the shadow time (what it has free then less what the reserved job takes): worked
        # out when first needed
        self.spot_bounds: tuple[np.ndarray, np.ndarray] | None = None
        self.delay: Reason | None = None
        self.lost = False  # jobs exempt from holding took what it needs at the shadow time
        # sizes (GPUs, level) `admit` refused, with the count of starts and stops then: a job
        # of that size is refused again until GPUs change hands
        self.moves = 0
        self.refused: dict[tuple[int, int | None], int] = {}
        # quota demand with the reserved job admitted, kept up to date from first use
        self.beside: WhatIf | None = None

    def known(self) -> Reservation:
        """The reservation with its shadow time found (once)."""
        if self.found is None:
            self.found = self.find()
            self.shadow_s, avail, at, spot = self.found
            self.extra_gpus = avail - self.view.gpus[self.job]
            self.at_shadow = at.copy()
            self.spot = dict(spot) if spot is not None else None
        return self

    def _spot_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        if self.spot_bounds is None:
            spot = self.spot or {}
            hosts = np.fromiter(spot, dtype=np.int64, count=len(spot))
            taken = np.fromiter(spot.values(), dtype=np.int64, count=len(spot))
            self.spot_bounds = hosts, self.at_shadow[hosts] - taken
        return self.spot_bounds

    def ends_by_shadow(self, job: int) -> bool:
        return self.ends_within(self.view.run_s(job))

    def ends_within(self, run_s: float) -> bool:
        """Whether a job that runs `run_s` from now ends by the shadow time."""
        return self.view.now_s + run_s <= self.known().shadow_s

    def holds(self, job: int) -> Reason | None:
        """Why starting `job` now would delay the reserved job, as far as GPU counts and quota
        tell (where it goes is checked by `admit`); None if they do not hold it."""
        view = self.view
        if not self.ends_by_shadow(job) and (
            view.gpus[job] > self.extra_gpus or self.refuses(view.gpus[job], view.level[job])
        ):
            return self.delays()
        if self.quota is None or self.leaves_quota(view.queue[job], view.gpus[job]):
            return None
        return Reason("holding", "holding: would take the quota reserved for job {job0}", (self.job,))

    def delays(self) -> Reason:
        if self.delay is None:
            self.delay = Reason("holding", "holding: would delay the reservation of job {job0}", (self.job,))
        return self.delay

    def refuses(self, gpus: int, level: int | None) -> bool:
        """Whether `admit` refused a job of this size since GPUs last changed hands."""
        return self.refused.get((gpus, level)) == self.moves

    def admit(self, job: int, placement: Placement) -> Placement | None:
        """Where `job` may start now beside the reservation: its usual `placement` if it ends
        by the shadow time or leaves the reserved job where it would go then; else a placement
        off the GPUs the reserved job would take then; else its usual placement if the reserved
        job could still be placed elsewhere then. None if none of these."""
        if self.ends_by_shadow(job) or self.spot is None:
            return placement
        view, at, spot = self.view, self.at_shadow, self.spot
        if all(at[h] - g >= spot.get(h, 0) for h, g in placement):
            return placement
        off = view.place_capped(job, *self._spot_bounds())
        if off is not None:
            return off
        trial = at.copy()
        for h, g in placement:
            trial[h] -= g
        if view.place_on(self.job, trial) is not None:
            return placement
        self.refused[view.gpus[job], view.level[job]] = self.moves
        return None

    def leaves_quota(self, queue: int, gpus: int) -> bool:
        """Whether `gpus` more for `queue` fit the quota beside the reserved job's."""
        assert self.quota is not None
        return self._beside().fits(queue, gpus)

    def leaves_quota_without(self, queue: int, gpus: int, released: Iterable[int]) -> bool:
        """Whether `gpus` more for `queue` would fit beside the reserved job's quota once the
        running jobs `released` gave theirs back."""
        assert self.quota is not None
        view = self.view
        trial = WhatIf(self.quota, list(self._beside().demand))
        for job in released:
            trial.add(view.queue[job], -view.gpus[job])
        return trial.fits(queue, gpus)

    def quota_headroom(self, queue: int) -> float:
        """The most GPUs `queue` may start and leave the reserved job its quota."""
        assert self.quota is not None
        return self._beside().headroom(queue)

    def _beside(self) -> WhatIf:
        if self.beside is None:
            assert self.quota is not None
            self.beside = self.quota.what_if()
            self.beside.add(self.view.queue[self.job], self.view.gpus[self.job])
        return self.beside

    def stale(self) -> bool:
        """Whether jobs started beside it took what the reserved job needs: its quota now, or
        the GPUs that would place it at the shadow time."""
        view = self.view
        if self.lost:  # (fewer GPUs than it needs then leave no placement either)
            return True
        return self.quota is not None and not self.quota.fits(view.queue[self.job], view.gpus[self.job])

    def started(self, job: int, placement: Placement) -> None:
        """Account for `job` started beside the reservation at `placement`."""
        self._moved(job, placement, 1)

    def stopped(self, job: int) -> None:
        """Account for `job` preempted during the pass (before its GPUs are released)."""
        self._moved(job, self.view.placement_of(job) or (), -1)

    def _moved(self, job: int, placement: Placement, sign: int) -> None:
        """`job` took (sign 1) or gave back (-1) the GPUs of `placement` and its quota: what
        it holds past the shadow time is taken from, or returned to, what is free then."""
        view = self.view
        self.moves += 1
        if self.found is not None and self.spot is not None and not self.ends_by_shadow(job):
            # (GPUs taken from hosts the reserved job could not use leave its place then)
            unmoved = sign > 0 and view.unmoved_by(self.job, self.at_shadow, [h for h, _ in placement])
            self.extra_gpus -= sign * view.gpus[job]
            for h, g in placement:
                self.at_shadow[h] -= sign * g
            if not unmoved:
                self._replace()
        if self.beside is not None:
            self.beside.add(view.queue[job], sign * view.gpus[job])

    def _replace(self) -> None:
        """Where the reserved job would go at the shadow time, after GPUs changed hands."""
        spot = self.view.place_on(self.job, self.at_shadow)
        self.spot = dict(spot) if spot is not None else {}
        self.spot_bounds = None
        self.lost = spot is None


Shadow = tuple[float, int, np.ndarray, "Placement | None"]


class ShadowCache:
    """A pool's last shadow time, carried across passes while it cannot have moved: jobs
    that started since and end by it leave the GPUs free then as they were (and only make
    earlier instants worse); those that outlast it take their GPUs from then, so the job is
    placed again there; completions change nothing from now on, as the GPUs they return were
    counted from their expected end (or before: one that ran past its estimate was counted
    free earlier, which only made instants already past better). A job that ends before its
    expected end, a preemption, or GPUs gained or lost otherwise (a repaired or lent host)
    means a new search."""

    def __init__(self, view: View, pool: int, end_of: dict[int, float]) -> None:
        self.view, self.pool, self.end_of = view, pool, end_of
        self.job = -1
        self.found: Shadow | None = None
        self.epoch: int | None = None  # the pool's generation expected now
        self.free = 0  # free GPUs expected now
        self.starts: list[int] = []

    def started(self, job: int) -> None:
        if self.found is not None:
            self.starts.append(job)
            self.free -= self.view.gpus[job]

    def stopped(self, job: int, completed: bool, early: bool = False) -> None:
        """`job` stopped: `completed` (not preempted nor lost), `early` (before the end
        the search counted its GPUs back from)."""
        if self.found is not None and completed and not early and self.epoch is not None:
            self.epoch += 1
            self.free += self.view.gpus[job]
        else:
            self.found = None

    def find(self, job: int, ends: Iterable[tuple[float, int]]) -> Shadow:
        view, pool = self.view, self.pool
        epoch, found = view.generation(pool), self.found
        if (
            found is not None
            and self.job == job
            and epoch is not None
            and epoch == self.epoch
            and view.free_gpus(pool) == self.free
            and found[0] > view.now_s
        ):
            shadow, avail, at, spot = found
            # (a start that has completed since ended by now, before the shadow time)
            outlast = [s for s in self.starts if self.end_of.get(s, -math.inf) > shadow]
            if outlast:
                at, moved = at.copy(), False
                for s in outlast:
                    placement = view.placement_of(s) or ()
                    moved = moved or not view.unmoved_by(job, at, [h for h, _ in placement])
                    avail -= view.gpus[s]
                    for h, g in placement:
                        at[h] -= g
                if moved:  # (else it goes where it went: no host it could use lost GPUs)
                    spot = view.place_on(job, at)
            if spot is not None:
                return self._keep(job, (shadow, avail, at, spot))
        return self._keep(job, shadow_placement(view, job, ends))

    def _keep(self, job: int, found: Shadow) -> Shadow:
        self.job, self.found, self.starts = job, found, []
        self.epoch, self.free = self.view.generation(self.pool), self.view.free_gpus(self.pool)
        return found


def shadow_placement(view: View, job: int, ends: Iterable[tuple[float, int]]) -> Shadow:
    """EASY's shadow time for `job`, placement-aware: the first instant among the running
    jobs' `ends` (sorted) at which `job` can be placed on the GPUs free then, counting every
    job that ends at that instant. Returns it, the pool's free GPUs then, the per-host free
    vector then and the placement; (inf, free now, free now, None) where no instant does.

    Placement is tried only where it could have become possible: once there are enough GPUs
    (and, for a gang of whole hosts, enough whole hosts), and then only once some host has
    gained enough free GPUs for the job (or for the remainder the gang puts on a partly
    busy host) since the last try."""
    pool, need = view.pool[job], view.gpus[job]
    host_gpus = view.max_host_gpus(pool)
    gpus, placement_of, caps = view.gpus, view.placement_of, view.host_gpus
    avail = view.free_gpus(pool)
    free = view.free_vector()
    enough, whole_needed, whole = need, 0, 0
    if need > host_gpus:
        hosts = view.pool_hosts(pool)
        enough, whole_needed = need % host_gpus or host_gpus, need // host_gpus
        whole = int(np.count_nonzero(free[hosts] == caps[hosts]))
    tried = promising = False
    at = -math.inf
    tally = FreeTally(free)
    for end, running in chain(ends, ((math.inf, None),)):  # the last try after the last end
        if (promising or not tried) and avail >= need and whole >= whole_needed and -math.inf < at < end:
            spot = view.place_on(job, tally.vector())
            if spot is not None:
                return at, avail, tally.vector(), spot
            tried, promising = True, False
        if running is None:
            break
        at = end
        avail += gpus[running]
        for h, left in tally.release(placement_of(running)):
            if left >= enough:
                promising = True
                if whole_needed and left == caps[h]:
                    whole += 1
    return math.inf, view.free_gpus(pool), view.free_vector(), None
