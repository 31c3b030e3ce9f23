"""How far the start-time forecast is from the actual start on a real trace, with estimates
as users give them: a slice of the Philly trace, at its own arrival times, on a fleet small
enough that its jobs wait; each job's estimate its duration times a log-normal error
(median 1, sigma 1: half the users off by 2x or more). At instants spread over the
arrivals, every waiting job's forecast (from the state then, with the estimates) is
compared with when it did start, jobs that arrived later included. Prints one JSON object.

    python benchmarks/forecast_error.py [--jobs 3000] [--first 40000] [--fleet 16x8] [--sigma 1.0]
"""

from __future__ import annotations

import argparse
import json
from importlib import resources

import numpy as np

from corral.fleet import load_fleet
from corral.scheduling.registry import make_policy
from corral.sim.engine import Engine
from corral.sim.forecast import capture, starts_from
from corral.state.cluster import PENDING
from corral.traces.philly import read_philly
from corral.workload import JobTable


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--policy", default="fifo-backfill")
    parser.add_argument("--sigma", type=float, default=1.0)
    parser.add_argument("--fleet", default="16x8", help="small enough that the slice's jobs wait")
    parser.add_argument("--first", type=int, default=40_000, help="the slice's first job, by arrival")
    parser.add_argument(
        "--cuts", type=int, default=10, help="forecasts at this many instants over the arrivals"
    )
    parser.add_argument(
        "--load", type=float, default=1.5, help="offered load (jobs queue only when it is high)"
    )
    args = parser.parse_args()
    trace = read_philly(str(resources.files("corral.data").joinpath("philly_pollux.csv.gz")))
    order = np.argsort(trace.submit_s, kind="stable")[args.first : args.first + args.jobs]
    jobs = _take(trace, order)
    rng = np.random.default_rng(0)
    estimates = jobs.duration_s * rng.lognormal(0.0, args.sigma, size=len(jobs))
    fleet = load_fleet(args.fleet)
    sim = Engine(fleet, jobs, make_policy(args.policy))
    sim.begin()
    forecasts: list[tuple[int, float, float]] = []  # (job, cut, forecast)
    len(sim.cluster.runs)
    for cut in np.linspace(jobs.submit_s.min(), jobs.submit_s.max(), args.cuts + 2)[1:-1].tolist():
        sim.advance(cut)
        cluster = sim.cluster
        waiting = [j for j in range(len(jobs)) if cluster.status[j] == PENDING]
        if waiting:
            left = {j: float(estimates[j]) for j in range(len(jobs))}
            got = starts_from(
                capture(cluster), args.policy, sim.driver.export(), cut, dict(sim.driver.wakes), None, left
            )
            forecasts += [(j, cut, got.get(j, np.inf)) for j in waiting]
    sim.advance()
    runs = sim.cluster.runs
    errors = []
    for job, at, predicted in forecasts:
        actual = min(s for j, s in zip(runs.job, runs.start_s, strict=True) if j == job and s >= at)
        errors.append(abs(predicted - actual))
    errors_h = np.asarray(errors) / 3600.0
    print(
        json.dumps(
            {
                "policy": args.policy, "jobs": len(jobs), "fleet": args.fleet, "sigma": args.sigma,
                "forecasts": len(errors),
                "abs_error_p50_h": round(float(np.median(errors_h)), 3),
                "abs_error_p90_h": round(float(np.percentile(errors_h, 90)), 3),
                "exact_share": round(float(np.mean(errors_h < 1e-9)), 3),
            }
        )
    )  # fmt: skip


def _take(jobs: JobTable, rows: np.ndarray) -> JobTable:
    """The jobs at `rows`, in that order."""
    picked: dict = {}
    for name, value in jobs.__dict__.items():
        if isinstance(value, np.ndarray) and len(value) == len(jobs):
            picked[name] = value[rows]
        elif isinstance(value, list) and len(value) == len(jobs):
            picked[name] = [value[i] for i in rows]
        elif name == "extra":
            picked[name] = {k: [v[i] for i in rows] for k, v in value.items()}
        else:
            picked[name] = value
    return JobTable(**picked)


if __name__ == "__main__":
    main()
