"""Scheduling a fleet shared by teams, composed from four parts:

- admission: each queue's quota, with borrowing from and lending to its cohort
  (quota.py), and reclaim: a queue that asks for no more than its nominal quota takes it back
  by preempting jobs of queues that borrow;
- ordering: which queue's head job goes next: first come first served, weighted max-min fair
  share (the queue with the least GPUs per unit of weight, optionally counting decayed past
  usage as Slurm's fair-share factor does; decided from the top of the cohort tree down, as
  Slurm's fair tree does), or priority class then arrival;
- placement and preemption: a job whose GPUs are not free may preempt running jobs of
  strictly lower priority; victims are picked to lose the least work (GPUs x time since their
  last checkpoint), only where freeing them yields a placement, and a job is always stopped
  whole;
- backfill: the first job in order that is admitted but cannot be placed gets a reservation
  at the first time it could be placed (from running jobs' expected ends, as EASY backfill
  does: remaining work plus checkpoint writes and any restart cost), and later jobs may
  start only if they end before it or leave it a placement then, and leave it its quota
  (reservation.py).

Within a queue, jobs go in order (Kueue's StrictFIFO): a queue whose head is over quota
waits; with backfill, a job that only lacks free GPUs lets the jobs behind it be considered.
Where the mechanism records reasons, each pass says why the jobs it looked at wait: queue
heads and backfill candidates. A job it did not look at waits its turn in its queue (the
reason it got on arrival, or on the pass after it was last looked at), so a pass explains
as few jobs as it examines.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Generator, Iterator
from dataclasses import dataclass

import numpy as np
from sortedcontainers import SortedList

from corral.quota import WhatIf
from corral.scheduling.policy import Decision, Hold, JobIndex, JobKey, Preempt, Start, Traits, View, same
from corral.scheduling.reservation import Reservation, ShadowCache
from corral.scheduling.victims import grow_until_placed, needed, places_with, victims_for_placement
from corral.scheduling.waiting import BySize, Size
from corral.state.reasons import QUEUED, Reason, capacity_reason

LN2 = math.log(2.0)
MAX_PASSES = 8  # passes at one instant: each preempts only strictly lower priority or borrowers
QUOTA_EPS = 1e-6  # GPU counts are whole: a headroom this close to the next count admits it
NOTHING: Iterator[Decision] = iter(())  # (an exhausted iterator stays exhausted)
NO_PLACEMENT = Reason("waiting_gpus", "no placement")
OVER_QUOTA = Reason("over_quota", "over quota")


@dataclass(frozen=True)
class Parts:
    order: str = "fifo"  # "fifo", "fair" or "priority"
    borrowing: bool = True
    reclaim: bool = False
    priority_preemption: bool = False
    backfill: bool = False
    backfill_depth: int = 200  # jobs one pass may examine past blocked ones (Slurm's bf_max_job_test)
    half_life_s: float | None = None

    def __post_init__(self) -> None:
        if self.order not in ("fifo", "fair", "priority"):
            raise ValueError(f"unknown order '{self.order}'")
        if self.half_life_s is not None and not self.half_life_s > 0:
            raise ValueError("half_life_s must be > 0")


class Shared(Traits):
    enforces_quota = True
    gives_reasons = True

    def __init__(self, name: str, parts: Parts) -> None:
        self.name = name
        self.parts = parts

    # --- events --------------------------------------------------------------------------

    def bind(self, view: View, pools: int) -> None:
        self.view = view
        self.quota = view.quota
        # per pool, the queues with waiting jobs (a pass builds its heap from them), and how
        # many jobs wait
        self.waiting: list[dict[int, SortedList]] = [{} for _ in range(pools)]
        self.waiting_jobs = [0] * pools
        # Per queue (per node of the quota tree, grown as queues are added):
        # - its waiting jobs in order;
        # - kept only where the policy preempts: its running jobs, how many run at each
        #   priority, and the lowest priority running (who could be a victim at all);
        # - the GPUs held under each queue and cohort, and their decayed past usage: fair
        #   share is decided root to leaves (Slurm's fair tree, Kueue's hierarchical
        #   cohorts), siblings comparing GPUs held under them per unit of weight; a forest
        #   of one tree leaves its root out, since every queue shares it;
        # - kept only with backfill: waiting jobs by (GPUs, topology level), with how long
        #   each would run sorted per size (what finds the next job that could backfill).
        self.queue_jobs: list[SortedList] = []
        self.running_in_queue: list[set[int]] = []
        self.queue_priorities: list[dict[int, int]] = []
        self.lowest_running: list[float] = []
        self.held: list[float] = []
        self.decayed: list[float] = []
        self.decayed_at: list[float] = []
        self.by_size: list[BySize] = []
        self.run_times: list[dict[Size, SortedList]] = []
        self._know_queues(len(self.quota.names))
        self.lowest_in_pool = [math.inf] * pools
        # static job attributes as arrays, for whole-set arithmetic over victim candidates;
        # jobs registered after bind are added as they arrive
        self.known_jobs = 0
        self.np_pool = np.zeros(0, dtype=np.int64)
        self.np_queue = np.zeros(0, dtype=np.int64)
        self.np_priority = np.zeros(0, dtype=np.int64)
        self.np_preemptible = np.zeros(0, dtype=bool)
        self.np_gpus = np.zeros(0, dtype=float)
        self.pool_queues: list[list[int]] = [[] for _ in range(pools)]
        self._know_jobs()
        self.version = [0] * pools
        # Without backfill a pass looks only at queue heads, and what it decides depends only
        # on them, on who runs (quota) and on free GPUs: a pool whose last pass settled in a
        # state where none of these has changed since would decide nothing again.
        self.moves = 0  # starts and stops in every pool (quota is shared between pools)
        self.settled: list[tuple | None] = [None] * pools
        self.decays = self.parts.half_life_s is not None
        self.half_life_s = self.parts.half_life_s or 0.0  # (read only where it decays)
        self.preempts = self.parts.reclaim or self.parts.priority_preemption
        self.settles_at_all = not (self.parts.backfill or self.parts.half_life_s is not None)
        self.new_head = [False] * pools
        # per pool, the waiting jobs the last pass gave a reason other than waiting their turn
        self.told: list[set[int]] = [set() for _ in range(pools)]
        # (queue, GPUs) -> (quota changes, why it is over quota then)
        self.over_quota: dict[tuple[int, int], tuple[int, Reason]] = {}
        # job -> pool version at which no victims could be found (retry once it changes)
        self.no_quota_victims: dict[int, tuple] = {}
        self.no_priority_victims: dict[int, tuple] = {}
        # Kept only with backfill: running jobs' ends (for reservations).
        self.ends: list[SortedList] = [SortedList() for _ in range(pools)]
        self.new_ends: list[dict[int, float]] = [{} for _ in range(pools)]  # not yet in `ends`
        self.end_of: dict[int, float] = {}
        self.shadows = [ShadowCache(view, pool, self.end_of) for pool in range(pools)]

    def _know_jobs(self) -> None:
        """Take on the jobs and queues registered since the last call."""
        view, first = self.view, self.known_jobs
        n = len(view.gpus)
        if n == first:
            return
        nodes = len(self.quota.names)
        if nodes > len(self.queue_jobs):
            self._know_queues(nodes)

        def grow(have: np.ndarray, column: list, dtype: type) -> np.ndarray:
            return np.concatenate([have, np.asarray(column[first:n], dtype=dtype)])

        self.np_pool = grow(self.np_pool, view.pool, np.int64)
        self.np_queue = grow(self.np_queue, view.queue, np.int64)
        self.np_priority = grow(self.np_priority, view.priority, np.int64)
        self.np_preemptible = grow(self.np_preemptible, view.preemptible, bool)
        self.np_gpus = grow(self.np_gpus, view.gpus, float)
        pairs = np.unique(self.np_pool[first:n] * nodes + self.np_queue[first:n]).tolist()
        for pool, q in (divmod(pair, nodes) for pair in pairs):
            if q not in self.pool_queues[pool]:
                self.pool_queues[pool].append(q)
                self.pool_queues[pool].sort()
        self.known_jobs = n

    def _know_queues(self, nodes: int) -> None:
        """Per-queue state for every node of the quota tree (queues added since bind too)."""
        view = self.view
        for _ in range(len(self.queue_jobs), nodes):
            self.queue_jobs.append(SortedList())
            self.running_in_queue.append(set())
            self.queue_priorities.append({})
            self.lowest_running.append(math.inf)
            self.by_size.append(BySize(view))
            self.run_times.append({})
            self.held.append(0.0)
            self.decayed.append(0.0)
            self.decayed_at.append(0.0)
        # the queues of each queue's cohort tree: whom it may reclaim from
        self.tree_of = [[qv for qv in range(nodes) if self.quota.same_tree(q, qv)] for q in range(nodes)]
        self.path_of = list(self.quota.paths)
        roots = [self.quota.paths[q][0] for q in range(nodes) if self.quota.is_queue[q]]
        if len(set(roots)) == 1 and len(roots) > 1:
            self.path_of = [path[1:] for path in self.path_of]
        self.nested = any(len(path) > 1 for path in self.path_of)

    def _key(self, job: int) -> tuple:
        view = self.view
        if self.parts.order == "priority":
            return (-view.priority[job], view.submit_s[job], job)
        return (view.submit_s[job], job)

    def submitted(self, job: int) -> None:
        if job >= self.known_jobs:
            self._know_jobs()
        self._enqueue(job)

    def adopt(self, job: int) -> None:
        if job >= self.known_jobs:
            self._know_jobs()
        self._started(job)

    def withdrawn(self, job: int) -> None:
        view = self.view
        pool, q = view.pool[job], view.queue[job]
        entry = (self._key(job), job)
        jobs = self.queue_jobs[q]
        if entry not in jobs:  # it was running
            self._stopped(job)
            return
        jobs.remove(entry)
        if not jobs:
            del self.waiting[pool][q]
        self.waiting_jobs[pool] -= 1
        self._dequeued(entry)
        self.settled[pool] = None
        self.new_head[pool] = True

    def export(self, key: JobKey = same) -> dict:
        """Decayed past usage per queue and cohort name (where usage decays), with when each
        was last brought up to date: the rest is the cluster's. A node that holds GPUs counts
        even with no past usage yet: its usage accrues from when it was brought up to date,
        which a fresh policy would otherwise take as the moment it adopted the jobs."""
        if not self.decays:
            return {}
        names, decayed, at, held = self.quota.names, self.decayed, self.decayed_at, self.held
        return {names[i]: [decayed[i], at[i]] for i in range(len(names)) if decayed[i] or held[i]}

    def restore(self, data: dict, index: JobIndex = same) -> None:
        """Put back what `export` gave (names no longer configured are dropped)."""
        at = {name: i for i, name in enumerate(self.quota.names)}
        for name, (value, at_s) in data.items():
            if name in at:
                self.decayed[at[name]], self.decayed_at[at[name]] = value, at_s

    def _enqueue(self, job: int) -> None:
        view = self.view
        queues = self.waiting[view.pool[job]]
        q = view.queue[job]
        jobs = self.queue_jobs[q]
        if not jobs:
            queues[q] = jobs
        entry = (self._key(job), job)
        jobs.add(entry)
        self.waiting_jobs[view.pool[job]] += 1
        if not self.parts.backfill:
            if queues[q][0] == entry:
                self.new_head[view.pool[job]] = True
            return
        self.by_size[q].add(entry)

    def _index(self, q: int) -> None:
        """Sort queue q's jobs waiting since its last walk into its size index, and their run
        times beside it: done when a walk needs them, so a job that starts on arrival (most,
        in an uncrowded pool) is never indexed (waiting.BySize)."""
        view, run_times = self.view, self.run_times[q]
        for _, job in self.by_size[q].sort_in():
            size = (view.gpus[job], view.level[job])
            if size not in run_times:
                run_times[size] = SortedList()
            run_times[size].add(view.run_s(job))

    def _dequeued(self, entry: tuple) -> None:
        if not self.parts.backfill:
            return
        view, job = self.view, entry[1]
        q = view.queue[job]
        if not self.by_size[q].remove(entry):
            return  # (never sorted in)
        size, run_times = (view.gpus[job], view.level[job]), self.run_times[q]
        run_times[size].remove(view.run_s(job))
        if not run_times[size]:
            del run_times[size]

    def finished(self, job: int) -> None:
        self._stopped(job, completed=True)

    def interrupted(self, job: int) -> None:
        self._stopped(job)
        self._enqueue(job)

    def _started(self, job: int) -> None:
        """Account for `job`, just started (or adopted)."""
        self._running(job, 1)
        if self.parts.backfill:
            pool = self.view.pool[job]
            end = self.view.expected_end_s(job)
            self.end_of[job] = end
            self.new_ends[pool][job] = end
            self.shadows[pool].started(job)

    def _stopped(self, job: int, completed: bool = False) -> None:
        self._running(job, -1)
        if self.parts.backfill:
            pool = self.view.pool[job]
            end = self.end_of.pop(job)
            if self.new_ends[pool].pop(job, None) is None:
                self.ends[pool].remove((end, job))
            self.shadows[pool].stopped(job, completed, end > self.view.now_s)

    def _running(self, job: int, sign: int) -> None:
        """Account for `job` starting (sign 1) or stopping (-1): the GPUs held under its
        queue and cohorts and, where the policy preempts, who runs at which priority."""
        view, held = self.view, self.held
        pool, q = view.pool[job], view.queue[job]
        gpus = sign * view.gpus[job]
        for node in self.path_of[q]:
            if self.decays:
                self._decay(node)
            held[node] += gpus
        if self.preempts:
            running, counts, prio = self.running_in_queue[q], self.queue_priorities[q], view.priority[job]
            if sign > 0:
                running.add(job)
            else:
                running.discard(job)
            n = counts.get(prio, 0) + sign
            if n:
                counts[prio] = n
            else:
                del counts[prio]
            if n == (sign > 0):  # a priority came (count 1) or went (0)
                self.lowest_running[q] = min(counts, default=math.inf)
                self.lowest_in_pool[pool] = min(self.lowest_running[qv] for qv in self.pool_queues[pool])
        self.version[pool] += 1
        self.moves += 1

    # --- fair share ----------------------------------------------------------------------

    def _decay(self, node: int) -> None:
        """Bring a node's decayed usage (GPU-seconds, half-life h) up to now (where a
        half-life is set)."""
        now = self.view.now_s
        dt = now - self.decayed_at[node]
        if dt > 0:
            h = self.half_life_s
            keep = 2.0 ** (-dt / h)
            self.decayed[node] = self.decayed[node] * keep + self.held[node] * (h / LN2) * (1.0 - keep)
            self.decayed_at[node] = now

    def share(self, node: int) -> float:
        """GPUs per unit of weight held under a queue or cohort: current allocation, plus
        the decayed average of past allocation when a half-life is set."""
        used = self.held[node]
        h = self.parts.half_life_s
        if h is not None:
            self._decay(node)
            used += self.decayed[node] * LN2 / h
        return used / max(self.quota.weight[node], 1e-12)

    def _queue_key(self, q: int, head: tuple) -> tuple:
        """Fair order compares shares from the top of the tree down, so a queue goes first
        when its branch holds least at the first level where branches differ (cohorts of
        equal share by number, queues of equal share by their heads)."""
        if self.parts.order != "fair":
            return head
        path = self.path_of[q]
        if len(path) == 1:
            return (self.share(q), *head)
        key: list = []
        for node in path[:-1]:
            key += (self.share(node), node)
        return (*key, self.share(q), *head)

    # --- the pass ------------------------------------------------------------------------

    def decide(self, pool: int) -> Iterator[Decision]:
        if not self.waiting_jobs[pool]:
            return NOTHING  # (most calls where jobs start on arrival: no generator to make)
        if self.settles_at_all:
            state = self._settles(pool)
            if state is not None and state == self.settled[pool] and not self.new_head[pool]:
                return NOTHING
        return self._passes(pool)

    def _passes(self, pool: int) -> Iterator[Decision]:
        """Passes until one preempts nothing and leaves its reservation as it found it: a
        job preempted in a pass waits for the next one, where it may take back its own queue's
        quota from a borrower at once; and where jobs within their nominal quota (never held)
        took the reserved job's quota or GPUs, the next pass reserves afresh, for it at a later
        time or for another job."""
        explain = self.view.explain
        told: set[int] = set()
        for _ in range(MAX_PASSES):
            preempted: list[int] = []
            # A pass that starts a job may leave a job it looked at earlier decidable now (the
            # start made a borrower it could reclaim from): the pool counts as settled only in
            # the state the pass began from, so that it is passed again unless nothing moved.
            before = self._settles(pool) if self.settles_at_all else None
            stale = yield from self._pass(pool, preempted, told)
            if not preempted and not stale:
                if self.settles_at_all:
                    self.settled[pool] = before
                    self.new_head[pool] = False
                if explain:
                    yield from self._untold(pool, told)
                return
            for v in preempted:
                self._enqueue(v)
                told.add(v)  # (its reason: why it was preempted)

    def _untold(self, pool: int, told: set[int]) -> Iterator[Hold]:
        """Jobs the last pass explained and this one did not look at wait their turn again."""
        for job in self.told[pool] - told:
            if self._is_waiting(job):
                yield Hold(job, QUEUED)
        self.told[pool] = told

    def _is_waiting(self, job: int) -> bool:
        return (self._key(job), job) in self.queue_jobs[self.view.queue[job]]

    def _settles(self, pool: int) -> tuple | None:
        """What a pass without backfill depends on besides queue heads; None where it also
        depends on time (relaxed placement). Not asked where passes depend on time anyway
        (backfill reservations, decaying usage) or must give reasons (`settles_at_all`)."""
        epoch = self.view.generation(pool)
        return None if epoch is None else (self.moves, epoch)

    def _pass(self, pool: int, preempted: list[int], told: set[int]) -> Generator[Decision, None, bool]:
        """One pass over the pool's queues; whether its reservation went stale. Jobs it gives
        a reason (where reasons are recorded) go in `told`."""
        if not self.waiting_jobs[pool]:
            return False
        queues = self.waiting[pool]
        view = self.view
        explain = view.explain
        # Candidates are queue heads; with backfill, a queue whose candidate cannot be placed
        # offers its next job that could start (_next_candidate), up to `backfill_depth` in all.
        # (key, queue, entry, starts and stops when the key was made)
        if len(queues) == 1:  # a heap of one queue's jobs needs no order between queues
            ((q, jobs),) = queues.items()
            heap = [((), q, jobs[0], self.moves)]
        else:
            heap = [(self._queue_key(q, jobs[0][0]), q, jobs[0], self.moves) for q, jobs in queues.items()]
            heapq.heapify(heap)
        depth = self.parts.backfill_depth
        reservation: Reservation | None = None
        blocked_by: int | None = None
        lacks = NO_PLACEMENT
        while heap:
            key, q, entry, made = heapq.heappop(heap)
            if self.nested and made != self.moves:
                # A start raises the shares of its cohorts, and so the keys of its siblings
                # waiting in the heap: take a head only once its key is up to date.
                key = self._queue_key(q, entry[0])
                if heap and key > heap[0][0]:
                    heapq.heappush(heap, (key, q, entry, self.moves))
                    continue
            jobs = self.queue_jobs[q]
            job = entry[1]
            if blocked_by is not None:
                if explain:
                    told.add(job)
                    yield Hold(job, Reason("behind", "behind job {job0} in first-come order", (blocked_by,)))
                continue
            why = self._admission(job)
            if why is not None and self._may_preempt_for_quota(job):
                victims = self._quota_victims(pool, job)
                if (
                    victims
                    and reservation is not None
                    and not self._exempt(job, reservation)
                    and not reservation.leaves_quota_without(view.queue[job], view.gpus[job], victims)
                ):  # (it would take the reserved job's quota even with them gone: preempting
                    # them for it would only let them start again, pass after pass)
                    victims = []
                if victims:
                    yield from self._evict(victims, self._reclaimed(q, job), job, preempted, reservation)
                    why = self._admission(job)
            if why is not None:  # the queue waits for quota (strict order within a queue)
                if explain:
                    told.add(job)
                    yield Hold(job, why)
                continue
            gpus = view.gpus[job]
            placement = None
            # A job within a guaranteed nominal quota is not held: those GPUs are its queue's.
            held = reservation is not None and not self._exempt(job, reservation)
            if held:
                why = reservation.holds(job)  # type: ignore[union-attr]
            if why is None:
                placement = view.place(job) if gpus <= view.free_gpus(pool) else None
                if placement is not None and held:
                    placement = reservation.admit(job, placement)  # type: ignore[union-attr]
                    if placement is None:
                        why = reservation.delays()  # type: ignore[union-attr]
                if why is None and placement is None and self._may_reclaim_gpus(job):
                    # admitted within its nominal quota, but borrowers hold the GPUs
                    victims = self._quota_victims(pool, job)
                    yield from self._evict(victims, self._reclaimed(q, job), job, preempted, reservation)
                    if victims:
                        placement = view.place(job)
                if why is None and placement is None and self._may_preempt_for_priority(pool, job):
                    victims = self._priority_victims(pool, job)
                    why_v = Reason(
                        "preempted",
                        f"preempted: outranked by job {{job0}} (priority {view.priority[job]})",
                        (job,),
                    )
                    yield from self._evict(victims, why_v, job, preempted, reservation)
                    if victims:
                        placement = view.place(job)
                if why is None and placement is None:
                    why = self._capacity_reason(pool, job) if explain else NO_PLACEMENT
                    if self.parts.backfill and reservation is None:
                        reservation = self._reserve(pool, job)
                        lacks = why  # (said once the pass knows whether it found a shadow time)
                    elif not self.parts.backfill and self.parts.order != "fair":
                        blocked_by = job  # strict order: nobody passes the blocked job
            if placement is None:
                after = (
                    self._next_candidate(q, entry, reservation) if self.parts.backfill and depth > 0 else None
                )
                if after is not None:
                    depth -= 1
                    heapq.heappush(heap, (self._queue_key(q, after[0]), q, after, self.moves))
                if explain:
                    told.add(job)
                    yield Hold(job, why)  # type: ignore[arg-type]
                continue
            if len(jobs) == 1:  # (the common case, and cheaper than a removal that empties it)
                jobs.clear()
                del queues[q]
            else:
                jobs.remove(entry)
            self.waiting_jobs[pool] -= 1
            self._dequeued(entry)
            yield Start(job, placement)
            self._started(job)
            if reservation is not None:
                reservation.started(job, placement)
            if jobs:
                at = jobs.bisect_right(entry)
                if at < len(jobs):
                    heapq.heappush(heap, (self._queue_key(q, jobs[at][0]), q, jobs[at], self.moves))
        if reservation is None:
            return False
        if explain:
            told.add(reservation.job)
            yield Hold(reservation.job, self._reserved(reservation, lacks))
        return reservation.stale()

    def _reserved(self, reservation: Reservation, lacks: Reason) -> Reason:
        """Why the reserved job waits: what it lacks (not when it should be placeable: that
        time is not sought for the reason alone, and it moves as running jobs end)."""
        text = f"reserved: GPUs are held for it as they free up ({lacks.text})"
        return Reason("reserved", text, lacks.jobs, lacks.queues)

    def _reserve(self, pool: int, job: int) -> Reservation:
        """A reservation for `job`, its shadow time found when first asked."""
        shadows = self.shadows[pool]
        return Reservation(self.view, job, lambda: shadows.find(job, self._ends(pool)), self.quota)

    def _ends(self, pool: int) -> SortedList:
        """The running jobs' expected ends in order, sorted in when first needed: a job that
        ends before any reservation looks is never sorted in."""
        new = self.new_ends[pool]
        if new:
            self.ends[pool].update((end, job) for job, end in new.items())
            new.clear()
        return self.ends[pool]

    def _evict(
        self, victims: list[int], why: Reason, by: int, preempted: list[int], reservation: Reservation | None
    ) -> Iterator[Preempt]:
        for v in victims:
            self._stopped(v)
            if reservation is not None:
                reservation.stopped(v)
            preempted.append(v)
            yield Preempt(v, why, by=by)

    def _next_candidate(self, q: int, entry: tuple, reservation: Reservation | None) -> tuple | None:
        """The next job of queue q after `entry` that backfill should examine: the first in
        order that is over quota (it stops the queue, strict order, unless it reclaims) or of
        a size that could start now (fits the free GPUs; is within its nominal quota or leaves
        the reserved job its GPUs, by count or time, and its quota; and has not been found
        unplaceable since GPUs were last released); any job where priorities may preempt.
        Sizes that cannot start are passed over in O(sizes), so a saturated or fragmented
        pool is not walked job by job."""
        view = self.view
        pool = view.pool[entry[1]]
        jobs = self.waiting[pool][q]
        if self._outranks_running(pool, view.priority[jobs[0][1]]):  # the head ranks highest
            at = jobs.bisect_right(entry)
            return jobs[at] if at < len(jobs) else None
        free = view.free_gpus(pool)
        # what q may still start within its nominal quota, past any reservation of another queue
        room = self.quota.nominal_of(q) - self.quota.usage(q) if self._guaranteed(q, reservation) else -1.0
        if self.by_size[q].pending:
            self._index(q)
        run_times = self.run_times[q]

        admits = self._headroom(q) + QUOTA_EPS  # fits its quota now: gpus <= admits
        beside: float | None = None  # what q may start beside the reservation (found when needed)

        def could_start(gpus: int, level: int | None) -> bool:
            nonlocal beside
            if gpus > admits:
                return True
            if not (gpus <= free and gpus < view.unplaceable_from(pool, level)):
                return False
            if gpus <= room or reservation is None:
                return True
            known = reservation.known()
            lasts = run_times[(gpus, level)][0] > known.shadow_s - view.now_s  # even its shortest
            if lasts and (gpus > known.extra_gpus or known.refuses(gpus, level)):
                return False
            if beside is None:
                beside = reservation.quota_headroom(q) + QUOTA_EPS
            return gpus <= beside

        return self.by_size[q].first_after(entry, could_start)

    # --- admission -----------------------------------------------------------------------

    def _headroom(self, q: int) -> float:
        """The most GPUs queue q may be admitted now: its quota and what it may borrow, or
        without borrowing its nominal quota. The one admission test (`_admission`)."""
        quota = self.quota
        room = quota.headroom(q)
        return room if self.parts.borrowing else min(room, quota.nominal_of(q) - quota.usage(q))

    def _admission(self, job: int) -> Reason | None:
        """None if `job` fits its queue's quota now, else why not (in words only where
        reasons are recorded)."""
        view, quota = self.view, self.quota
        q, gpus = view.queue[job], view.gpus[job]
        if gpus <= self._headroom(q) + QUOTA_EPS:
            return None
        if not view.explain:
            return OVER_QUOTA
        if not self.parts.borrowing and quota.usage(q) + gpus > quota.nominal_of(q):
            text = (
                f"over quota: queue {quota.names[q]} uses {quota.usage(q):g} of nominal "
                f"{quota.nominal_of(q):g} GPUs (no borrowing)"
            )
            return Reason("over_quota", text, queues=(quota.names[q],))
        said = self.over_quota.get((q, gpus))
        if said is not None and said[0] == quota.changes:
            return said[1]
        blocked = quota.blocked(q, gpus)
        why = OVER_QUOTA if blocked is None else Reason("over_quota", blocked, queues=(quota.names[q],))
        self.over_quota[(q, gpus)] = (quota.changes, why)
        return why

    def _reclaimed(self, q: int, job: int) -> Reason:
        name = self.quota.names[q]
        text = f"preempted: quota reclaimed by queue {name} for job {{job0}}"
        return Reason("preempted", text, (job,), (name,))

    def _may_preempt_for_quota(self, job: int) -> bool:
        """Whether a search for quota victims could find any: `job` reclaims within its
        nominal quota, or outranks some job running in its pool; and none was found for it
        since the pool last changed."""
        pool = self.view.pool[job]
        return (
            self._within_nominal(job) or self._outranks_running(pool, self.view.priority[job])
        ) and self._unsearched(job)

    def _unsearched(self, job: int) -> bool:
        """Whether no quota victims were found wanting for `job` since its pool last changed."""
        return self.no_quota_victims.get(job) != self._victims_key(self.view.pool[job])

    def _within_nominal(self, job: int) -> bool:
        """Whether `job` fits its queue's nominal quota where owners reclaim what they lend."""
        q, quota = self.view.queue[job], self.quota
        return self.parts.reclaim and quota.usage(q) + self.view.gpus[job] <= quota.nominal_of(q)

    def _guaranteed(self, q: int, reservation: Reservation | None) -> bool:
        """Whether queue q's nominal quota is a guarantee a reservation does not override: a
        finite quota, which owners reclaim, in a queue other than the reserved job's."""
        return (
            self.parts.reclaim
            and math.isfinite(self.quota.nominal_of(q))
            and (reservation is None or q != self.view.queue[reservation.job])
        )

    def _exempt(self, job: int, reservation: Reservation) -> bool:
        """Whether `job` starts whatever the reservation: within its queue's guaranteed quota."""
        return self._guaranteed(self.view.queue[job], reservation) and self._within_nominal(job)

    def _may_reclaim_gpus(self, job: int) -> bool:
        return self._within_nominal(job) and self._unsearched(job)

    def _quota_victims(self, pool: int, job: int) -> list[int]:
        """Running jobs whose quota, once returned, admits `job`: lower-priority jobs of its
        own queue, and jobs of queues that borrow in its cohort tree: of equal or lower
        priority when `job` stays within its nominal quota (reclaim), of lower priority
        otherwise (when priorities preempt). Least lost GPU-time first."""
        view, quota = self.view, self.quota
        q, gpus, prio = view.queue[job], view.gpus[job], view.priority[job]
        within_nominal = quota.usage(q) + gpus <= quota.nominal_of(q)
        reclaim = self.parts.reclaim and within_nominal
        by_priority = self.parts.priority_preemption
        lowest = self.lowest_running
        sources = [q] if by_priority and lowest[q] < prio else []
        if reclaim or by_priority:
            bound = prio if reclaim else prio - 1
            sources += [
                qv for qv in self.tree_of[q] if lowest[qv] <= bound and qv != q and quota.borrowing(qv)
            ]
        if not sources:
            self.no_quota_victims[job] = self._victims_key(pool)
            return []
        if not self._reclaimable(job, sources):
            self.no_quota_victims[job] = self._victims_key(pool)
            return []
        # Borrowers give up jobs, cheapest first, only while they borrow: what each queue
        # gives is a prefix of its candidates. If all of them together would not admit and
        # place the job, no subset would (quota and placement are monotone): give up at once.
        givers = self._givers(q, view.cheapest_first(self._candidates(pool, job, sources, reclaim)))
        given = np.bincount(
            self.np_queue[givers], weights=self.np_gpus[givers], minlength=len(self.lowest_running)
        )
        trial = quota.what_if()
        for qv in np.flatnonzero(given).tolist():
            trial.add(qv, -float(given[qv]))
        if not self._admits(job, trial) or not places_with(view, job, givers):
            self.no_quota_victims[job] = self._victims_key(pool)
            return []
        # Add them in that order to a hypothetical quota and free-GPU state until the job is
        # both admitted and placeable.
        trial = quota.what_if()

        def take(v: int) -> bool:
            trial.add(view.queue[v], -view.gpus[v])
            return True

        ready = lambda: self._admits(job, trial)  # noqa: E731
        chosen, placement = grow_until_placed(view, job, givers.tolist(), take, ready)
        if placement is None:
            raise RuntimeError(f"job {job} unplaceable with victims that place it together")
        return self._prune(job, chosen, trial)

    def _candidates(self, pool: int, job: int, sources: list[int], reclaim: bool) -> np.ndarray:
        """The running jobs of the `sources` queues that `job` may preempt: preemptible, in
        its pool, of lower priority where priorities preempt, and of equal or lower priority
        in another queue where it reclaims."""
        running = itertools.chain.from_iterable(self.running_in_queue[qv] for qv in sources)
        idx = np.fromiter(running, dtype=np.int64)
        prio, queue = self.np_priority[idx], self.np_queue[idx]
        own = self.view.priority[job]
        may = np.zeros(len(idx), dtype=bool)
        if self.parts.priority_preemption:
            may |= prio < own
        if reclaim:
            may |= (queue != self.view.queue[job]) & (prio <= own)
        return idx[may & self.np_preemptible[idx] & (self.np_pool[idx] == pool)]

    def _givers(self, q: int, candidates: np.ndarray) -> np.ndarray:
        """The `candidates` (cheapest first) that queue q may take: all of its own, and those
        of another queue while that queue still holds more than its nominal quota (while the
        GPUs of its cheaper candidates add up to less than what it borrows)."""
        quota = self.quota
        queues = self.np_queue[candidates]
        by_queue = np.argsort(queues, kind="stable")  # each queue's candidates, cheapest first
        grouped = queues[by_queue]
        gpus = self.np_gpus[candidates][by_queue]
        before = np.cumsum(gpus) - gpus
        before -= before[np.searchsorted(grouped, grouped)]  # GPUs of the cheaper ones in its queue
        borrowed = np.asarray(quota.demand[: len(self.lowest_running)]) - np.asarray(
            quota.capacity[: len(self.lowest_running)]
        )
        borrowed[q] = math.inf
        keep = np.empty(len(candidates), dtype=bool)
        keep[by_queue] = before < borrowed[grouped]
        return candidates[keep]

    def _reclaimable(self, job: int, sources: list[int]) -> bool:
        """Whether taking everything the source queues could give up would admit `job`: a
        cheap bound that spares ranking candidates when reclaim cannot work."""
        quota, q = self.quota, self.view.queue[job]
        trial = quota.what_if()
        for qv in sources:
            give = quota.usage(qv) if qv == q else quota.usage(qv) - quota.nominal_of(qv)
            if give > 0:
                trial.add(qv, -give)
        return self._admits(job, trial)

    def _admits(self, job: int, trial: WhatIf) -> bool:
        return trial.fits(self.view.queue[job], self.view.gpus[job])

    def _prune(self, job: int, chosen: list[int], trial: WhatIf) -> list[int]:
        """Of `chosen`, only those the job needs for both its placement and its quota
        (`trial`: the demand with all of them stopped), giving the costliest back first."""
        view = self.view

        def give_back(v: int) -> bool:
            trial.add(view.queue[v], view.gpus[v])
            if self._admits(job, trial):
                return True
            trial.add(view.queue[v], -view.gpus[v])
            return False

        return needed(view, job, chosen, give_back)

    # --- preemption by priority ----------------------------------------------------------

    def _victims_key(self, pool: int) -> tuple:
        """What a search for victims that found none depends on: the jobs running in the
        pool, and where placement may go (a reservation's window begins or ends)."""
        return self.version[pool], self.view.generation(pool)

    def _outranks_running(self, pool: int, priority: int) -> bool:
        """Whether priorities preempt and a job of `priority` outranks some running job."""
        return self.parts.priority_preemption and self.lowest_in_pool[pool] < priority

    def _may_preempt_for_priority(self, pool: int, job: int) -> bool:
        return self._outranks_running(pool, self.view.priority[job]) and self.no_priority_victims.get(
            job
        ) != self._victims_key(pool)

    def _priority_victims(self, pool: int, job: int) -> list[int]:
        """The cheapest lower-priority jobs whose GPUs, with the free ones, place `job`."""
        view = self.view
        prio = view.priority[job]
        running = itertools.chain.from_iterable(self.running_in_queue[q] for q in self.pool_queues[pool])
        candidates = view.cheapest_first([v for v in running if view.priority[v] < prio]).tolist()
        victims = victims_for_placement(view, job, candidates)
        if not victims:
            self.no_priority_victims[job] = self._victims_key(pool)
            return []
        return victims

    # --- backfill and reasons ------------------------------------------------------------

    def _capacity_reason(self, pool: int, job: int) -> Reason:
        view = self.view
        return capacity_reason(view.gpus[job], view.free_gpus(pool), view.level[job])
