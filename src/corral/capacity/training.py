"""The fungible fleet's elastic pre-training job as an ordinary engine job.

The capacity simulation (capacity/sim.py) decides, step by step, how many GPUs serving leaves
the job; this module hands those sizes to the core engine as a policy's decisions (`Start`,
`Resize`; a stop to nothing is the engine's reclaim), so the job's runs, checkpoints, restarts
and lost work are the shared cluster state's own ledger, as for every other job.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from corral.errors import InputError
from corral.fleet import Fleet, Segment
from corral.scheduling.policy import Decision, Resize, Start, Traits, View
from corral.sim.engine import Engine
from corral.workload import JobTable

FOREVER_S = 100 * 365 * 86400.0  # the job's work: more than any horizon


@dataclass(frozen=True)
class ElasticJob:
    """A training job that runs on `min_gpus` to `max_gpus` in steps of `step_gpus` (one
    data-parallel replica). Throughput follows gpus ** `scaling_exponent` (1: linear). Any
    resize is a checkpoint (when the notice allows the write) and a restart; it grows at most
    once per `min_hold_s` and leaves `buffer_gpus` to preemptible work, which serving takes
    back first, so lent capacity does not make it flap. It runs as an engine job whose
    table gives these as its min_gpus, max_gpus, step_gpus and scaling columns."""

    name: str
    min_gpus: int
    max_gpus: int
    step_gpus: int
    checkpoint_interval_s: float = 1800.0
    write_s: float = 15.0
    restart_s: float = 300.0
    scaling_exponent: float = 1.0
    min_hold_s: float = 3600.0
    buffer_gpus: int = 0  # left to preemptible work, so small serving moves do not restart it

    def __post_init__(self) -> None:
        if not 0 < self.step_gpus <= self.min_gpus <= self.max_gpus:
            raise InputError("need 0 < step_gpus <= min_gpus <= max_gpus", source=self.name, field="min_gpus")
        if self.min_gpus % self.step_gpus or self.max_gpus % self.step_gpus:
            raise InputError("min_gpus and max_gpus must be whole steps", source=self.name, field="step_gpus")
        if not 0 < self.scaling_exponent <= 1:
            raise InputError("scaling_exponent must be in (0, 1]", source=self.name, field="scaling_exponent")

    def fit(self, gpus: int) -> int:
        """The most this job runs on when `gpus` are open to it: whole replicas, the buffer
        left, 0 below its minimum."""
        n = min(self.max_gpus, max(0, gpus - self.buffer_gpus) // self.step_gpus * self.step_gpus)
        return n if n >= self.min_gpus else 0

    def run(self) -> TrainingRun:
        """The job, not yet started, in an engine of its own."""
        return TrainingRun(self)


class Directed(Traits):
    """A policy whose one job runs at the size it is told (`target`; 0: not at all)."""

    name = "directed"

    def __init__(self) -> None:
        self.target = 0
        self.graceful = True

    def bind(self, view: View, pools: int) -> None:
        self.view = view
        self.waiting = False

    def submitted(self, job: int) -> None:
        self.waiting = True

    def interrupted(self, job: int) -> None:
        self.waiting = True

    def adopt(self, job: int) -> None:
        pass

    def finished(self, job: int) -> None:
        pass

    def withdrawn(self, job: int) -> None:
        self.waiting = False

    def export(self) -> dict:
        return {}

    def restore(self, data: dict) -> None:
        pass

    def decide(self, pool: int) -> Iterator[Decision]:
        view, job = self.view, 0
        if not self.target:
            return
        if self.waiting:
            placement = view.place_size(job, self.target, view.free_vector())
            if placement is not None:
                self.waiting = False
                yield Start(job, placement)
        elif view.gpus[job] != self.target:
            placement = view.place_size(job, self.target, view.free_with([job]))
            if placement is not None:
                yield Resize(job, placement, self.graceful)


@dataclass(frozen=True)
class Ledger:
    """Where the job's GPU-seconds went: allocated = work + overhead (restarts and checkpoint
    writes) + lost (work since the last checkpoint when a stop could not save).
    `useful` is its work in GPU-seconds at max_gpus' efficiency (work, for linear scaling)."""

    allocated: float
    useful: float
    overhead: float
    lost: float
    resizes: int


class TrainingRun:
    """One elastic job in an engine on a fleet of exactly its maximum size."""

    def __init__(self, job: ElasticJob) -> None:
        host = math.gcd(job.step_gpus, 8)
        fleet = Fleet("training", [Segment("default", job.max_gpus // host, host, 2, 192)], "default")
        jobs = JobTable(
            job_id=[job.name],
            submit_s=np.zeros(1),
            gpus=np.array([job.max_gpus]),
            duration_s=np.array([FOREVER_S]),
            queue=["training"],
            user=[""],
            kind=["pretrain"],
            priority=np.zeros(1, dtype=np.int64),
            preemptible=np.ones(1, dtype=bool),
            extra={
                "min_gpus": [str(job.min_gpus)],
                "max_gpus": [str(job.max_gpus)],
                "step_gpus": [str(job.step_gpus)],
                "scaling": [repr(job.scaling_exponent)],
            },
            checkpoint_interval_s=np.array([job.checkpoint_interval_s]),
            restart_s=np.array([job.restart_s]),
            checkpoint_write_s=np.array([job.write_s]),
        )
        self.policy = Directed()
        self.engine = Engine(fleet, jobs, self.policy, sample_s=math.inf)
        self.engine.begin()
        self.engine.decide_at(0.0, {0})  # (it arrives)
        self.cluster = self.engine.cluster
        self.overhead_gpu_s = 0.0  # of runs that ended
        self.last_resize_s = -math.inf

    @property
    def gpus(self) -> int:
        return self.cluster.gpus[0] if self.cluster.is_running(0) else 0

    def resize(self, gpus: int, now_s: float, graceful: bool = True) -> None:
        """Run on `gpus` from `now_s` (0: stop; it saves first if `graceful`)."""
        held = self.gpus
        if gpus == held:
            return
        before = self._overhead_s()
        if held and not gpus:
            self.engine.decide_at(now_s, set())  # (brought to now_s, deciding nothing)
            self.engine.stop(0, graceful)
        self.policy.target, self.policy.graceful = gpus, graceful
        self.engine.decide_at(now_s, {0})
        self.overhead_gpu_s += (self._overhead_s() - before) * held
        self.last_resize_s = now_s

    def _overhead_s(self) -> float:
        c = self.cluster
        return c.restarting[0] + c.writing[0]

    def ledger(self, now_s: float) -> Ledger:
        """The ledger up to `now_s`, the run in progress included."""
        self.engine.decide_at(now_s, set())
        c, view = self.cluster, self.cluster.view
        runs = c.runs
        allocated = sum(
            ((now_s if math.isnan(end) else end) - start) * sum(g for _, g in placement)
            for start, end, placement in zip(runs.start_s, runs.end_s, runs.placement, strict=True)
        )
        overhead = self.overhead_gpu_s
        if c.is_running(0):
            restarting = min(now_s - c.run_since[0], c.overhead[0])
            overhead += (restarting + c.run_parts(0, now_s)[2]) * c.gpus[0]
        done_s = c.duration_s[0] - view.remaining_s(0)
        ref = c.ref_gpus[0]
        return Ledger(allocated, done_s * ref, overhead, c.lost[0] * ref, c.resizes[0] + c.interruptions[0])
