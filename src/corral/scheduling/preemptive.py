"""Preemptive priority scheduling: each pass walks the waiting jobs of a pool from the
highest rank down; a job starts where it can be placed, and otherwise may preempt running
jobs ranked below it, lowest first, only when their GPUs plus the free ones add up to what it
needs and their hosts give it a placement (victims.py).

A victim waits again at once, in its rank, so GPUs its preemptor leaves over go to it before
any job ranked below it; it does not start again in the same pass (a stop and a start at
one instant is no run at all). Victims are sought first among the running jobs that would
not hold GPUs were the pool handed out afresh by rank (Tiresias' rule: the jobs that fit, in
rank order, run), so that one stop serves several newcomers where it can: a 2-GPU job
stopped for two 1-GPU newcomers, rather than a 1-GPU job for the first and the 2-GPU one
for the second.

Preemption here is free: the job keeps its progress (Tiresias' assumption of a cheap
checkpoint on preemption). Jobs marked not preemptible are never victims.

SRTF (below) and Tiresias' LAS (las.py) differ only in the rank and its indexes; both keep
their running jobs indexed by rank so a pass costs what the waiting jobs cost, not what the
running ones do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterable, Iterator
from itertools import chain

import numpy as np
from sortedcontainers import SortedList

from corral.scheduling.policy import Decision, JobIndex, JobKey, Preempt, Start, Traits, View, same
from corral.scheduling.victims import victims_for_placement
from corral.scheduling.waiting import BySize, startable
from corral.state.reasons import Reason


class PreemptivePriority(Traits):
    name = "preemptive"

    def bind(self, view: View, pools: int) -> None:
        self.view = view
        # waiting jobs per pool in rank order, as (rank, job); ranks change only by rerank()
        self.waiting: list[SortedList] = [SortedList() for _ in range(pools)]
        self.waiting_rank: dict[int, tuple] = {}
        self.by_size = [BySize(view) for _ in range(pools)]  # the same jobs by size
        # waiting jobs whose search for victims failed, with what it depended on
        self.no_victims: dict[int, tuple] = {}
        self.stopped_now: set[int] = set()  # preempted in the current pass
        self.displaced: set[int] | None = None  # running jobs a fresh handing-out would stop

    def submitted(self, job: int) -> None:
        self._wait(job)

    def adopt(self, job: int) -> None:
        self.started(job)

    def withdrawn(self, job: int) -> None:
        if self.is_waiting(job):
            self._unwait(job)
            self.forget(job)
        else:
            self.finished(job)

    def forget(self, job: int) -> None:
        """Drop what is kept of `job`, which has left the cluster."""

    def export(self, key: JobKey = same) -> dict:
        """Each waiting job's rank as it was made (a rank can depend on when it was made;
        its last part, the job, is left out), with what the rank keeps besides."""
        waiting = [[key(job), list(rank[:-1])] for job, rank in self.waiting_rank.items()]
        return {"waiting": waiting, **self.export_rank(key)}

    def restore(self, data: dict, index: JobIndex = same) -> None:
        self.restore_rank(data, index)
        for name, rank in data["waiting"]:
            job = index(name)
            if job is not None and self.is_waiting(job):
                self._unwait(job)
                self._wait(job, (*rank, job))

    def export_rank(self, key: JobKey) -> dict:
        return {}

    def restore_rank(self, data: dict, index: JobIndex) -> None:
        """Put back what `export_rank` gave (running indexes included)."""

    def _wait(self, job: int, rank: tuple | None = None) -> None:
        view = self.view
        entry = (self.rank(job) if rank is None else rank, job)
        self.waiting_rank[job] = entry[0]
        self.waiting[view.pool[job]].add(entry)
        self.by_size[view.pool[job]].add(entry)

    def _unwait(self, job: int) -> None:
        view = self.view
        pool = view.pool[job]
        entry = (self.waiting_rank.pop(job), job)
        self.no_victims.pop(job, None)
        waiting = self.waiting[pool]
        if len(waiting) == 1:  # (cheaper than a removal that empties it)
            waiting.clear()
        else:
            waiting.remove(entry)
        self.by_size[pool].remove(entry)

    def _next(
        self, pool: int, after: tuple | None, fits: Callable[[int, int | None], bool] | None
    ) -> tuple | None:
        """The first waiting entry after `after` (None: from the first) whose size `fits`
        (None: any size): the next in rank order where it fits, the common case, else found
        by size, so the size index is read only past a job that does not fit."""
        waiting, view = self.waiting[pool], self.view
        at = 0 if after is None else waiting.bisect_right(after)
        if at == len(waiting):
            return None
        entry = waiting[at]
        if fits is None or fits(view.gpus[entry[1]], view.level[entry[1]]):
            return entry
        return self.by_size[pool].first_after(entry, fits)

    def is_waiting(self, job: int) -> bool:
        return job in self.waiting_rank

    def finished(self, job: int) -> None:
        self.stopped(job)
        self.forget(job)

    def interrupted(self, job: int) -> None:
        self.stopped(job)
        self._wait(job)

    # --- what a rank supplies ------------------------------------------------------------

    def rank(self, job: int) -> tuple:
        """Sort key of a waiting job: lower runs first."""
        raise NotImplementedError

    def victims(self, pool: int, job: int) -> Iterable[int]:
        """Running jobs ranked below waiting `job`, lowest rank first: a lower-ranked job's
        victims are a subset of a higher-ranked one's."""
        raise NotImplementedError

    def outranks_running(self, pool: int, job: int) -> bool:
        """Whether waiting `job` outranks any running job (so it may preempt). Must only get
        falser for lower-ranked jobs: the pass stops at the first job that cannot fit or preempt."""
        raise NotImplementedError

    def started(self, job: int) -> None:
        """Index `job` as running (called as its Start is yielded, or when it is adopted:
        what it reads of the run is from `view.run_start`)."""

    def stopped(self, job: int) -> None:
        """Drop `job` from the running index (preempted or finished)."""

    def victims_stamp(self, pool: int) -> int | None:
        """A count that moves whenever a running job of `pool` may have come to rank below
        a waiting job it did not rank below before; None if there is none (ranks that move
        with time alone), and every search for victims is then done afresh."""
        return None

    def before_pass(self, pool: int) -> None:
        """Bring ranks up to date (LAS demotion and promotion)."""

    def after_pass(self, pool: int) -> Iterator[Decision]:
        return iter(())

    # --- the pass ------------------------------------------------------------------------

    def decide(self, pool: int) -> Iterator[Decision]:
        waiting = self.waiting[pool]
        if not waiting:
            # Nobody waits: ranks cannot change who runs, so there is nothing to decide.
            return
        self.before_pass(pool)
        self.stopped_now = set()
        # Rounds until nobody is preempted: a round's victims may preempt jobs ranked below
        # them in the next. Every preemption puts a job in place of lower-ranked ones, so the
        # rounds end.
        while (yield from self._round(pool)):
            pass
        self.stopped_now = set()
        if waiting:
            yield from self.after_pass(pool)

    def _round(self, pool: int) -> Generator[Decision, None, list[int]]:
        """Serve the waiting jobs in rank order; returns the jobs preempted."""
        view = self.view
        waiting = self.waiting[pool]
        preempted: list[int] = []
        self.displaced = None
        after: tuple | None = None  # the last waiting entry examined, in rank order
        # Sizes that could not be placed even by preempting every job ranked below: later
        # jobs have no more to preempt (victims are nested by rank), so any size at least as
        # large at that topology level is passed over.
        hopeless: dict[int | None, int] = {}
        # Jobs that outrank a running job may preempt: take them in rank order.
        while waiting:
            fits = (lambda gpus, level: gpus < hopeless.get(level, math.inf)) if hopeless else None
            entry = self._next(pool, after, fits)
            if entry is None or not self.outranks_running(pool, entry[1]):
                break
            after = entry
            job = entry[1]
            if job in self.stopped_now:
                continue
            placement = view.place(job) if view.gpus[job] <= view.free_gpus(pool) else None
            if placement is None:
                chosen = self._victims(pool, entry)
                if chosen is None:
                    hopeless[view.level[job]] = min(view.gpus[job], hopeless.get(view.level[job], math.inf))
                if not chosen:
                    continue
                for victim in chosen:
                    self.stopped(victim)
                    why = Reason("preempted", "preempted: outranked by job {job0}", (job,))
                    yield Preempt(victim, why, by=job)
                    self._wait(victim)  # (in its rank, before any job ranked below it)
                self.stopped_now.update(chosen)
                preempted.extend(chosen)
                placement = view.place(job)
                if placement is None:
                    raise RuntimeError(f"job {job} still unplaceable after its victims were preempted")
            self._unwait(job)
            yield Start(job, placement)
            self.started(job)
        # The rest rank lower (outranks_running only gets falser) and can only take free
        # GPUs: jump to the next job of a size that could start.
        while waiting and view.free_gpus(pool) > 0:
            after = self._next(pool, after, startable(view, pool))
            if after is None:
                break
            job = after[1]
            placement = view.place(job) if job not in self.stopped_now else None
            if placement is not None:
                self._unwait(job)
                yield Start(job, placement)
                self.started(job)
        return preempted

    def _victims(self, pool: int, entry: tuple) -> list[int] | None:
        """`victims_for_placement` for waiting `entry`, remembering a failure. It stays a
        failure while no GPUs return to the pool (the generation) and no running job comes
        to rank below the job (the stamp): a job ranked below that starts takes free GPUs
        and offers the same ones as a victim, and anything else only takes GPUs away."""
        job = entry[1]
        generation, stamp = self.view.generation(pool), self.victims_stamp(pool)
        known = None if generation is None or stamp is None else (entry[0], generation, stamp)
        if known is not None and self.no_victims.get(job) == known:
            return None
        if self._no_host_can(pool, job):
            chosen = None
        else:
            if self.displaced is None:
                self.displaced = self._displaced(pool)
            displaced = self.displaced
            first = (v for v in self.victims(pool, job) if v in displaced)
            then = (v for v in self.victims(pool, job) if v not in displaced)
            chosen = victims_for_placement(self.view, job, chain(first, then) if displaced else then)
        if chosen is None and known is not None:
            self.no_victims[job] = known
        return chosen

    def _displaced(self, pool: int) -> set[int]:
        """The running jobs that would not hold GPUs were the pool handed out afresh, by GPU
        count, to every job in rank order (Tiresias' pass): those ranked below the first
        waiting job, less those that still fit once the jobs ranked above them have theirs."""
        view, waiting = self.view, self.waiting[pool]
        if not waiting:
            return set()
        below = [v for v in self.victims(pool, waiting[0][1]) if view.preemptible[v]]
        room = view.free_gpus(pool) + sum(int(view.gpus[v]) for v in below)
        running = sorted((self.rank(v), v) for v in below)
        displaced, w, r = set(), 0, 0
        while r < len(running) and room > 0:
            if w < len(waiting) and waiting[w] < running[r]:
                job, w = waiting[w][1], w + 1
            else:
                job, r = running[r][1], r + 1
                if view.gpus[job] > room:
                    displaced.add(job)
                    continue
            if view.gpus[job] <= room:
                room -= int(view.gpus[job])
        displaced.update(v for _, v in running[r:])
        return displaced

    def victim_gpus(self, pool: int, job: int) -> np.ndarray | None:
        """Per host, the GPUs of every job `victims` would offer `job`, where the policy
        keeps an index of them (None: it keeps none, and a walk must find them)."""
        return None

    def _no_host_can(self, pool: int, job: int) -> bool:
        """Whether `job`, on one host, could not be placed even were every victim it may take
        stopped: no host of the pool has its GPUs free or held by those victims. Known from
        a per-host index where the policy keeps one (`victim_gpus`), without the walk."""
        view = self.view
        if view.gpus[job] > view.max_host_gpus(pool):
            return False
        per_host = self.victim_gpus(pool, job)
        if per_host is None:
            return False
        hosts = view.pool_hosts(pool)
        room = view.free_vector()[hosts] + per_host[hosts]
        return int(room.max()) < view.gpus[job]


class Srtf(PreemptivePriority):
    """Oracle shortest-remaining-time-first: SJF that preempts for a shorter newcomer."""

    name = "srtf"
    needs_durations = True

    def bind(self, view: View, pools: int) -> None:
        super().bind(view, pools)
        self.ends: list[SortedList] = [SortedList() for _ in range(pools)]
        self.end_of: dict[int, float] = {}

    def rank(self, job: int) -> tuple:
        return (self.view.remaining_s(job), job)

    def started(self, job: int) -> None:
        since, left = self.view.run_start(job)
        end = since + left
        self.end_of[job] = end
        self.ends[self.view.pool[job]].add((end, job))

    def stopped(self, job: int) -> None:
        end = self.end_of.pop(job, None)
        if end is not None:
            self.ends[self.view.pool[job]].remove((end, job))

    def victims_stamp(self, pool: int) -> int:
        """Constant: a running job's remaining time only shrinks, so it only outranks more."""
        return 0

    def outranks_running(self, pool: int, job: int) -> bool:
        ends = self.ends[pool]
        return bool(ends) and (ends[-1][0] - self.view.now_s, ends[-1][1]) > self.rank(job)

    def victims(self, pool: int, job: int) -> Iterator[int]:
        mine = self.rank(job)
        now = self.view.now_s
        for end, victim in reversed(self.ends[pool]):
            if (end - now, victim) <= mine:
                return
            yield victim
