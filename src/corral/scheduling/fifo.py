"""First come, first served, strict or with EASY backfill."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from sortedcontainers import SortedList

from corral.scheduling.policy import Decision, Start, View
from corral.scheduling.reservation import Reservation, shadow_placement


class Fifo:
    """Strict FCFS per pool: the head job blocks everyone behind it (head-of-line blocking)."""

    name = "fifo"

    def bind(self, view: View, pools: int) -> None:
        self.view = view
        self.queues: list[deque[int]] = [deque() for _ in range(pools)]

    def submitted(self, job: int) -> None:
        self.queues[self.view.pool[job]].append(job)

    def finished(self, job: int) -> None:
        pass

    def interrupted(self, job: int) -> None:
        self.queues[self.view.pool[job]].appendleft(job)  # it came first

    def decide(self, pool: int) -> Iterator[Decision]:
        queue = self.queues[pool]
        while queue:
            placement = self.view.place(queue[0])
            if placement is None:
                return
            yield Start(queue.popleft(), placement)


class FifoBackfill:
    """EASY backfill (Lifka 1995; Slurm's sched/backfill): the blocked head job gets a
    reservation at the earliest time it could be placed (the shadow time, from the remaining
    `duration_s` as the runtime estimate, with checkpoint writes and any restart cost); a
    later job may start now only if it ends by the shadow time or leaves the head a placement
    then (reservation.py).

    `depth` bounds how many queued jobs one pass examines (Slurm's bf_max_job_test);
    None examines them all.
    """

    name = "fifo-backfill"

    def __init__(self, depth: int | None = None) -> None:
        self.depth = depth

    def bind(self, view: View, pools: int) -> None:
        self.view = view
        # Pending jobs per pool in arrival order, as (arrival number, job).
        self.queues: list[SortedList] = [SortedList() for _ in range(pools)]
        self.arrivals = 0
        self.ends: list[SortedList] = [SortedList() for _ in range(pools)]
        self.expected_end: dict[int, float] = {}
        self.arrival_of: dict[int, int] = {}
        self.fresh: list[list[tuple[int, int]]] = [[] for _ in range(pools)]
        self.released = [True] * pools
        # the head's reservation, kept while no GPUs are released in the pool
        self.reservation: list[Reservation | None] = [None] * pools

    def submitted(self, job: int) -> None:
        pool = self.view.pool[job]
        entry = (self.arrivals, job)
        self.arrival_of[job] = self.arrivals
        self.arrivals += 1
        self.queues[pool].add(entry)
        self.fresh[pool].append(entry)

    def interrupted(self, job: int) -> None:
        self.finished(job)
        self.queues[self.view.pool[job]].add((self.arrival_of[job], job))

    def finished(self, job: int) -> None:
        pool = self.view.pool[job]
        self.ends[pool].remove((self.expected_end.pop(job), job))
        self.released[pool] = True

    def _start(self, job: int, placement: tuple) -> Start:
        view = self.view
        end = view.now_s + view.run_s(job)
        self.expected_end[job] = end
        self.ends[view.pool[job]].add((end, job))
        return Start(job, placement)

    def decide(self, pool: int) -> Iterator[Decision]:
        view = self.view
        queue = self.queues[pool]
        fresh = self.fresh[pool]
        self.fresh[pool] = []
        while queue:
            head = queue[0][1]
            placement = view.place(head)
            if placement is None:
                break
            queue.pop(0)
            yield self._start(head, placement)
        if not queue:
            return
        head_entry = queue[0]
        head = head_entry[1]
        free = view.free_gpus(pool)
        reservation = self.reservation[pool]
        incremental = (
            not self.released[pool]
            and reservation is not None
            and reservation.job == head
            and self.depth is None
        )
        self.released[pool] = False
        if incremental:
            # Arrivals since the last pass; some may have started as the head since.
            candidates = (entry for entry in fresh if entry != head_entry and entry in queue)
        else:
            ends = self.ends[pool]
            reservation = Reservation(view, head, lambda: shadow_placement(view, head, ends))
            stop = None if self.depth is None else self.depth + 1
            candidates = queue.islice(1, stop)
        assert reservation is not None
        gpus = view.gpus
        started = []
        for entry in candidates:
            if free <= 0:
                break
            job = entry[1]
            g = gpus[job]
            if g > free or reservation.holds(job) is not None:
                continue
            placement = view.place(job)
            if placement is not None:
                placement = reservation.admit(job, placement)
            if placement is None:
                continue
            started.append(entry)
            yield self._start(job, placement)
            reservation.started(job, placement)
            free -= g
        for entry in started:
            queue.remove(entry)
        self.reservation[pool] = reservation
