"""Speed and memory of the simulator on the scenarios docs/performance.md reports.

    python benchmarks/run.py philly            # full Philly trace, fifo and las, philly fleet
    python benchmarks/run.py synth-24k         # 1,000,000 synthetic jobs, meta-24k, fifo-backfill
    python benchmarks/run.py synth-2024        # 1,000,000 synthetic jobs, meta-2024, fifo-backfill
    python benchmarks/run.py sharing [load]    # Philly trace on philly-shared, every sharing policy
    python benchmarks/run.py sharing trace [n] # the same at the trace's own load, best of n, x fifo
    python benchmarks/run.py research-fleet    # the research-fleet scenario, 30 days, 4 policies
    python benchmarks/run.py plan              # planner: layout searches and the 405B recipe
    python benchmarks/run.py load [n]          # reading n synthetic jobs (5,000,000) from Parquet and CSV
    python benchmarks/run.py explain           # explain and --reasons against the plain runs
    python benchmarks/run.py contended [policy ...]  # 1,000,000 lab-shaped jobs queued on meta-24k
                                               # (load 0.9 over the arrival window, 30-day cap)
    python benchmarks/run.py contended-2024 [policy ...]  # the same on meta-2024 (651,264 GPUs),
                                               # at load 2.0

Synthetic arrivals are rescaled so the offered load is 0.95 (or the second argument).
Each prints one JSON line per run: wall time of the simulation itself, events, and the
process's peak resident memory.
"""

from __future__ import annotations

import json
import platform
import resource
import sys
import time
from importlib import resources

import numpy as np

from corral.fleet import load_fleet
from corral.sim.metrics import summary
from corral.simulate import simulate
from corral.synth import synth_jobs
from corral.traces import read_jobs


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def report(name: str, result, setup_s: float) -> None:
    row = summary(result)
    wait = result.end_s - result.jobs.submit_s - result.jobs.duration_s
    print(
        json.dumps(
            {
                "bench": name,
                "policy": row["policy"],
                "jobs": row["jobs"],
                "events": row["events"],
                "sim_wall_s": round(row["wall_s"], 2),
                "setup_s": round(setup_s, 2),
                "events_per_s": round(row["events"] / row["wall_s"]),
                "us_per_event": round(1e6 * row["wall_s"] / max(1, row["events"]), 1),
                "gpu_utilization": round(row["gpu_utilization"], 3),
                "avg_jct_s": round(row["avg_jct_s"]),
                "avg_wait_s": round(row["avg_wait_s"]),
                "p50_wait_s": round(float(np.median(wait))),
                "p99_wait_s": round(row["p99_wait_s"]),
                "peak_rss_gib": round(peak_rss_gib(), 2),
                "python": platform.python_version(),
            }
        ),
        flush=True,
    )


SHARING = ("fifo", "quota-fifo", "las", "ftf", "fair", "fair-decay", "priority")


def sharing_at_trace_load(jobs, repeats: int) -> None:
    """Each policy on the Philly trace as recorded (the load `philly` runs fifo at), the
    fastest of `repeats` runs taken in turn, and its ratio to fifo's: one JSON line each."""
    best = dict.fromkeys(SHARING, float("inf"))
    for _ in range(repeats):
        for policy in SHARING:
            best[policy] = min(best[policy], simulate(jobs, "philly-shared", [policy])[0].wall_s)
    for policy in SHARING:
        row = {"bench": "sharing@trace", "policy": policy, "runs": repeats}
        row |= {"sim_wall_s": round(best[policy], 2), "x_fifo": round(best[policy] / best["fifo"], 2)}
        print(json.dumps(row | {"python": platform.python_version()}), flush=True)


def plan_bench() -> None:
    """Wall time of the exhaustive layout search and of one recipe, one JSON line each."""
    from corral.hardware import gpu
    from corral.plan.model import PRESETS
    from corral.plan.recipe import RECIPES, estimate_recipe
    from corral.plan.search import search

    cases = [
        ("llama3-8b", 64, 8192, 2**20),
        ("llama3-70b", 1024, 8192, 4 * 2**20),
        ("llama3-405b", 16384, 8192, 16 * 2**20),
        ("llama3-405b", 16384, 131072, 16 * 2**20),
        ("mixtral-8x7b", 256, 4096, 4 * 2**20),
    ]
    for model, gpus, seq, batch in cases:
        began = time.perf_counter()
        result = search(PRESETS[model], gpu("h100"), gpus, seq, batch)
        wall = time.perf_counter() - began
        row = {"bench": "plan search", "model": model, "gpus": gpus, "seq": seq, "tried": result.tried}
        row |= {
            "fit": len(result.ranked),
            "wall_s": round(wall, 3),
            "ms_per_layout": round(1e3 * wall / result.tried, 3),
        }
        print(json.dumps(row), flush=True)
    began = time.perf_counter()
    estimate_recipe(RECIPES["llama3-405b"])
    wall = time.perf_counter() - began
    print(json.dumps({"bench": "plan recipe", "recipe": "llama3-405b", "wall_s": round(wall, 4)}))
    print(json.dumps({"peak_rss_gib": round(peak_rss_gib(), 2), "python": platform.python_version()}))


def load_bench(n: int) -> None:
    """Peak memory and time of `corral trace stats` (read, then summarise) on n synthetic jobs
    written as Parquet and as CSV, each in a fresh process: one JSON line each."""
    import subprocess
    import tempfile
    from pathlib import Path

    from corral.workload import write_jobs

    jobs = synth_jobs(n, 2000.0, seed=1)
    with tempfile.TemporaryDirectory() as folder:
        for suffix in ("parquet", "csv"):
            path = Path(folder) / f"jobs.{suffix}"
            write_jobs(jobs, path)
            code = (
                "import resource, sys, time; from corral.cli import app; t = time.perf_counter()\n"
                "try: app(['trace', 'stats', sys.argv[1]])\n"
                "except SystemExit: pass\n"
                "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)"
            )
            done = subprocess.run(
                [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
            )
            wall_s, peak = map(float, done.stdout.split()[-2:])
            row = {
                "bench": "load",
                "format": suffix,
                "jobs": n,
                "file_mib": round(path.stat().st_size / 2**20),
            }
            row |= {
                "wall_s": round(wall_s, 2),
                "peak_rss_gib": round(peak, 2),
                "python": platform.python_version(),
            }
            print(json.dumps(row), flush=True)


def explain_bench() -> None:
    """The price of reasons: research-fleet under priority plain and explaining pretrain-1,
    and the Philly trace on philly-shared at load 0.8 under fair, plain and recording every
    job's reasons. One JSON line each, with the ratio to the plain run."""
    from corral.scenarios import Scenario, load_scenario

    scenario = load_scenario("research-fleet", 30.0)
    with resources.as_file(resources.files("corral.data").joinpath("philly_pollux.csv.gz")) as path:
        philly = read_jobs(path)
    cases = [
        ("research-fleet priority", scenario, "priority", None, {"explain_jobs": ["pretrain-1"]}),
        (
            "philly-shared fair @0.8",
            Scenario(load_fleet("philly-shared"), philly),
            "fair",
            0.8,
            {"explain": True},
        ),
    ]
    for name, setup, policy, load, explaining in cases:
        plain = simulate(setup.jobs, setup.fleet, [policy], load=load, failures=setup.failures)[0]
        watched = simulate(
            setup.jobs, setup.fleet, [policy], load=load, failures=setup.failures, **explaining
        )[0]
        rows = sum(len(history) for history in watched.reasons.values())
        row = {"bench": "explain", "case": name, "plain_s": round(plain.wall_s, 2)}
        row |= {"explain_s": round(watched.wall_s, 2), "ratio": round(watched.wall_s / plain.wall_s, 2)}
        print(json.dumps(row | {"reason_rows": rows, "peak_rss_gib": round(peak_rss_gib(), 2)}), flush=True)


def main(which: str) -> None:
    if which == "philly":
        began = time.perf_counter()
        with resources.as_file(resources.files("corral.data").joinpath("philly_pollux.csv.gz")) as path:
            jobs = read_jobs(path)
        setup = time.perf_counter() - began
        for policy in ("fifo", "las"):
            report("philly", simulate(jobs, "philly", [policy])[0], setup)
        return
    if which == "sharing":
        with resources.as_file(resources.files("corral.data").joinpath("philly_pollux.csv.gz")) as path:
            jobs = read_jobs(path)
        if len(sys.argv) > 2 and sys.argv[2] == "trace":
            sharing_at_trace_load(jobs, int(sys.argv[3]) if len(sys.argv) > 3 else 5)
            return
        load = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
        for policy in SHARING:
            report(f"sharing@{load}", simulate(jobs, "philly-shared", [policy], load=load)[0], 0.0)
        return
    if which == "research-fleet":
        from corral.scenarios import load_scenario

        began = time.perf_counter()
        scenario = load_scenario("research-fleet", 30.0)
        fleet, jobs = scenario.fleet, scenario.jobs
        setup = time.perf_counter() - began
        for policy in ("fifo", "quota-fifo", "fair", "priority"):
            report("research-fleet", simulate(jobs, fleet, [policy])[0], setup)
        return
    if which == "plan":
        plan_bench()
        return
    if which == "load":
        load_bench(int(sys.argv[2]) if len(sys.argv) > 2 else 5_000_000)
        return
    if which == "explain":
        explain_bench()
        return
    if which in ("contended", "contended-2024"):
        began = time.perf_counter()
        fleet = load_fleet("meta-24k" if which == "contended" else "meta-2024")
        jobs = synth_jobs(1_000_000, 1.0, seed=1, max_duration_s=30 * 86400.0, shape="lab")
        # (a million of these jobs arrive within 9 hours on meta-2024, and the duration tail
        # carries the work past the window: at 0.9 nothing waits there, at 2.0 queues form)
        jobs = jobs.with_load(0.9 if which == "contended" else 2.0, fleet.total_gpus)
        setup = time.perf_counter() - began
        for policy in sys.argv[2:] or ["fifo-backfill"]:
            report(which, simulate(jobs, fleet, [policy])[0], setup)
        return
    fleet_name = {"synth-24k": "meta-24k", "synth-2024": "meta-2024"}[which]
    began = time.perf_counter()
    fleet = load_fleet(fleet_name)
    load = float(sys.argv[2]) if len(sys.argv) > 2 else 0.95
    jobs = synth_jobs(1_000_000, 1000.0, seed=1).with_load(load, fleet.total_gpus)
    setup = time.perf_counter() - began
    report(which, simulate(jobs, fleet, ["fifo-backfill"])[0], setup)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "philly")
