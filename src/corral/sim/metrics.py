"""Metrics computed from the per-job record alone, so any of them can be recomputed outside
corral from jobs-<policy>.csv."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from corral.sim.engine import SimResult
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
        "events": result.events,
        "wall_s": result.wall_s,
    }


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
            "hosts": result.hosts,
        }
    )
    write_table(table, path)
