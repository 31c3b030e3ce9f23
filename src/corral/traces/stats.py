"""What a job table holds: counts, GPU-hours, size and duration distributions, arrival rate,
and the load it offers a fleet."""

from __future__ import annotations

from typing import Any

import numpy as np

from corral.fleet import Fleet
from corral.workload import JobTable

SIZE_BUCKETS = ((1, 1), (2, 4), (5, 8), (9, 64), (65, 512), (513, 4096), (4097, 10**9))


def trace_stats(jobs: JobTable, fleet: Fleet | None = None) -> dict[str, Any]:
    gpu_s = jobs.gpus * jobs.duration_s
    span = jobs.span_s
    sizes = []
    for lo, hi in SIZE_BUCKETS:
        mask = (jobs.gpus >= lo) & (jobs.gpus <= hi)
        if mask.any():
            label = f"{lo}" if lo == hi else (f"{lo}-{hi}" if hi < 10**9 else f">={lo}")
            sizes.append(
                {
                    "gpus": label,
                    "jobs": int(mask.sum()),
                    "share_of_jobs": float(mask.mean()),
                    "share_of_gpu_time": float(gpu_s[mask].sum() / gpu_s.sum()),
                }
            )
    stats: dict[str, Any] = {
        "source": jobs.source,
        "jobs": len(jobs),
        "queues": len(set(jobs.queue)),
        "gpu_hours": float(gpu_s.sum() / 3600),
        "span_s": span,
        "arrivals_per_hour": len(jobs) / (span / 3600) if span > 0 else float("inf"),
        "gpus_mean": float(jobs.gpus.mean()),
        "gpus_max": int(jobs.gpus.max()),
        "duration_s": {f"p{q}": float(np.percentile(jobs.duration_s, q)) for q in (10, 50, 90, 99)}
        | {"mean": float(jobs.duration_s.mean()), "max": float(jobs.duration_s.max())},
        "sizes": sizes,
    }
    if fleet is not None:
        stats["fleet"] = fleet.name
        stats["fleet_gpus"] = fleet.total_gpus
        stats["offered_load"] = jobs.offered_load(fleet.total_gpus)
    return stats
