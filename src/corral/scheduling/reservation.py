"""EASY backfill's reservation in a shared fleet, over GPUs and quota.

The first job in order that is admitted but cannot be placed gets a shadow time: the
earliest end of a running job by which enough GPUs are free. Later jobs may start if they
end by then or use only GPUs it will not need (the extra ones), as in EASY backfill; and,
since quota is shared, only if they leave it its quota. The reserved job holds its quota the
way an admitted Kueue workload does, even before it runs: a borrower that took it, however
short, would leave the reserved job over quota at the next pass, which would drop the
reservation and let long jobs take its GPUs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from corral.scheduling.policy import View
from corral.scheduling.quota import QuotaTree


class Reservation:
    """One pool's reservation for `job` during a pass."""

    def __init__(self, view: View, quota: QuotaTree, job: int, ends: Iterable[tuple[float, int]]) -> None:
        """Reserve for `job` from the running jobs' `ends`, sorted by time: the shadow time
        is infinite where no end frees enough GPUs."""
        self.view, self.quota, self.job = view, quota, job
        self.shadow_s, self.extra_gpus = shadow_time(
            view, view.gpus[job], view.free_gpus(view.pool[job]), ends
        )
        # quota demand with the reserved job admitted, kept up to date from first use
        self.beside: list[float] | None = None

    def ends_by_shadow(self, job: int) -> bool:
        return self.view.now_s + self.view.remaining_s(job) <= self.shadow_s

    def holds(self, job: int) -> str | None:
        """Why starting `job` now would delay the reserved job; None if it would not."""
        if not self.ends_by_shadow(job) and self.view.gpus[job] > self.extra_gpus:
            return f"holding: would delay the reservation of job {self.job}"
        if self.leaves_quota(self.view.queue[job], self.view.gpus[job]):
            return None
        return f"holding: would take the quota reserved for job {self.job}"

    def leaves_quota(self, queue: int, gpus: int) -> bool:
        """Whether `gpus` more for `queue` fit the quota beside the reserved job's."""
        return self.quota.fits(queue, gpus, self._beside())

    def quota_headroom(self, queue: int) -> float:
        """The most GPUs `queue` may start and leave the reserved job its quota."""
        return self.quota.headroom(queue, self._beside())

    def _beside(self) -> list[float]:
        if self.beside is None:
            self.beside = list(self.quota.demand)
            self.quota.add(self.view.queue[self.job], self.view.gpus[self.job], self.beside)
        return self.beside

    def stale(self) -> bool:
        """Whether jobs started beside it took what the reserved job needs: its quota now, or
        more GPUs at the shadow time than it leaves over."""
        view = self.view
        return self.extra_gpus < 0 or not self.quota.fits(view.queue[self.job], view.gpus[self.job])

    def started(self, job: int) -> None:
        """Account for `job` started beside the reservation."""
        view = self.view
        if not self.ends_by_shadow(job):
            self.extra_gpus -= view.gpus[job]
        if self.beside is not None:
            self.quota.add(view.queue[job], view.gpus[job], self.beside)

    def stopped(self, job: int) -> None:
        """Account for `job` preempted during the pass."""
        if self.beside is not None:
            self.quota.add(self.view.queue[job], -self.view.gpus[job], self.beside)


def shadow_time(view: View, need: int, free: int, ends: Iterable[tuple[float, int]]) -> tuple[float, int]:
    """EASY backfill's shadow time for a job of `need` GPUs, from the running jobs' `ends`
    (sorted), and the extra GPUs then: all the jobs that end at that instant count, so the
    answer does not depend on how ties are ordered. Infinite, 0 where no end frees enough."""
    avail = free
    shadow = math.inf
    for end, job in ends:
        if end > shadow:
            break
        avail += view.gpus[job]
        if avail >= need:
            shadow = end
    return (shadow, avail - need) if math.isfinite(shadow) else (math.inf, 0)
