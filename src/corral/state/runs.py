"""Every run of every job: when it held which GPUs and why it ended. A job's first start and
last end cannot say how many GPUs were busy when a preemptive policy stops and restarts
jobs; the runs can, so occupancy and utilisation are checked against them."""

from __future__ import annotations

import math
from typing import Any

from corral.state.allocation import Placement

# why a run ended
COMPLETED = "completed"
PREEMPTED = "preempted"  # a policy stopped it
FAILED = "failed"  # a host under it failed
DRAINED = "drained"  # a host under it was taken out on purpose (maintenance, lending): it saved first
CANCELLED = "cancelled"
RESIZED = "resized"  # an elastic job checkpointed to restart at another size
ENDINGS = (COMPLETED, PREEMPTED, FAILED, DRAINED, CANCELLED, RESIZED)


class RunLog:
    """Runs as columns, in the order they started; a run still going has end NaN."""

    def __init__(self) -> None:
        self.job: list[int] = []
        self.start_s: list[float] = []
        self.end_s: list[float] = []
        self.placement: list[Placement] = []
        self.ended: list[str] = []
        # the useful seconds of each run its job kept (a checkpoint's worth, or all of a
        # run that completed; NaN while it runs): what accounting calls work kept
        self.kept_s: list[float] = []
        self.open: dict[int, int] = {}  # job -> its run now

    def __len__(self) -> int:
        return len(self.job)

    def begin(self, job: int, now: float, placement: Placement) -> None:
        self.open[job] = len(self.job)
        self.job.append(job)
        self.start_s.append(now)
        self.end_s.append(math.nan)
        self.placement.append(placement)
        self.ended.append("")
        self.kept_s.append(math.nan)

    def close(self, job: int, now: float, why: str, kept_s: float) -> None:
        run = self.open.pop(job)
        self.end_s[run] = now
        self.ended[run] = why
        self.kept_s[run] = kept_s

    def export(self) -> dict[str, Any]:
        return {
            "job": list(self.job),
            "start_s": list(self.start_s),
            "end_s": [None if math.isnan(t) else t for t in self.end_s],
            "placement": [[list(p) for p in placement] for placement in self.placement],
            "ended": list(self.ended),
            "kept_s": [None if math.isnan(k) else k for k in self.kept_s],
        }

    @classmethod
    def restore(cls, data: dict[str, Any]) -> RunLog:
        runs = cls()
        runs.job = list(data["job"])
        runs.start_s = list(data["start_s"])
        runs.end_s = [math.nan if t is None else t for t in data["end_s"]]
        runs.placement = [tuple((h, g) for h, g in placement) for placement in data["placement"]]
        runs.ended = list(data["ended"])
        runs.kept_s = [math.nan if k is None else k for k in data.get("kept_s", [None] * len(runs.job))]
        runs.open = {job: i for i, (job, why) in enumerate(zip(runs.job, runs.ended, strict=True)) if not why}
        return runs
