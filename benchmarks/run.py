"""Speed and memory of the simulator on the scenarios docs/performance.md reports.

    python benchmarks/run.py philly            # full Philly trace, fifo and las, philly fleet
    python benchmarks/run.py synth-24k         # 1,000,000 synthetic jobs, meta-24k, fifo-backfill
    python benchmarks/run.py synth-2024        # 1,000,000 synthetic jobs, meta-2024, fifo-backfill
    python benchmarks/run.py sharing [load]    # Philly trace on philly-shared, every sharing policy
    python benchmarks/run.py sharing trace [n] # the same at the trace's own load, best of n, x fifo
    python benchmarks/run.py research-fleet    # the research-fleet scenario, 30 days, 4 policies
    python benchmarks/run.py plan              # planner: layout searches and the 405B recipe

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

from corral.fleet import load_fleet
from corral.sim.metrics import summary
from corral.simulate import simulate
from corral.synth import synth_jobs
from corral.traces import read_jobs


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def report(name: str, result, setup_s: float) -> None:
    row = summary(result)
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
                "gpu_utilization": round(row["gpu_utilization"], 3),
                "avg_jct_s": round(row["avg_jct_s"]),
                "avg_wait_s": round(row["avg_wait_s"]),
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
    fleet_name = {"synth-24k": "meta-24k", "synth-2024": "meta-2024"}[which]
    began = time.perf_counter()
    fleet = load_fleet(fleet_name)
    load = float(sys.argv[2]) if len(sys.argv) > 2 else 0.95
    jobs = synth_jobs(1_000_000, 1000.0, seed=1).with_load(load, fleet.total_gpus)
    setup = time.perf_counter() - began
    report(which, simulate(jobs, fleet, ["fifo-backfill"])[0], setup)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "philly")
