"""Finish-time fair scheduling after Themis (Mahajan et al., NSDI'20), simplified to one
arbiter: GPUs go to the jobs whose finish-time fairness is worst.

A job's rho is its completion time shared over its time alone on a 1/N share of its pool
(N: the queues with live jobs there when it arrived), as in metrics.finish_time_fairness.
While a job waits, its projected rho, (now - submit + remaining) / alone, grows; while it
runs, it stays put. Jobs are ranked by projected rho, worst first, and a waiting job may
preempt running ones of lower rho whose lease has expired. As in Themis, allocation is
revisited in rounds one lease apart: waiting ranks are refreshed at each round, and a job
keeps its GPUs for at least a lease.

Not Themis' partial-allocation auction: no bids, no placement preferences, no fairness
knob (every job competes, worst rho first). Like SRTF it needs job durations.
"""

from __future__ import annotations

from collections.abc import Iterator

from sortedcontainers import SortedList

from corral.scheduling.policy import Decision, JobIndex, JobKey, View, Wake
from corral.scheduling.preemptive import PreemptivePriority
from corral.state.fairness import alone_s

LEASE_S = 600.0  # Themis' simulations use 10-minute leases
MARGIN = 1.25  # a waiting job preempts only a job whose rho is this many times better


class FinishTimeFair(PreemptivePriority):
    name = "ftf"
    needs_durations = True

    def __init__(self, lease_s: float = LEASE_S, margin: float = MARGIN) -> None:
        if not lease_s > 0:
            raise ValueError("lease_s must be > 0")
        if not margin >= 1:
            raise ValueError("margin must be >= 1")
        self.lease_s = lease_s
        self.margin = margin

    def bind(self, view: View, pools: int) -> None:
        super().bind(view, pools)
        self.alone_s: dict[int, float] = {}
        # running jobs per pool as (rank at start, job); a running job's projected rho is fixed
        self.running: list[SortedList] = [SortedList() for _ in range(pools)]
        self.run_rank: dict[int, tuple] = {}
        self.lease_end_s: dict[int, float] = {}
        self.next_round_s = [0.0] * pools

    def submitted(self, job: int) -> None:
        self._alone(job)
        super().submitted(job)

    def _alone(self, job: int) -> None:
        view = self.view
        pool_gpus = view.pool_gpus(view.pool[job])
        self.alone_s[job] = float(
            alone_s(view.duration_s[job], view.gpus[job], pool_gpus, view.contenders(job))
        )

    def adopt(self, job: int) -> None:
        self._alone(job)
        super().adopt(job)

    def forget(self, job: int) -> None:
        del self.alone_s[job]

    def export_rank(self, key: JobKey) -> dict:
        """Each running job's rank (less the job) and lease, and each pool's next round."""
        return {
            "running": [[key(j), list(rank[:-1]), self.lease_end_s[j]] for j, rank in self.run_rank.items()],
            "next_round_s": list(self.next_round_s),
        }

    def restore_rank(self, data: dict, index: JobIndex) -> None:
        for name, rank, lease_end in data["running"]:
            job = index(name)
            if job is None or job not in self.run_rank:  # (gone, or not running now)
                continue
            self.stopped(job)
            rank = (*rank, job)
            self.run_rank[job] = rank
            self.running[self.view.pool[job]].add((rank, job))
            self.lease_end_s[job] = lease_end
        self.next_round_s = list(data["next_round_s"])

    def rank(self, job: int) -> tuple:
        """A waiting job's rho if it starts at the next round, worst first."""
        return self._rank(job, self.next_round_s[self.view.pool[job]], self.view.remaining_s(job))

    def _rank(self, job: int, start_s: float, remaining_s: float) -> tuple:
        rho = (start_s - self.view.submit_s[job] + remaining_s) / self.alone_s[job]
        return (-rho, job)

    def started(self, job: int) -> None:
        since, left = self.view.run_start(job)
        rank = self._rank(job, since, left)
        self.run_rank[job] = rank
        self.running[self.view.pool[job]].add((rank, job))
        self.lease_end_s[job] = since + self.lease_s

    def stopped(self, job: int) -> None:
        rank = self.run_rank.pop(job, None)
        if rank is not None:
            self.running[self.view.pool[job]].remove((rank, job))
            del self.lease_end_s[job]

    def victims(self, pool: int, job: int) -> Iterator[int]:
        """Running jobs whose lease is over and whose rho is `margin` times better than
        waiting `job`'s, best rho first. The margin keeps two jobs of like rho from trading
        GPUs every lease."""
        bound, now = self.waiting_rank[job][0] / self.margin, self.view.now_s
        for rank, victim in reversed(self.running[pool]):
            if rank[0] <= bound:
                return
            if self.lease_end_s[victim] <= now:
                yield victim

    def outranks_running(self, pool: int, job: int) -> bool:
        running = self.running[pool]
        if not running or running[-1][0][0] <= self.waiting_rank[job][0] / self.margin:
            return False  # (no running job has a rho `margin` times better: the common case)
        return next(self.victims(pool, job), None) is not None

    def before_pass(self, pool: int) -> None:
        """At each round, re-rank the waiting jobs by their rho now."""
        now = self.view.now_s
        if now < self.next_round_s[pool]:
            return
        self.next_round_s[pool] = now + self.lease_s
        for _, job in list(self.waiting[pool]):
            self._unwait(job)
            self._wait(job)

    def after_pass(self, pool: int) -> Iterator[Decision]:
        yield Wake(pool, self.next_round_s[pool])
