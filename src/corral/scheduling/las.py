"""Tiresias' discretised two-dimensional least-attained-service (Gu et al., NSDI'19).

Attained service is GPUs x executed time. Jobs sit in K queues split by thresholds on it;
a new job enters the first queue and is demoted as its attained service crosses each
threshold. Queues are served in order; within a queue, running jobs keep their place and
waiting ones are served first-come first-served by the time they entered the queue. No job
duration is needed.

Starvation rule (PROMOTEKNOB): a job that has waited, since it was last preempted, longer
than `promote_knob` times its executed time since its last promotion goes back to the first
queue, and its executed-time count restarts. 0 turns the rule off.

Defaults: two queues split at 16 GPU-hours, as in the Tiresias baseline of the Pollux
OSDI'21 artifact, and PROMOTEKNOB 8 (one of the values in the Tiresias simulator's runs).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator

from sortedcontainers import SortedList

from corral.scheduling.policy import Decision, View, Wake
from corral.scheduling.preemptive import PreemptivePriority

EPS_S = 1e-6


class Las(PreemptivePriority):
    name = "las"

    def __init__(
        self, thresholds_gpu_s: tuple[float, ...] = (16 * 3600.0,), promote_knob: float = 8.0
    ) -> None:
        if list(thresholds_gpu_s) != sorted(thresholds_gpu_s) or any(t <= 0 for t in thresholds_gpu_s):
            raise ValueError("LAS thresholds must be positive and increasing")
        self.thresholds = tuple(thresholds_gpu_s)
        self.promote_knob = promote_knob

    def bind(self, view: View, pools: int) -> None:
        super().bind(view, pools)
        queues = len(self.thresholds) + 1
        self.queue: dict[int, int] = {}
        self.entered_s: dict[int, float] = {}
        self.run_offset_s: dict[int, float] = {}
        self.segment_s: dict[int, float] = {}
        # running[pool][q]: running jobs of queue q as (entered_s, job)
        self.running: list[list[SortedList]] = [[SortedList() for _ in range(queues)] for _ in range(pools)]
        self.demotions: list[list[tuple[float, int, float]]] = [[] for _ in range(pools)]
        self.promotions: list[list[tuple[float, int, float]]] = [[] for _ in range(pools)]

    def submitted(self, job: int) -> None:
        self._enter(job)
        super().submitted(job)

    def adopt(self, job: int) -> None:
        self._enter(job)
        super().adopt(job)

    def _enter(self, job: int) -> None:
        """A job new to the policy starts in the first queue, as of its arrival."""
        self.queue[job] = 0
        self.entered_s[job] = self.view.submit_s[job]
        self.run_offset_s[job] = 0.0

    def finished(self, job: int) -> None:
        self._unindex(job)
        self.forget(job)

    def forget(self, job: int) -> None:
        del self.queue[job], self.entered_s[job], self.run_offset_s[job]

    def export_rank(self) -> dict:
        """Attained-service queues and when each job entered its queue, the executed time
        counted before its last promotion, the start of each running segment, and the
        pending demotions and promotions."""
        return {
            "queue": [[j, q, self.entered_s[j], self.run_offset_s[j]] for j, q in self.queue.items()],
            "segment_s": [[j, t] for j, t in self.segment_s.items()],
            "demotions": [[list(e) for e in heap] for heap in self.demotions],
            "promotions": [[list(e) for e in heap] for heap in self.promotions],
        }

    def restore_rank(self, data: dict) -> None:
        for job, q, entered, offset in data["queue"]:
            if job in self.segment_s:
                self._unindex(job)
            self.queue[job], self.entered_s[job], self.run_offset_s[job] = q, entered, offset
        for job, segment in data["segment_s"]:
            self.running[self.view.pool[job]][self.queue[job]].add((self.entered_s[job], job))
            self.segment_s[job] = segment
        self.demotions = [[tuple(e) for e in heap] for heap in data["demotions"]]
        self.promotions = [[tuple(e) for e in heap] for heap in data["promotions"]]

    def rank(self, job: int) -> tuple:
        return (self.queue[job], self.entered_s[job], job)

    def _executed(self, job: int) -> float:
        return self.view.executed_s(job) - self.run_offset_s[job]

    def started(self, job: int) -> None:
        view = self.view
        pool, q = view.pool[job], self.queue[job]
        self.running[pool][q].add((self.entered_s[job], job))
        since, left = view.run_start(job)
        self.segment_s[job] = since
        if q < len(self.thresholds):
            executed = view.duration_s[job] - left - self.run_offset_s[job]
            at = since + self.thresholds[q] / view.gpus[job] - executed
            heapq.heappush(self.demotions[pool], (at, job, since))

    def _unindex(self, job: int) -> None:
        self.running[self.view.pool[job]][self.queue[job]].remove((self.entered_s[job], job))
        del self.segment_s[job]

    def stopped(self, job: int) -> None:
        """Preempted: index it out and, past the first queue, schedule its promotion."""
        view = self.view
        pool = view.pool[job]
        self._unindex(job)
        if self.queue[job] > 0 and self.promote_knob > 0:
            at = view.now_s + self.promote_knob * self._executed(job)
            heapq.heappush(self.promotions[pool], (at, job, view.now_s))

    def outranks_running(self, pool: int, job: int) -> bool:
        return any(self.running[pool][self.queue[job] + 1 :])  # a later queue has a running job

    def victims(self, pool: int, job: int) -> Iterator[int]:
        running = self.running[pool]
        for q in range(len(running) - 1, self.queue[job], -1):
            for _, victim in reversed(running[q]):
                yield victim

    def before_pass(self, pool: int) -> None:
        view = self.view
        now = view.now_s
        demotions = self.demotions[pool]
        while demotions and demotions[0][0] <= now + EPS_S:
            at, job, segment = heapq.heappop(demotions)
            if self.segment_s.get(job) != segment:
                continue  # stopped since
            self.running[pool][self.queue[job]].remove((self.entered_s[job], job))
            q = self.queue[job] = self.queue[job] + 1
            self.entered_s[job] = at
            self.running[pool][q].add((at, job))
            if q < len(self.thresholds):
                nxt = at + (self.thresholds[q] - self.thresholds[q - 1]) / view.gpus[job]
                heapq.heappush(demotions, (nxt, job, segment))
        promotions = self.promotions[pool]
        while promotions and promotions[0][0] <= now + EPS_S:
            _, job, stop = heapq.heappop(promotions)
            if not self.is_waiting(job) or view.last_stop_s(job) != stop:
                continue
            self._unwait(job)
            self.queue[job] = 0
            self.entered_s[job] = now
            self.run_offset_s[job] = view.executed_s(job)
            self._wait(job)

    def after_pass(self, pool: int) -> Iterator[Decision]:
        wake = math.inf
        for heap in (self.demotions[pool], self.promotions[pool]):
            if heap:
                wake = min(wake, heap[0][0])
        if math.isfinite(wake):
            yield Wake(pool, max(wake, self.view.now_s + EPS_S))
