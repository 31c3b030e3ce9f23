"""Sweeps: one simulation per (policy, load, seed), on every local core, into one table.

`corral.sweep(...)` from Python and `corral sweep` from a shell. Results go to
`DIR/runs.parquet`, one row per run with every metric of `corral simulate`'s comparison; a
second sweep into the same folder runs only what is missing, and a run that fails is
reported without losing the others (and is tried again next time).

Seeds: seed 0 replays the workload as it is; seed k > 0 moves every arrival by a uniform
draw of up to half the mean gap between arrivals either way (generator seeded with k), so a
trace without randomness of its own still gives independent samples around its shape.
"""

from __future__ import annotations

import functools
import os
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from corral.errors import InputError, install_hint
from corral.fleet import Fleet, load_fleet
from corral.workload import JobTable, write_table

RUNS_FILE = "runs.parquet"


@dataclass(frozen=True)
class Point:
    policy: str
    load: float
    seed: int


def loads_from(text: str) -> list[float]:
    """'0.5:1.0:0.1' as [0.5, 0.6, ..., 1.0] (the stop included), or one load '0.8'."""
    parts = text.split(":")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise InputError(f"'{text}' is not START:STOP:STEP or a number", field="load") from None
    if len(numbers) == 1:
        values = numbers
    elif len(numbers) == 3 and numbers[2] > 0 and numbers[1] >= numbers[0]:
        start, stop, step = numbers
        count = int(round((stop - start) / step)) + 1
        values = [round(start + i * step, 10) for i in range(count)]
    else:
        raise InputError(f"'{text}' is not START:STOP:STEP with STOP >= START and STEP > 0", field="load")
    if not all(v > 0 for v in values):
        raise InputError("loads must be > 0", field="load")
    return values


def perturb(jobs: JobTable, seed: int) -> JobTable:
    """The workload for `seed` (see the module's docstring)."""
    if seed == 0 or len(jobs) < 2:
        return jobs
    span = float(jobs.submit_s.max() - jobs.submit_s.min())
    gap = span / (len(jobs) - 1)
    rng = np.random.default_rng(seed)
    moved = np.maximum(jobs.submit_s.min(), jobs.submit_s + rng.uniform(-gap / 2, gap / 2, len(jobs)))
    return JobTable(**{**jobs.__dict__, "submit_s": moved})


@functools.lru_cache(maxsize=4)
def _inputs(workload: str, fleet: str) -> tuple[JobTable, Fleet]:
    from corral.traces import read_jobs

    return read_jobs(workload), load_fleet(fleet)


def run_point(workload: str, fleet: str, point: Point) -> dict:
    """One simulation's metrics row (in a worker process: the inputs are read once there)."""
    from corral.scheduling.registry import make_policy
    from corral.sim.engine import Engine
    from corral.sim.metrics import summary

    jobs, the_fleet = _inputs(workload, fleet)
    jobs = perturb(jobs.with_load(point.load, the_fleet.total_gpus), point.seed)
    result = Engine(the_fleet, jobs, make_policy(point.policy)).run()
    row = summary(result)
    return row | {"policy": point.policy, "load": point.load, "seed": point.seed}


def _done(out: Path) -> list[dict]:
    path = out / RUNS_FILE
    if not path.exists():
        return []
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def sweep(
    workload: str,
    fleet: str,
    policies: Sequence[str],
    loads: Sequence[float],
    seeds: int,
    out: str | Path,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    ray: str | None = None,
):
    """Run every (policy, load, seed) not already in `out`/runs.parquet, on `workers`
    processes (all cores by default), or as tasks of a Ray cluster (`ray`: "auto" or an
    address to join one, "local" to start one here); returns the whole table (a pyarrow
    Table: `.to_pandas()` for a DataFrame) and the runs that failed, as (point, error)."""
    import pyarrow as pa

    from corral.scheduling.registry import make_policy

    for policy in policies:
        make_policy(policy)  # (an unknown policy is refused before anything runs)
    if seeds < 1:
        raise InputError("--seeds must be >= 1", field="seeds")
    _inputs(workload, fleet)  # (bad inputs are refused here, naming the file, not in a worker)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    rows = _done(folder)
    have = {(r["policy"], r["load"], r["seed"]) for r in rows}
    todo = [
        Point(p, load, s)
        for p in policies
        for load in loads
        for s in range(seeds)
        if (p, load, s) not in have
    ]
    failed: list[tuple[Point, str]] = []
    if todo and ray is not None:
        _on_ray(ray, workload, fleet, todo, rows, failed, progress)
    elif todo:
        count = workers or os.cpu_count() or 1
        with ProcessPoolExecutor(max_workers=min(count, len(todo))) as pool:
            futures = {pool.submit(run_point, workload, fleet, point): point for point in todo}
            for done, future in enumerate(as_completed(futures), start=1):
                try:
                    rows.append(future.result())
                except Exception as err:  # (one run's failure is reported; the others go on)
                    text = (
                        err.message
                        if isinstance(err, InputError)
                        else traceback.format_exception_only(err)[-1]
                    )
                    failed.append((futures[future], text.strip()))
                if progress is not None:
                    progress(done, len(todo))
    table = pa.Table.from_pylist(sorted(rows, key=lambda r: (r["policy"], r["load"], r["seed"])))
    if todo:
        write_table(table, folder / RUNS_FILE)
    return table, failed


def _on_ray(
    address: str,
    workload: str,
    fleet: str,
    todo: list[Point],
    rows: list[dict],
    failed: list[tuple[Point, str]],
    progress: Callable[[int, int], None] | None,
) -> None:
    """The runs as Ray tasks, one CPU each. The workload and fleet paths must be readable on
    every node (a shared file system, or one machine)."""
    try:
        import ray
    except ImportError:
        raise InputError(f"--ray needs the ray extra: {install_hint('ray')}", field="ray") from None
    if not ray.is_initialized():
        ray.init(
            address=None if address == "local" else address,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    task = ray.remote(num_cpus=1)(run_point)
    pending = {task.remote(workload, fleet, point): point for point in todo}
    done = 0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        point = pending.pop(ready[0])
        try:
            rows.append(ray.get(ready[0]))
        except ray.exceptions.RayTaskError as err:
            cause = err.as_instanceof_cause()
            text = cause.message if isinstance(cause, InputError) else str(cause).strip().splitlines()[-1]
            failed.append((point, text))
        done += 1
        if progress is not None:
            progress(done, len(todo))


def draw(table, path: Path) -> None:
    """Average and p99 JCT against load per policy, with 95% bands over the seeds;
    utilisation; preemptions."""
    from corral.report.outputs import pyplot

    plt = pyplot()

    rows = table.to_pylist()
    policies = sorted({r["policy"] for r in rows})
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
    for metric, ax, scale in (
        ("avg_jct_s", axes[0], 3600),
        ("p99_jct_s", axes[1], 3600),
        ("gpu_utilization", axes[2], 0.01),
        ("preemptions", axes[3], 1),
    ):
        for i, policy in enumerate(policies):
            loads = sorted({r["load"] for r in rows if r["policy"] == policy})
            means, bands = [], []
            for load in loads:
                values = (
                    np.array([r[metric] for r in rows if r["policy"] == policy and r["load"] == load]) / scale
                )
                means.append(values.mean())
                bands.append(1.96 * values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0)
            means, bands = np.array(means), np.array(bands)
            ax.plot(loads, means, "o-", color=f"C{i}", label=policy)
            ax.fill_between(loads, means - bands, means + bands, color=f"C{i}", alpha=0.2)
        ax.set_xlabel("offered load")
    axes[0].set_ylabel("hours")
    axes[0].set_title("average JCT")
    axes[1].set_ylabel("hours")
    axes[1].set_title("p99 JCT")
    axes[1].set_yscale("log")
    axes[2].set_title("GPU utilisation (%)")
    axes[3].set_title("preemptions")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
