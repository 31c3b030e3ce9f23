"""List scheduling: pending jobs are examined in a fixed order and each one that can be
placed starts, so a job is never held back by an earlier one that does not fit (no
reservation, non-preemptive). Oracle shortest-job-first orders by duration; first-fit FIFO
(fifo.py) by arrival.
"""

from __future__ import annotations

from collections.abc import Iterator

from sortedcontainers import SortedList

from corral.scheduling.policy import Decision, JobIndex, JobKey, Start, Traits, View, same


class ListScheduling(Traits):
    """Start every pending job that fits, in the order of `key`."""

    name = "list"

    def key(self, job: int) -> tuple:
        raise NotImplementedError

    def bind(self, view: View, pools: int) -> None:
        self.view = view
        self.pending: list[SortedList] = [SortedList() for _ in range(pools)]
        self.fresh: list[list[tuple]] = [[] for _ in range(pools)]
        # a pass looks at every waiting job only once GPUs came back to the pool (a job
        # stopped, a host returned) or waiting jobs left: the generation seen last, and why
        self.generation: list[int | None] = [None] * pools
        self.released = [True] * pools

    def submitted(self, job: int) -> None:
        pool = self.view.pool[job]
        entry = (self.key(job), job)
        self.pending[pool].add(entry)
        self.fresh[pool].append(entry)

    def finished(self, job: int) -> None:
        self.released[self.view.pool[job]] = True

    def interrupted(self, job: int) -> None:
        self.pending[self.view.pool[job]].add((self.key(job), job))
        self.finished(job)

    def adopt(self, job: int) -> None:
        pass

    def withdrawn(self, job: int) -> None:
        self.pending[self.view.pool[job]].discard((self.key(job), job))
        self.finished(job)

    def export(self, key: JobKey = same) -> None:
        """Nothing: the order is the job's key, and the rest is rebuilt by a full pass."""

    def restore(self, data: None, index: JobIndex = same) -> None:
        pass

    def decide(self, pool: int) -> Iterator[Decision]:
        view = self.view
        pending = self.pending[pool]
        # Without a release since the last pass, only new arrivals can have become startable.
        generation = view.generation(pool)
        full = self.released[pool] or generation is None or generation != self.generation[pool]
        candidates = list(pending) if full else sorted(self.fresh[pool])
        self.released[pool] = False
        self.generation[pool] = generation
        self.fresh[pool] = []
        free = view.free_gpus(pool)
        for entry in candidates:
            if free <= 0:
                break
            job = entry[1]
            if view.gpus[job] > free:
                continue
            placement = view.place(job)
            if placement is None:
                continue
            pending.remove(entry)
            free -= view.gpus[job]
            yield Start(job, placement)


class Sjf(ListScheduling):
    """Oracle shortest-job-first: knows every job's duration."""

    name = "sjf"
    needs_durations = True

    def key(self, job: int) -> tuple:
        return (self.view.duration_s[job],)
