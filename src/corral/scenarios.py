"""Named scenarios: a fleet with its queues and a workload, built to answer one question.

llama3-405b and 100k (reliability/scenarios.py): what effective training time does one
synchronous job get under failures, at 16,384 and at 102,400 GPUs?

research-fleet: how does meta-24k (Llama 3's 24,576-GPU cluster) serve ~20 research teams,
a few production pre-training gangs and evaluation bursts at once? Who waits, how long do
the gangs wait for a pod, how much work does preemption throw away?
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from corral.errors import InputError
from corral.fleet import Fleet, Segment
from corral.quota import CohortSpec, QueueSpec
from corral.reliability.failures import FailureModel
from corral.reliability.scenarios import TrainingRun, hundred_k_steps, llama3_405b
from corral.synth import synth_jobs
from corral.workload import JobTable

DAY_S = 86400.0
# Priority classes (higher runs first and may preempt lower).
PRODUCTION, EVAL, RESEARCH = 100, 50, 10

TEAMS = 20
TEAM_QUOTA_GPUS = 512
EVAL_QUOTA_GPUS = 2048
PRETRAIN_QUOTA_GPUS = 12_288
# Research gangs follow Philly's size histogram scaled by this factor: Philly's 2017 jobs were
# mostly single-GPU; here each of its GPUs becomes a whole 8-GPU H100 host.
SIZE_FACTOR = 8
RESEARCH_JOBS_PER_HOUR = 560.0  # with Philly's heavy tail: about 15,000 GPUs busy after a few days
# Pre-training gangs: (GPUs, topology, start day, run days).
GANGS = ((2048, "pod", 0.5, 20.0), (3072, "pod", 4.0, 12.0), (8192, "cluster", 12.0, 9.0))
EVAL_EVERY_S = 6 * 3600.0
EVAL_JOBS, EVAL_GPUS = 48, 8


def research_fleet_fleet() -> Fleet:
    """meta-24k with queues: pre-training holds half the GPUs; 20 teams and evaluation
    share the other half in a research cohort; both lend what they do not use."""
    segment = Segment("default", 3072, 8, 2, 192, "h100", "rsc-roce", "dc-0")
    queues = [QueueSpec("pretrain", PRETRAIN_QUOTA_GPUS, weight=4, cohort="fleet")]
    queues.append(QueueSpec("eval", EVAL_QUOTA_GPUS, weight=1, cohort="research"))
    queues += [QueueSpec(f"team-{i:02d}", TEAM_QUOTA_GPUS, cohort="research") for i in range(TEAMS)]
    cohorts = [CohortSpec("fleet"), CohortSpec("research", parent="fleet")]
    return Fleet("meta-24k", [segment], "default", queues, cohorts)


def research_fleet_jobs(days: float = 30.0, seed: int = 0) -> JobTable:
    if not days > 0:
        raise InputError(f"days must be > 0, got {days}", field="days")
    rng = np.random.default_rng(seed)
    n = max(1, int(RESEARCH_JOBS_PER_HOUR * days * 24))
    research = synth_jobs(n, RESEARCH_JOBS_PER_HOUR, seed=seed, queues=TEAMS, max_gpus=64)
    cols: dict[str, list] = {k: [] for k in COLUMNS}
    for i in range(n):
        team = int(research.queue[i][1:]) if research.queue[i] != "default" else 0
        _row(
            cols,
            f"research-{i}",
            float(research.submit_s[i]),
            int(research.gpus[i]) * SIZE_FACTOR,
            float(research.duration_s[i]),
            f"team-{team:02d}",
            "experiment",
            RESEARCH,
            3600.0,
            300.0,
            "",
        )
    for g, (gpus, topology, start_day, run_days) in enumerate(GANGS):
        if start_day < days:
            _row(
                cols,
                f"pretrain-{g}",
                start_day * DAY_S,
                gpus,
                run_days * DAY_S,
                "pretrain",
                "pretrain",
                PRODUCTION,
                1800.0,
                600.0,
                topology,
            )
    burst = 0
    t = 2 * 3600.0
    while t < days * DAY_S:
        for k in range(EVAL_JOBS):
            duration = float(rng.uniform(900, 3600))
            # Evaluations do not checkpoint: a preempted one starts over.
            _row(cols, f"eval-{burst}-{k}", t, EVAL_GPUS, duration, "eval", "eval", EVAL, 1e12, 60.0, "host")
        burst += 1
        t += EVAL_EVERY_S
    order = np.argsort(np.asarray(cols["submit_s"]), kind="stable")
    arrays = {k: [v[i] for i in order] for k, v in cols.items()}
    return JobTable(
        job_id=arrays["job_id"],
        submit_s=np.asarray(arrays["submit_s"]),
        gpus=np.asarray(arrays["gpus"], dtype=np.int64),
        duration_s=np.asarray(arrays["duration_s"]),
        queue=arrays["queue"],
        user=[""] * len(order),
        kind=arrays["kind"],
        priority=np.asarray(arrays["priority"], dtype=np.int64),
        preemptible=np.asarray([k != "pretrain" for k in arrays["kind"]]),
        source="scenario research-fleet",
        checkpoint_interval_s=np.asarray(arrays["checkpoint_interval_s"]),
        restart_s=np.asarray(arrays["restart_s"]),
        topology=arrays["topology"],
    )


COLUMNS = (
    "job_id",
    "submit_s",
    "gpus",
    "duration_s",
    "queue",
    "kind",
    "priority",
    "checkpoint_interval_s",
    "restart_s",
    "topology",
)


def _row(cols: dict[str, list], *values: object) -> None:
    for name, value in zip(COLUMNS, values, strict=True):
        cols[name].append(value)


@dataclass(frozen=True)
class Scenario:
    fleet: Fleet
    jobs: JobTable
    failures: FailureModel | None = None
    policies: tuple[str, ...] = ("quota-fifo", "fair", "priority")


def _research_fleet(days: float, seed: int) -> Scenario:
    return Scenario(research_fleet_fleet(), research_fleet_jobs(days, seed))


def _training(run: TrainingRun) -> Scenario:
    return Scenario(run.fleet(), run.jobs(), run.failures(), ("fifo",))


SCENARIOS: dict[str, Callable[[float, int], Scenario]] = {
    "research-fleet": _research_fleet,
    "llama3-405b": lambda days, seed: _training(llama3_405b(seed)),
    "100k": lambda days, seed: _training(hundred_k_steps(seed)[0][1]),
}


def load_scenario(name: str, days: float = 30.0, seed: int = 0) -> Scenario:
    """A named scenario; `days` is how long research-fleet generates arrivals (the training
    scenarios run their job to the end)."""
    if name not in SCENARIOS:
        raise InputError(f"unknown scenario '{name}'; known: {', '.join(SCENARIOS)}", field="scenario")
    return SCENARIOS[name](days, seed)
