"""Synthetic Philly-like workloads for scale tests: sizes from the Philly job-size histogram,
durations from its duration quantiles (log-interpolated), Poisson arrivals at a chosen rate.
The shape is derived from the packaged trace by scripts/derive_data.py."""

from __future__ import annotations

import json
import math
from functools import cache
from importlib import resources

import numpy as np

from corral.errors import InputError
from corral.workload import MAX_TIME_S, JobTable

MAX_JOBS = 100_000_000  # (a hundred times the README's million; 5M load in 1.3 GiB)


@cache
def philly_shape() -> dict:
    return json.loads(resources.files("corral.data").joinpath("philly_shape.json").read_text())


def synth_jobs(
    jobs: int,
    arrivals_per_hour: float,
    seed: int = 0,
    queues: int = 1,
    max_gpus: int | None = None,
    max_duration_s: float | None = None,
) -> JobTable:
    """`jobs` Philly-like jobs; `max_gpus` drops sizes above it from the size distribution,
    `max_duration_s` caps durations (so the work asked stays within reach of the arrival
    window when the load is set over it)."""
    if not 1 <= jobs <= MAX_JOBS:
        raise InputError(f"need 1 to {MAX_JOBS:,} jobs, got {jobs}", field="jobs")
    if not 0 < arrivals_per_hour < math.inf:
        raise InputError(f"arrival rate must be a finite number > 0, got {arrivals_per_hour}", field="rate")
    if jobs * 3600.0 / arrivals_per_hour > MAX_TIME_S:
        raise InputError(
            f"{jobs:,} jobs at {arrivals_per_hour:g} an hour arrive over more than {MAX_TIME_S:.0e} s",
            field="rate",
        )
    if not 1 <= queues <= jobs:
        raise InputError(f"need 1 to {jobs:,} queues (one per job at most), got {queues}", field="queues")
    shape = philly_shape()
    sizes = np.array([int(k) for k in shape["gpus_histogram"]])
    weights = np.array(list(shape["gpus_histogram"].values()), dtype=float)
    if max_gpus is not None:
        keep = sizes <= max_gpus
        if not keep.any():
            raise InputError(f"no Philly job size fits in {max_gpus} GPUs", field="max_gpus")
        sizes, weights = sizes[keep], weights[keep]
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(3600.0 / arrivals_per_hour, size=jobs)
    submit = np.cumsum(gaps) - gaps[0]
    gpus = rng.choice(sizes, size=jobs, p=weights / weights.sum())
    log_q = np.log(np.asarray(shape["duration_quantiles_s"]))
    u = rng.random(jobs) * (log_q.size - 1)
    duration = np.round(np.exp(np.interp(u, np.arange(log_q.size), log_q)))
    duration = np.maximum(duration, 1.0)
    if max_duration_s is not None:
        if not max_duration_s >= 1:
            raise InputError("the duration cap must be at least 1 s", field="max_duration")
        duration = np.minimum(duration, max_duration_s)
    queue_ids = rng.integers(0, queues, size=jobs)
    names = [f"q{i}" for i in range(queues)] if queues > 1 else ["default"]
    return JobTable(
        job_id=[f"synth-{i}" for i in range(jobs)],
        submit_s=np.round(submit, 3),
        gpus=gpus.astype(np.int64),
        duration_s=duration,
        queue=[names[i] for i in queue_ids.tolist()],
        user=[f"u{i % 97}" for i in range(jobs)],
        kind=["experiment"] * jobs,
        priority=np.zeros(jobs, dtype=np.int64),
        preemptible=np.ones(jobs, dtype=bool),
        source="synth",
    )
