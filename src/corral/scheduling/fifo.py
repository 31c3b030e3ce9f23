"""First come, first served: strict, with EASY backfill, or first-fit."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator

from sortedcontainers import SortedList

from corral.scheduling.policy import Decision, JobIndex, JobKey, Start, Traits, View, same
from corral.scheduling.reservation import Reservation, ShadowCache
from corral.scheduling.sjf import ListScheduling
from corral.scheduling.waiting import BySize, Cursor, Size

WALK_BY_SIZE = 64  # queues longer than this are walked size by size (`_backfill_walk`)


class Fifo(Traits):
    """Strict FCFS per pool: the head job blocks everyone behind it (head-of-line blocking)."""

    name = "fifo"

    def bind(self, view: View, pools: int) -> None:
        self.view = view
        self.queues: list[deque[int]] = [deque() for _ in range(pools)]

    def submitted(self, job: int) -> None:
        self.queues[self.view.pool[job]].append(job)

    def adopt(self, job: int) -> None:
        pass

    def finished(self, job: int) -> None:
        pass

    def interrupted(self, job: int) -> None:
        self.queues[self.view.pool[job]].appendleft(job)  # it came first

    def withdrawn(self, job: int) -> None:
        queue = self.queues[self.view.pool[job]]
        if job in queue:
            queue.remove(job)

    def export(self, key: JobKey = same) -> dict:
        """The queue order: an interrupted job goes back to the front, ahead of earlier
        arrivals, so the order is not the arrival order."""
        return {"queues": [[key(job) for job in queue] for queue in self.queues]}

    def restore(self, data: dict, index: JobIndex = same) -> None:
        """The saved order first, then jobs submitted since (as they were queued now)."""
        saved = [[index(name) for name in queue] for queue in data["queues"]]
        for pool, queue in enumerate(self.queues):
            kept = [job for job in (saved[pool] if pool < len(saved) else []) if job in queue]
            known = set(kept)
            self.queues[pool] = deque(kept + [job for job in queue if job not in known])

    def decide(self, pool: int) -> Iterator[Decision]:
        queue = self.queues[pool]
        while queue:
            placement = self.view.place(queue[0])
            if placement is None:
                return
            yield Start(queue.popleft(), placement)


class FifoFirstFit(ListScheduling):
    """Arrival order, skipping a job that does not fit, with no reservation: the FIFO of
    Alibaba's PAI simulator and Tiresias' `fjf`. A large job can wait for ever behind a
    stream of small ones; EASY backfill (below) is the fix."""

    name = "fifo-firstfit"

    def key(self, job: int) -> tuple:
        return (self.view.submit_s[job],)


class FifoBackfill(Traits):
    """EASY backfill (Lifka 1995; Slurm's sched/backfill): the blocked head job gets a
    reservation at the earliest time it could be placed (the shadow time, from the remaining
    `duration_s` as the runtime estimate, with checkpoint writes and any restart cost); a
    later job may start now only if it ends by the shadow time or leaves the head a placement
    then (reservation.py).

    `depth` bounds how many queued jobs one pass examines (Slurm's bf_max_job_test);
    None examines them all: a long queue is then walked size by size, passing over the jobs
    that could not start beside the reservation without looking at each (`_backfill_walk`).
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
        self.generation: list[int | None] = [None] * pools  # the pool's, at the last pass
        # the head's reservation, kept while no GPUs are released in the pool
        self.reservation: list[Reservation | None] = [None] * pools
        # its shadow time, kept across completions that cannot have moved it
        self.shadows = [ShadowCache(view, pool, self.expected_end) for pool in range(pools)]
        self.by_size = [BySize(view, runs=True) for _ in range(pools)]  # the queues' entries by size

    def submitted(self, job: int) -> None:
        pool = self.view.pool[job]
        entry = (self._arrive(job), job)
        self.queues[pool].add(entry)
        self.by_size[pool].add(entry)
        self.fresh[pool].append(entry)

    def _arrive(self, job: int) -> int:
        self.arrival_of[job] = self.arrivals
        self.arrivals += 1
        return self.arrival_of[job]

    def adopt(self, job: int) -> None:
        self._arrive(job)
        self._started(job)

    def interrupted(self, job: int) -> None:
        self._ended(job, completed=False)
        pool, entry = self.view.pool[job], (self.arrival_of[job], job)
        self.queues[pool].add(entry)
        self.by_size[pool].add(entry)

    def finished(self, job: int) -> None:
        self._ended(job, completed=True)

    def _ended(self, job: int, completed: bool) -> None:
        pool = self.view.pool[job]
        end = self.expected_end.pop(job)
        self.ends[pool].remove((end, job))
        self.released[pool] = True
        self.shadows[pool].stopped(job, completed, end > self.view.now_s)

    def withdrawn(self, job: int) -> None:
        if job in self.expected_end:
            self._ended(job, completed=False)
        else:
            pool, entry = self.view.pool[job], (self.arrival_of[job], job)
            self.queues[pool].remove(entry)
            self.by_size[pool].remove(entry)
            self.released[pool] = True
        del self.arrival_of[job]

    def export(self, key: JobKey = same) -> None:
        """Nothing: arrival order is submission order, and expected ends are the cluster's."""

    def restore(self, data: None, index: JobIndex = same) -> None:
        pass

    def _started(self, job: int) -> None:
        """Index `job`, just started, by its expected end."""
        end = self.view.expected_end_s(job)
        self.expected_end[job] = end
        self.ends[self.view.pool[job]].add((end, job))
        self.shadows[self.view.pool[job]].started(job)

    def decide(self, pool: int) -> Iterator[Decision]:
        view = self.view
        queue = self.queues[pool]
        fresh = self.fresh[pool]
        self.fresh[pool] = []
        generation = view.generation(pool)  # (starts never move it)
        while queue:
            head = queue[0][1]
            placement = view.place(head)
            if placement is None:
                break
            self.by_size[pool].remove(queue.pop(0))
            yield Start(head, placement)
            self._started(head)
        if not queue:
            return
        head_entry = queue[0]
        head = head_entry[1]
        free = view.free_gpus(pool)
        reservation = self.reservation[pool]
        incremental = (
            not self.released[pool]
            and generation is not None
            and generation == self.generation[pool]
            and reservation is not None
            and reservation.job == head
            and self.depth is None
        )
        self.released[pool] = False
        self.generation[pool] = generation
        if incremental:
            # Arrivals since the last pass; some may have started as the head since.
            candidates = (entry for entry in fresh if entry != head_entry and entry in queue)
        else:
            ends, cache = self.ends[pool], self.shadows[pool]
            reservation = Reservation(view, head, lambda: cache.find(head, ends))
            if self.depth is None and len(queue) > WALK_BY_SIZE:
                candidates = self._backfill_walk(pool, head_entry, reservation, lambda: free)
            else:
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
            yield Start(job, placement)
            self._started(job)
            reservation.started(job, placement)
            free -= g
        for entry in started:
            queue.remove(entry)
            self.by_size[pool].remove(entry)
        self.reservation[pool] = reservation

    def _backfill_walk(
        self, pool: int, head: tuple, reservation: Reservation, free: Callable[[], int]
    ) -> Iterator[tuple]:
        """The queue after `head`, in order, less jobs that could not start beside the
        reservation when the walk reaches them: more GPUs than are `free` then, or lasting
        past the shadow time where a job of their size may not (more GPUs than are spare
        then, or of a size `admit` refused since GPUs last changed hands). The caller tests
        each job yielded as it would every job; this only passes over the rest, a size at a
        time, so a pass costs the jobs that could start, not the queue's length. The shadow
        time is asked for only where the walk of every job would have asked."""
        groups = self.by_size[pool]
        groups.sort_in()
        # per size, where the walk is in its jobs and in those that end by the shadow time:
        # each is read forward only, as the walk goes on in order
        every: dict[Size, Cursor] = {}
        ending: dict[Size, Cursor] = {}
        at = head
        while (left := free()) > 0:
            best = None
            for size, group in groups.groups.items():
                gpus, level = size
                if gpus > left or group[-1] <= at or (best is not None and group[0] >= best):
                    continue
                known = reservation.known()
                if gpus <= known.extra_gpus and not known.refuses(gpus, level):
                    cursor = every.get(size)
                    if cursor is None:
                        cursor = every[size] = Cursor(group.irange(minimum=at, inclusive=(False, True)))
                else:
                    cursor = ending.get(size)
                    if cursor is None:
                        cursor = ending[size] = Cursor(iter(groups.ending_by(size, known.ends_within, at)))
                nxt = cursor.after(at)
                if nxt is not None and (best is None or nxt < best):
                    best = nxt
            if best is None:
                return
            yield best
            at = best
