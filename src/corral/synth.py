"""Synthetic workloads for scale tests, Poisson arrivals at a chosen rate, in two shapes:

- `philly`: sizes from the Philly job-size histogram, durations from its duration quantiles
  (log-interpolated), derived from the packaged trace by scripts/derive_data.py;
- `lab`: a large lab's research queue, the regime of the contended benchmarks: 80% of jobs
  on 1 GPU, a tail of 2-128 GPUs (each power of two half as likely as the one before), 0.1%
  gangs of 1,024 GPUs; durations log-normal with a median of 30 minutes and sigma 1.6.
"""

from __future__ import annotations

import json
import math
from functools import cache
from importlib import resources

import numpy as np

from corral.errors import InputError
from corral.workload import MAX_TIME_S, JobTable

MAX_JOBS = 100_000_000  # (a hundred times the README's million; 5M load in 1.3 GiB)
SHAPES = ("philly", "lab")
LAB_TAIL = (2, 4, 8, 16, 32, 64, 128)
LAB_MEDIAN_S, LAB_SIGMA = 1800.0, 1.6


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
    shape: str = "philly",
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
    if shape not in SHAPES:
        raise InputError(f"shape must be one of {', '.join(SHAPES)}, not '{shape}'", field="shape")
    if shape == "lab":
        tail = 0.5 ** np.arange(len(LAB_TAIL))
        sizes = np.array([1, *LAB_TAIL, 1024])
        weights = np.array([0.8, *(0.199 * tail / tail.sum()), 0.001])
    else:
        histogram = philly_shape()["gpus_histogram"]
        sizes = np.array([int(k) for k in histogram])
        weights = np.array(list(histogram.values()), dtype=float)
    if max_gpus is not None:
        keep = sizes <= max_gpus
        if not keep.any():
            raise InputError(f"no job size of the {shape} shape fits in {max_gpus} GPUs", field="max_gpus")
        sizes, weights = sizes[keep], weights[keep]
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(3600.0 / arrivals_per_hour, size=jobs)
    submit = np.cumsum(gaps) - gaps[0]
    gpus = rng.choice(sizes, size=jobs, p=weights / weights.sum())
    if shape == "lab":
        duration = np.round(rng.lognormal(math.log(LAB_MEDIAN_S), LAB_SIGMA, jobs))
    else:
        log_q = np.log(np.asarray(philly_shape()["duration_quantiles_s"]))
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
