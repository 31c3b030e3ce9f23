"""Preemptive priority scheduling: each pass ranks every active job (running or pending) of a
pool, keeps the highest-ranked set that fits the pool's GPU count, and preempts lower-ranked
running jobs only as far as a higher-ranked pending job needs their GPUs to be placed.
Remaining GPUs then go to pending jobs in rank order (work conservation).

Preemption here is free: the job keeps its progress (Tiresias' assumption of a cheap
checkpoint on preemption). Jobs marked not preemptible are never victims.

SRTF (below) and Tiresias' LAS (las.py) differ only in the rank.
"""

from __future__ import annotations

from collections.abc import Iterator

from corral.scheduling.policy import Decision, Preempt, Start, View


class PreemptivePriority:
    name = "preemptive"

    def bind(self, view: View, pools: int) -> None:
        self.view = view
        self.active: list[set[int]] = [set() for _ in range(pools)]
        self.waiting: list[set[int]] = [set() for _ in range(pools)]

    def submitted(self, job: int) -> None:
        pool = self.view.pool[job]
        self.active[pool].add(job)
        self.waiting[pool].add(job)

    def finished(self, job: int) -> None:
        self.active[self.view.pool[job]].discard(job)

    def rank(self, job: int) -> tuple:
        raise NotImplementedError

    def before_pass(self, pool: int) -> None:
        """Update rank bookkeeping at the start of a pass (LAS demotion and promotion)."""

    def after_pass(self, pool: int) -> Iterator[Decision]:
        return iter(())

    def decide(self, pool: int) -> Iterator[Decision]:
        view = self.view
        active = self.active[pool]
        waiting = self.waiting[pool]
        if not waiting:
            # Nobody waits: ranks cannot change who runs, so there is nothing to decide.
            return
        self.before_pass(pool)
        ranked = sorted(active, key=self.rank)
        position = {job: i for i, job in enumerate(ranked)}
        gpus = view.gpus
        budget = view.pool_gpus(pool)
        chosen = set()
        for job in ranked:
            if gpus[job] <= budget:
                budget -= gpus[job]
                chosen.add(job)
        victims = [
            j for j in reversed(ranked)
            if j not in chosen and view.is_running(j) and view.preemptible[j]
        ]
        stopped = set()
        for job in ranked:
            if job not in chosen or view.is_running(job):
                continue
            placement = view.place(job)
            # Victims are only ever ranked below the job they make room for.
            while placement is None and victims and position[victims[0]] > position[job]:
                victim = victims.pop(0)
                stopped.add(victim)
                waiting.add(victim)
                yield Preempt(victim, f"outranked by job {job}")
                placement = view.place(job)
            if placement is not None:
                waiting.discard(job)
                yield Start(job, placement)
        for job in ranked:
            if view.free_gpus(pool) <= 0:
                break
            if job in stopped or view.is_running(job) or gpus[job] > view.free_gpus(pool):
                continue
            placement = view.place(job)
            if placement is not None:
                waiting.discard(job)
                yield Start(job, placement)
        if waiting:
            yield from self.after_pass(pool)


class Srtf(PreemptivePriority):
    """Oracle shortest-remaining-time-first: SJF that preempts for a shorter newcomer."""

    name = "srtf"

    def rank(self, job: int) -> tuple:
        return (self.view.remaining_s(job), job)
