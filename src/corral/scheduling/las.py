"""Tiresias' discretised two-dimensional least-attained-service (Gu et al., NSDI'19).

Attained service is GPUs x executed time. Jobs sit in K queues split by thresholds on it;
a new job enters the first queue and is demoted as its attained service crosses each
threshold. Queues are served in order; within a queue, running jobs keep their place and
others are served first-come first-served by the time they entered the queue. No job
duration is needed.

Starvation rule (PROMOTEKNOB): a job that has waited, since it was last preempted, longer
than `promote_knob` times its executed time since its last promotion goes back to the first
queue, and its executed-time count restarts. 0 turns the rule off.

Defaults: two queues split at 16 GPU-hours, as in the Tiresias baseline of the Pollux
OSDI'21 artifact, and PROMOTEKNOB 8 (one of the values in the Tiresias simulator's runs).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator

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
        self.queue: dict[int, int] = {}
        self.entered_s: dict[int, float] = {}
        self.run_offset_s: dict[int, float] = {}
        self.promotions = 0

    def submitted(self, job: int) -> None:
        super().submitted(job)
        self.queue[job] = 0
        self.entered_s[job] = self.view.submit_s[job]
        self.run_offset_s[job] = 0.0

    def finished(self, job: int) -> None:
        super().finished(job)
        del self.queue[job], self.entered_s[job], self.run_offset_s[job]

    def _executed_since_promotion(self, job: int) -> float:
        return self.view.executed_s(job) - self.run_offset_s[job]

    def before_pass(self, pool: int) -> None:
        view = self.view
        now = view.now_s
        for job in self.active[pool]:
            g = view.gpus[job]
            executed = self._executed_since_promotion(job)
            if view.is_running(job):
                q = bisect.bisect_right(self.thresholds, g * executed + EPS_S * g)
                if q > self.queue[job]:
                    # Crossed during the current run: wakes fire at each crossing.
                    self.queue[job] = q
                    self.entered_s[job] = now - (executed - self.thresholds[q - 1] / g)
            elif (
                self.promote_knob > 0
                and self.queue[job] > 0
                and now - view.last_stop_s(job) + EPS_S >= self.promote_knob * executed
            ):
                self.queue[job] = 0
                self.entered_s[job] = now
                self.run_offset_s[job] = view.executed_s(job)
                self.promotions += 1

    def rank(self, job: int) -> tuple:
        return (self.queue[job], not self.view.is_running(job), self.entered_s[job], job)

    def after_pass(self, pool: int) -> Iterator[Decision]:
        view = self.view
        now = view.now_s
        wake = math.inf
        last = len(self.thresholds)
        for job in self.active[pool]:
            q = self.queue[job]
            executed = self._executed_since_promotion(job)
            if view.is_running(job):
                if q < last:
                    wake = min(wake, now + self.thresholds[q] / view.gpus[job] - executed)
            elif q > 0 and self.promote_knob > 0:
                wake = min(wake, view.last_stop_s(job) + self.promote_knob * executed)
        if math.isfinite(wake):
            yield Wake(pool, max(wake, now + EPS_S))
