"""The research teams under a broker: their Philly-like experiments replayed by the core
engine and a sharing policy on their own quota plus the GPUs the broker leaves to
best-effort work. When serving wants GPUs back, the engine's lending schedule takes idle
hosts first and then stops the preemptible jobs that lose least (cheapest first); those
jobs save at the notice and wait in their queues, under the same quotas and priorities.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from corral.capacity.sim import CapacityResult
from corral.fleet import Fleet, Segment
from corral.quota import CohortSpec, QueueSpec
from corral.scheduling.registry import make_policy
from corral.sim.engine import Engine, SimResult
from corral.sim.metrics import summary
from corral.synth import synth_jobs
from corral.workload import JobTable

GPUS_PER_HOST = 8
TEAMS = 16
SIZE_FACTOR = 8  # each Philly GPU becomes an 8-GPU host, as in research-fleet
JOBS_PER_HOUR_PER_1K_GPUS = 50.0  # enough to keep the quota and what is lent busy
CHECKPOINT_S, RESTART_S = 3600.0, 300.0


def research_fleet(quota_gpus: int, lendable_gpus: int) -> Fleet:
    """The teams' quota split evenly in one cohort, plus a queue without jobs that owns the
    GPUs the broker lends: the teams borrow them, and the schedule takes them back."""
    hosts = (quota_gpus + lendable_gpus) // GPUS_PER_HOST
    queues = [QueueSpec(f"team-{i:02d}", quota_gpus / TEAMS, cohort="research") for i in range(TEAMS)]
    queues.append(QueueSpec("lent", lendable_gpus, cohort="research"))
    segment = Segment("default", hosts, GPUS_PER_HOST, 2, 192)
    return Fleet("research", [segment], "default", queues, [CohortSpec("research")])


def research_jobs(gpus: int, days: float, seed: int) -> JobTable:
    """Philly-like experiments, 8-512 GPUs, at research-fleet's rate per GPU owned."""
    rate = JOBS_PER_HOUR_PER_1K_GPUS * gpus / 1000.0
    n = max(1, int(rate * days * 24))
    jobs = synth_jobs(n, rate, seed=seed, queues=TEAMS, max_gpus=64)
    teams = [f"team-{int(q[1:]):02d}" if q != "default" else "team-00" for q in jobs.queue]
    return replace(
        jobs,
        gpus=jobs.gpus * SIZE_FACTOR,
        queue=teams,
        kind=["experiment"] * n,
        checkpoint_interval_s=np.full(n, CHECKPOINT_S),
        restart_s=np.full(n, RESTART_S),
        source="fungible-fleet research",
    )


def lending_schedule(result: CapacityResult, lendable_hosts: int) -> list[tuple[float, int, int]]:
    """Hosts of the lendable part held out at each step: what the broker did not leave to
    best-effort work (rounded up to whole hosts), then all returned at the end."""
    left = np.floor(result.best_effort_gpus / GPUS_PER_HOST).astype(int)
    out = np.clip(lendable_hosts - left, 0, lendable_hosts)
    schedule, last = [], -1
    for t, hosts in enumerate(out.tolist()):
        if hosts != last:
            schedule.append((t * result.step_s, 0, hosts))
            last = hosts
    schedule.append((len(out) * result.step_s, 0, 0))
    return schedule


def replay_research(
    result: CapacityResult, policy: str = "fair", seed: int = 0, jobs: JobTable | None = None
) -> tuple[SimResult, dict[str, float]]:
    """The research jobs under `policy` with the broker's best-effort GPUs lent and taken
    back; returns the engine's result and a summary for metrics.json."""
    lendable = int(result.best_effort_gpus.max()) // GPUS_PER_HOST * GPUS_PER_HOST
    days = result.demand.shape[1] * result.step_s / 86400.0
    the_jobs = jobs if jobs is not None else research_jobs(result.research_gpus, days, seed)
    fleet = research_fleet(result.research_gpus, lendable)
    schedule = lending_schedule(result, lendable // GPUS_PER_HOST)
    sim = Engine(fleet, the_jobs, make_policy(policy), lending=schedule).run()
    row = summary(sim)
    reclaimed = sum(c.get("reclaimed", 0) for c in sim.by_cause.values())
    lendable_gpu_s = lendable * schedule[-1][0]  # over the broker's horizon; all back after it
    return sim, {
        "research_policy": policy,
        "research_jobs": len(the_jobs),
        "research_avg_jct_s": row["avg_jct_s"],
        "research_p95_jct_s": row["p95_jct_s"],
        "research_reclaim_stops": reclaimed,
        "research_preemptions": int(sim.preemptions.sum()),
        "research_lost_gpu_hours": float((sim.lost_s * the_jobs.gpus).sum() / 3600.0),
        "research_best_effort_gpu_hours": max(0.0, lendable_gpu_s - sim.lent_gpu_s) / 3600.0,
    }


def research_rows(
    results: list[CapacityResult], policy: str, seed: int, each: Callable[[str], None] | None = None
) -> dict[str, dict[str, float]]:
    """The same research jobs replayed under each broker's lending; `each` hears of each
    broker done (a progress bar)."""
    make_policy(policy)  # an unknown policy fails before any replay
    if not results:
        return {}
    days = results[0].demand.shape[1] * results[0].step_s / 86400.0
    jobs = research_jobs(results[0].research_gpus, days, seed)
    rows = {}
    for r in results:
        rows[r.broker] = replay_research(r, policy, seed, jobs)[1]
        if each is not None:
            each(r.broker)
    return rows
