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
        need, avail = view.gpus[job], view.free_gpus(view.pool[job])
        self.shadow_s, self.extra_gpus = math.inf, 0
        for end_s, running in ends:
            avail += view.gpus[running]
            if avail >= need:
                self.shadow_s, self.extra_gpus = end_s, avail - need
                break
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
        if self.beside is None:
            self.beside = list(self.quota.demand)
            self.quota.add(self.view.queue[self.job], self.view.gpus[self.job], self.beside)
        return self.quota.fits(queue, gpus, self.beside)

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
