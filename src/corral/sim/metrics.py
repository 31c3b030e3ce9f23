"""Metrics computed from the per-job record alone, so any of them can be recomputed outside
corral from jobs-<policy>.csv."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from corral.sim.engine import SimResult
from corral.state.fairness import alone_s
from corral.workload import write_table


def summary(result: SimResult) -> dict[str, Any]:
    """One row of the comparison: JCT and queueing percentiles, makespan, utilisation.

    Queueing delay is JCT minus run time: all the time a job was not running, including time
    spent preempted. Utilisation is busy GPU-seconds over fleet GPUs x makespan, where the
    makespan runs from the first submission to the last completion.
    """
    jobs = result.jobs
    jct = result.end_s - jobs.submit_s
    wait = jct - jobs.duration_s
    makespan = float(result.end_s.max() - jobs.submit_s.min())
    busy = float((jobs.gpus * jobs.duration_s).sum())
    return {
        "policy": result.policy,
        "jobs": len(jobs),
        "avg_jct_s": float(jct.mean()),
        "median_jct_s": float(np.median(jct)),
        "p95_jct_s": float(np.percentile(jct, 95)),
        "p99_jct_s": float(np.percentile(jct, 99)),
        "avg_wait_s": float(wait.mean()),
        "p99_wait_s": float(np.percentile(wait, 99)),
        "makespan_s": makespan,
        "gpu_utilization": busy / (result.fleet.total_gpus * makespan) if makespan > 0 else 0.0,
        "preemptions": int(result.preemptions.sum()),
        "lost_gpu_hours": float((jobs.gpus * result.lost_s).sum() / 3600),
        "restart_gpu_hours": float((jobs.gpus * result.restart_s).sum() / 3600),
        "fragmented_gpus": fragmented_fraction(result) * result.fleet.total_gpus,
        **fairness(result),
        "events": result.events,
        "wall_s": result.wall_s,
    }


def finish_time_fairness(result: SimResult) -> np.ndarray:
    """Themis' rho per job: its completion time shared over its time alone on a 1/N share of
    its pool (state/fairness.py). rho > 1: the sharing cost the job more than its share owed it."""
    jobs = result.jobs
    pool_gpus = np.asarray(result.fleet.pool_gpus, dtype=float)[result.pool]
    alone = alone_s(jobs.duration_s, jobs.gpus, pool_gpus, result.contenders)
    return (result.end_s - jobs.submit_s) / alone


def fairness(result: SimResult) -> dict[str, float]:
    """Themis' finish-time fairness: mean, 99th percentile and worst rho over jobs (Themis
    judges by the worst), and the worst queue's mean."""
    rho = finish_time_fairness(result)
    queues = np.asarray(result.jobs.queue)
    per_queue = [float(rho[queues == q].mean()) for q in np.unique(queues)]
    return {
        "avg_rho": float(rho.mean()),
        "p99_rho": float(np.percentile(rho, 99)),
        "max_rho": float(rho.max()),
        "worst_queue_rho": max(per_queue),
    }


def fragmented_fraction(result: SimResult) -> float:
    """Time-averaged share of the fleet's GPUs that were free but unusable by the pending
    jobs (engine.fragmented_gpus), from the sampled series."""
    series = result.series
    total = 0.0
    for pool in np.unique(series[:, 1]):
        rows = series[series[:, 1] == pool]
        if rows.shape[0] < 2:
            continue
        dt = np.diff(rows[:, 0])
        span = rows[-1, 0] - rows[0, 0]
        if span > 0:
            total += float((rows[:-1, 4] * dt).sum() / span)
    return total / result.fleet.total_gpus


SIZE_CLASSES = ((1, 1), (2, 8), (9, 64), (65, 1024), (1025, 10**9))


def by_size(result: SimResult) -> list[dict[str, Any]]:
    """JCT and wait by gang size: what small experiments and big gangs each see."""
    jobs = result.jobs
    jct = result.end_s - jobs.submit_s
    wait = result.start_s - jobs.submit_s
    rows = []
    for lo, hi in SIZE_CLASSES:
        mask = (jobs.gpus >= lo) & (jobs.gpus <= hi)
        if not mask.any():
            continue
        label = f"{lo}" if lo == hi else (f"{lo}+" if hi >= 10**9 else f"{lo}-{hi}")
        rows.append(
            {
                "gpus": label,
                "jobs": int(mask.sum()),
                "avg_jct_s": float(jct[mask].mean()),
                "p99_jct_s": float(np.percentile(jct[mask], 99)),
                "avg_first_wait_s": float(wait[mask].mean()),
                "max_first_wait_s": float(wait[mask].max()),
                "preemptions": int(result.preemptions[mask].sum()),
                "lost_gpu_hours": float((jobs.gpus[mask] * result.lost_s[mask]).sum() / 3600),
            }
        )
    return rows


def by_queue(result: SimResult) -> list[dict[str, Any]]:
    """Per-queue breakdown: jobs, GPU-hours, average and p99 JCT and wait."""
    jobs = result.jobs
    queues = np.asarray(jobs.queue)
    jct = result.end_s - jobs.submit_s
    wait = jct - jobs.duration_s
    rows = []
    for name in sorted(set(jobs.queue)):
        mask = queues == name
        rows.append(
            {
                "queue": name,
                "pool": result.fleet.pools[int(result.pool[mask][0])],
                "jobs": int(mask.sum()),
                "gpu_hours": float((jobs.gpus[mask] * jobs.duration_s[mask]).sum() / 3600),
                "avg_jct_s": float(jct[mask].mean()),
                "p99_jct_s": float(np.percentile(jct[mask], 99)),
                "avg_wait_s": float(wait[mask].mean()),
                "preemptions": int(result.preemptions[mask].sum()),
            }
        )
    return rows


def write_job_record(result: SimResult, path: Path) -> None:
    """jobs-<policy>.csv: submit, first start, completion, GPUs, queue, preemptions, hosts."""
    import pyarrow as pa

    jobs = result.jobs
    table = pa.table(
        {
            "job_id": jobs.job_id,
            "submit_s": jobs.submit_s,
            "start_s": result.start_s,
            "end_s": result.end_s,
            "duration_s": jobs.duration_s,
            "gpus": jobs.gpus,
            "queue": jobs.queue,
            "pool": [result.fleet.pools[p] for p in result.pool.tolist()],
            "preemptions": result.preemptions,
            "lost_s": result.lost_s,
            "rho": finish_time_fairness(result),
            "hosts": result.hosts,
        }
    )
    write_table(table, path)


def run_rows(result: SimResult) -> dict[str, list[Any]]:
    """Every run of every job (its number, start, end, GPUs, hosts, why it ended and the
    useful seconds it kept) with its job's queue, user, kind, submission and end state: the
    run table of report/usage.py."""
    runs, jobs = result.runs, result.jobs
    number: dict[int, int] = {}
    run_of = []
    for job in runs.job:
        number[job] = number.get(job, 0) + 1
        run_of.append(number[job])
    last: dict[int, str] = dict(zip(runs.job, runs.ended, strict=True))
    state = {job: _state(why, float(result.end_s[job])) for job, why in last.items()}
    ids, gpus = jobs.job_id, jobs.gpus
    return {
        "job_id": [ids[j] for j in runs.job],
        "run": run_of,
        "start_s": list(runs.start_s),
        "end_s": list(runs.end_s),
        "gpus": [int(gpus[j]) for j in runs.job],
        "hosts": [";".join(f"{h}:{g}" for h, g in p) for p in runs.placement],
        "ended": [why or "running" for why in runs.ended],
        "kept_s": list(runs.kept_s),
        "queue": [jobs.queue[j] for j in runs.job],
        "team": [jobs.user[j] for j in runs.job],
        "user": [jobs.user[j] for j in runs.job],
        "kind": [jobs.kind[j] for j in runs.job],
        "submit_s": [float(jobs.submit_s[j]) for j in runs.job],
        "state": [state[j] for j in runs.job],
    }


def _state(last_ended: str, end_s: float) -> str:
    """A simulated job's end state, from how its last run ended."""
    if last_ended == "completed":
        return "succeeded"
    if last_ended == "cancelled" or not math.isnan(end_s):
        return "cancelled"
    return "running" if not last_ended else "pending"


def write_run_record(result: SimResult, path: Path) -> None:
    """runs-<policy>.csv: `run_rows`, from which occupancy at any instant, and the usage of
    `corral usage --runs`, can be recomputed."""
    import pyarrow as pa

    write_table(pa.table(run_rows(result)), path)


def reliability(result: SimResult) -> dict[str, Any]:
    """Fleet-wide failure metrics: goodput (useful GPU-hours over the GPU-hours the fleet
    had), availability (GPU time not failed or in maintenance), interruptions and the work
    lost to each cause."""
    jobs = result.jobs
    span_s = float(result.end_of_run_s - jobs.submit_s.min()) if len(jobs) else 0.0
    capacity = result.fleet.total_gpus * span_s
    useful = float((jobs.gpus * jobs.duration_s).sum())
    return {
        "failures": len(result.failures),
        "interruptions": int(result.interruptions.sum()),
        "unexpected_interruptions": int(result.unexpected.sum()),
        "goodput": useful / capacity if capacity > 0 else 0.0,
        "availability": 1.0 - result.down_gpu_s / capacity if capacity > 0 else 1.0,
        "checkpoint_gpu_hours": float((jobs.gpus * result.checkpoint_s).sum() / 3600),
        "lost_gpu_hours_by_cause": {k: v / 3600 for k, v in sorted(result.lost_by_cause.items())},
    }


def job_reliability(result: SimResult, job: int) -> dict[str, Any]:
    """One job's effective training time: ETTR is useful time over the time from its first
    start to its end (restarts, lost work, checkpoint writes and waits for hosts count
    against it)."""
    jobs = result.jobs
    elapsed = float(result.end_s[job] - result.start_s[job])
    gpus = int(jobs.gpus[job])
    return {
        "job_id": jobs.job_id[job],
        "gpus": gpus,
        "elapsed_days": elapsed / 86400,
        "useful_days": float(jobs.duration_s[job]) / 86400,
        "ettr": float(jobs.duration_s[job]) / elapsed if elapsed > 0 else 1.0,
        "interruptions": int(result.interruptions[job]),
        "unexpected_interruptions": int(result.unexpected[job]),
        "planned_interruptions": int(result.interruptions[job] - result.unexpected[job]),
        "by_cause": dict(sorted(result.by_cause.get(job, {}).items(), key=lambda kv: -kv[1])),
        "lost_gpu_hours": float(result.lost_s[job]) * gpus / 3600,
        "restart_hours": float(result.restart_s[job]) / 3600,
        "checkpoint_hours": float(result.checkpoint_s[job]) / 3600,
        "checkpoint_interval_s": float(result.interval_s[job]),
    }
