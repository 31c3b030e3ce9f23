"""Tiresias' discretised two-dimensional least-attained-service (Gu et al., NSDI'19).

Attained service is GPUs x executed time. Jobs sit in K queues split by thresholds on it;
a new job enters the first queue and is demoted as its attained service crosses each
threshold. Queues are served in order, and a job may preempt a running job of a later
queue. No job duration is needed.

Order within a queue (`order`):
- "fifo" (default, the paper's rule): first in, first out by when a job entered the queue
  (arrived, was demoted into it, or promoted). A waiting job displaces a running job of its
  own queue that entered after it: a job just demoted into a queue where earlier ones wait
  gives its GPUs to them.
- "reference": the order of Tiresias' simulator. Each queue is a list; a job entering it
  goes to the end, and after each pass the queue's waiting jobs are moved behind its
  running ones. A waiting job then displaces only a running job that entered the queue
  since the last pass.

Starvation rule (PROMOTEKNOB `promote_knob`): a job past the first queue goes back to the
first queue once it has waited `promote_knob` times its executed time since its last
promotion; the count of executed time then restarts. What counts as waiting (`starve_from`):
- "preemption" (default): the time since it was last preempted;
- "promotion" (Tiresias' simulator): all its waiting since its last promotion, counted from
  its first run after it.
0 turns the rule off.

Attained service is work done: time spent restarting or writing checkpoints does not count,
and work lost when a job is stopped is not attained. Demotion happens when attained service
crosses a threshold, in GPU-seconds. Tiresias' simulator computes the next demotion from
executed seconds where it needs GPU-seconds, so a multi-GPU job that has run before is
demoted late there; corral demotes on time.

Defaults: two queues split at 16 GPU-hours, as in the Tiresias baseline of the Pollux
OSDI'21 artifact, and PROMOTEKNOB 8 (one of the values in the Tiresias simulator's runs).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator

import numpy as np
from sortedcontainers import SortedList

from corral.scheduling.policy import Decision, JobIndex, JobKey, View, Wake
from corral.scheduling.preemptive import PreemptivePriority

EPS_S = 1e-6
ORDERS = ("fifo", "reference")
STARVE_FROM = ("preemption", "promotion")


class Las(PreemptivePriority):
    name = "las"

    def __init__(
        self,
        thresholds_gpu_s: tuple[float, ...] = (16 * 3600.0,),
        promote_knob: float = 8.0,
        order: str = "fifo",
        starve_from: str = "preemption",
    ) -> None:
        if list(thresholds_gpu_s) != sorted(set(thresholds_gpu_s)) or any(t <= 0 for t in thresholds_gpu_s):
            raise ValueError("LAS thresholds must be positive and increasing")
        if order not in ORDERS:
            raise ValueError(f"LAS order must be one of {', '.join(ORDERS)}")
        if starve_from not in STARVE_FROM:
            raise ValueError(f"LAS starve_from must be one of {', '.join(STARVE_FROM)}")
        if not promote_knob >= 0:
            raise ValueError("LAS promote_knob must be >= 0")
        self.thresholds = tuple(thresholds_gpu_s)
        self.promote_knob = promote_knob
        self.order = order
        self.starve_from = starve_from

    def bind(self, view: View, pools: int) -> None:
        super().bind(view, pools)
        queues = len(self.thresholds) + 1
        self.queue: dict[int, int] = {}
        # place within the queue: when the job entered it ("fifo"), or its place in the
        # queue's list ("reference")
        self.key: dict[int, float] = {}
        self.entries = 0  # places handed out ("reference")
        self.run_offset_s: dict[int, float] = {}
        self.segment_s: dict[int, float] = {}
        # waiting counted towards promotion since the last one, and since when it waits
        # ("promotion" clock; None: not counting)
        self.waited_s: dict[int, float] = {}
        self.wait_from: dict[int, float | None] = {}
        # running[pool][q]: running jobs of queue q as (key, job)
        self.running: list[list[SortedList]] = [[SortedList() for _ in range(queues)] for _ in range(pools)]
        # held[pool][q][host]: GPUs of preemptible running jobs of queue q on each host, so
        # that a one-host job no host could serve is known without walking its victims
        self.held: list[list[np.ndarray]] = [
            [np.zeros(len(view.host_gpus), dtype=np.int64) for _ in range(queues)] for _ in range(pools)
        ]
        self.held_on: dict[int, tuple] = {}  # running preemptible job -> its placement then
        self.demotions: list[list[tuple[float, int, float]]] = [[] for _ in range(pools)]
        self.promotions: list[list[tuple[float, int, float]]] = [[] for _ in range(pools)]
        self.demoted = [0] * pools  # running jobs demoted so far, per pool

    def victims_stamp(self, pool: int) -> int:
        """Demotions: the only way a running job comes to rank lower."""
        return self.demoted[pool]

    def _place(self, at_s: float) -> float:
        """The key of a job entering a queue now."""
        if self.order == "fifo":
            return at_s
        self.entries += 1
        return float(self.entries)

    def submitted(self, job: int) -> None:
        self._enter(job)
        super().submitted(job)

    def adopt(self, job: int) -> None:
        self._enter(job)
        super().adopt(job)

    def _enter(self, job: int) -> None:
        """A job new to the policy starts in the first queue, as of its arrival."""
        self.queue[job] = 0
        self.key[job] = self._place(self.view.submit_s[job])
        self.run_offset_s[job] = 0.0
        self.waited_s[job] = 0.0
        self.wait_from[job] = None

    def finished(self, job: int) -> None:
        self._unindex(job)
        self.forget(job)

    def forget(self, job: int) -> None:
        del self.queue[job], self.key[job], self.run_offset_s[job]
        del self.waited_s[job], self.wait_from[job]

    def export_rank(self, key: JobKey) -> dict:
        """Attained-service queues and each job's place in its queue, the executed time
        counted before its last promotion, the waiting counted towards promotion, the start
        of each running segment, and the pending demotions and promotions."""
        return {
            "queue": [
                [key(j), q, self.key[j], self.run_offset_s[j], self.waited_s[j], self.wait_from[j]]
                for j, q in self.queue.items()
            ],
            "entries": self.entries,
            "segment_s": [[key(j), t] for j, t in self.segment_s.items()],
            "demotions": [[[at, key(j), t] for at, j, t in heap] for heap in self.demotions],
            "promotions": [[[at, key(j), t] for at, j, t in heap] for heap in self.promotions],
        }

    def restore_rank(self, data: dict, index: JobIndex) -> None:
        """Only jobs there still are, and running segments only of jobs running now (a job
        whose node was lost meanwhile waits)."""
        for name, q, key, offset, waited, wait_from in data["queue"]:
            job = index(name)
            if job is None or job not in self.queue:
                continue
            if job in self.segment_s:
                self._unindex(job)
            self.queue[job], self.key[job], self.run_offset_s[job] = q, key, offset
            self.waited_s[job], self.wait_from[job] = waited, wait_from
        self.entries = data["entries"]
        view = self.view
        for name, segment in data["segment_s"]:
            job = index(name)
            if job is not None and job in self.queue and job not in self.segment_s and view.placement_of(job):
                self._run(job, self.queue[job], 1)
                self.segment_s[job] = segment
        for job in self.queue:  # (running now, and not then)
            if job not in self.segment_s and view.placement_of(job):
                self._run(job, self.queue[job], 1)
                self.segment_s[job] = view.run_start(job)[0]

        def heaps(saved: list) -> list[list[tuple]]:
            out = []
            for heap in saved:
                kept = [(at, index(name), t) for at, name, t in heap]
                kept = [e for e in kept if e[1] is not None]
                heapq.heapify(kept)
                out.append(kept)
            return out

        self.demotions = heaps(data["demotions"])
        self.promotions = heaps(data["promotions"])

    def rank(self, job: int) -> tuple:
        return (self.queue[job], self.key[job], job)

    def _executed(self, job: int) -> float:
        return self.view.executed_s(job) - self.run_offset_s[job]

    def started(self, job: int) -> None:
        view = self.view
        pool, q = view.pool[job], self.queue[job]
        self._run(job, q, 1)
        since, left = view.run_start(job)
        self.segment_s[job] = since
        wait_from = self.wait_from[job]
        if wait_from is not None:
            self.waited_s[job] += since - wait_from
            self.wait_from[job] = None
        if q < len(self.thresholds):
            executed = view.duration_s[job] - left - self.run_offset_s[job]
            at = since + self.thresholds[q] / view.gpus[job] - executed
            heapq.heappush(self.demotions[pool], (at, job, since))

    def _unindex(self, job: int) -> None:
        self._run(job, self.queue[job], -1)
        del self.segment_s[job]

    def _run(self, job: int, q: int, sign: int) -> None:
        """Index running `job` in queue q (sign 1) or out of it (-1), with its GPUs per host."""
        view = self.view
        pool = view.pool[job]
        if sign > 0:
            self.running[pool][q].add((self.key[job], job))
        else:
            self.running[pool][q].remove((self.key[job], job))
        if not view.preemptible[job]:
            return
        # (where it ran: a job that ended or was interrupted has no placement any more)
        placement = view.placement_of(job) if sign > 0 else self.held_on.pop(job)
        if sign > 0:
            self.held_on[job] = placement or ()
        held = self.held[pool][q]
        for host, gpus in placement or ():
            if host >= len(held):  # (hosts joined since)
                grown = np.zeros(len(view.host_gpus), dtype=np.int64)
                grown[: len(held)] = held
                held = self.held[pool][q] = grown
            held[host] += sign * gpus

    def victim_gpus(self, pool: int, job: int) -> np.ndarray:
        """Per host, the GPUs of every preemptible job `victims` would offer `job`: those of
        later queues, from the index, and those of its own queue ranked below it."""
        view = self.view
        held, q = self.held[pool], self.queue[job]
        out = np.zeros(len(view.host_gpus), dtype=np.int64)
        for later in range(q + 1, len(held)):
            out[: len(held[later])] += held[later]
        # its own queue: the jobs ranked below it, or all less those above, whichever are fewer
        running = self.running[pool][q]
        at = running.bisect_right((self.key[job], job))
        if at < len(running) - at:
            out[: len(held[q])] += held[q]
            sign, side = -1, running.islice(0, at)
        else:
            sign, side = 1, running.islice(at)
        for _, other in side:
            for host, gpus in self.held_on.get(other, ()):
                out[host] += sign * gpus
        return out

    def stopped(self, job: int) -> None:
        """Preempted: index it out and, past the first queue, schedule its promotion."""
        view = self.view
        pool = view.pool[job]
        self._unindex(job)
        if self.starve_from == "promotion":
            self.wait_from[job] = view.now_s
        if self.queue[job] > 0 and self.promote_knob > 0:
            # a first date, from the work done before any of it is lost by this stop
            at = view.now_s + self.promote_knob * self._executed(job) - self._waited(job)
            heapq.heappush(self.promotions[pool], (max(at, view.now_s), job, view.now_s))

    def _waited(self, job: int) -> float:
        """Waiting counted towards promotion before the current wait."""
        return self.waited_s[job] if self.starve_from == "promotion" else 0.0

    def outranks_running(self, pool: int, job: int) -> bool:
        running = self.running[pool]
        q = self.queue[job]
        if any(running[q + 1 :]):  # a later queue has a running job
            return True
        mine = running[q]
        return bool(mine) and mine[-1] > (self.key[job], job)

    def victims(self, pool: int, job: int) -> Iterator[int]:
        running = self.running[pool]
        q = self.queue[job]
        for later in range(len(running) - 1, q, -1):
            for _, victim in reversed(running[later]):
                yield victim
        mine = (self.key[job], job)
        for entry in reversed(running[q]):
            if entry <= mine:
                return
            yield entry[1]

    def before_pass(self, pool: int) -> None:
        view = self.view
        now = view.now_s
        demotions = self.demotions[pool]
        while demotions and demotions[0][0] <= now + EPS_S:
            at, job, segment = heapq.heappop(demotions)
            if self._stale_demotion(job, segment):
                continue  # stopped since
            if view.remaining_s(job) <= EPS_S:
                continue  # it ends now (its end event can fall an ulp after this instant)
            short_s = self.thresholds[self.queue[job]] / view.gpus[job] - self._executed(job)
            if short_s > EPS_S:
                # restarting or writing checkpoints, it did less work than time went by
                heapq.heappush(demotions, (now + short_s, job, segment))
                continue
            self._run(job, self.queue[job], -1)
            self.demoted[pool] += 1
            q = self.queue[job] = self.queue[job] + 1
            self.key[job] = self._place(at)
            self._run(job, q, 1)
            if q < len(self.thresholds):
                nxt = at + (self.thresholds[q] - self.thresholds[q - 1]) / view.gpus[job]
                heapq.heappush(demotions, (nxt, job, segment))
        promotions = self.promotions[pool]
        while promotions and promotions[0][0] <= now + EPS_S:
            _, job, stop = heapq.heappop(promotions)
            if self._stale_promotion(job, stop):
                continue
            # Work lost at the stop is not attained. A job with none since its promotion is
            # not promoted again (as in Tiresias): with a restart cost or checkpoint interval
            # longer than its time in a queue, it would take GPUs back and forth for ever.
            executed = self._executed(job)
            if executed <= EPS_S:
                continue
            due = stop + self.promote_knob * executed - self._waited(job)
            if due > now + EPS_S:
                heapq.heappush(promotions, (due, job, stop))
                continue
            self._unwait(job)
            self.queue[job] = 0
            self.key[job] = self._place(now)
            self.run_offset_s[job] = view.executed_s(job)
            self.waited_s[job] = 0.0
            self.wait_from[job] = None
            self._wait(job)

    def _stale_demotion(self, job: int, segment: float) -> bool:
        """A demotion due for a run of `job` that has stopped since."""
        return self.segment_s.get(job) != segment

    def _stale_promotion(self, job: int, stop: float) -> bool:
        """A promotion due for a wait of `job` that has ended since."""
        return not self.is_waiting(job) or self.view.last_stop_s(job) != stop

    def after_pass(self, pool: int) -> Iterator[Decision]:
        if self.order == "reference":
            self._behind_running(pool)
        # (entries of jobs stopped or ended since are dropped first: a pass at their time
        # would change nothing but could start a job a pass of this instant kept waiting)
        demotions, promotions = self.demotions[pool], self.promotions[pool]
        while demotions and self._stale_demotion(*demotions[0][1:]):
            heapq.heappop(demotions)
        while promotions and self._stale_promotion(*promotions[0][1:]):
            heapq.heappop(promotions)
        wake = math.inf
        for heap in (demotions, promotions):
            if heap:
                wake = min(wake, heap[0][0])
        if math.isfinite(wake):
            yield Wake(pool, max(wake, self.view.now_s + EPS_S))

    def _behind_running(self, pool: int) -> None:
        """Move each queue's waiting jobs behind its running ones, keeping their order."""
        waiting = self.waiting[pool]
        for q, running in enumerate(self.running[pool]):
            if not running:
                continue
            mine = ((q,),), ((q + 1,),)
            first = next(waiting.irange(*mine, inclusive=(True, False)), None)
            if first is None or first[0][1] > running[-1][0]:
                continue  # no waiting job is ahead of a running one
            moved = list(waiting.irange(*mine, inclusive=(True, False)))
            for _, job in moved:
                self._unwait(job)
            for _, job in moved:
                self.key[job] = self._place(self.view.now_s)
                self._wait(job)
