"""How long a start-time forecast takes (sim/forecast.py) on a full 24,576-GPU cluster
(`meta-24k`): every GPU busy, 10,000 jobs waiting, the state cut from a simulation of the
`lab` shape. Prints one JSON object.

    python benchmarks/forecast.py [--pending 10000] [--policy fifo-backfill]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from corral.fleet import load_fleet
from corral.scheduling.registry import make_policy
from corral.sim.engine import Engine
from corral.sim.forecast import next_starts
from corral.state.cluster import PENDING, RUNNING_
from corral.workload import JobTable


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--policy", default="fifo-backfill")
    args = parser.parse_args()
    fleet = load_fleet("meta-24k")
    rng = np.random.default_rng(0)
    # 3,072 eight-GPU jobs fill the cluster at 0; the waiting ones arrive just after
    n = 3072 + args.pending
    gpus = np.concatenate([np.full(3072, 8), rng.choice([1, 2, 4, 8, 16, 64, 256], size=args.pending)])
    jobs = JobTable(
        job_id=[f"j{i}" for i in range(n)],
        submit_s=np.concatenate([np.zeros(3072), np.ones(args.pending)]),
        gpus=gpus.astype(np.int64),
        duration_s=rng.uniform(600, 86_400, size=n),
        queue=["default"] * n,
        user=[""] * n,
        kind=["experiment"] * n,
        priority=np.zeros(n, dtype=np.int64),
        preemptible=np.ones(n, dtype=bool),
    )
    sim = Engine(fleet, jobs, make_policy(args.policy))
    sim.begin()
    sim.advance(1.0)
    cluster = sim.cluster
    waiting = sum(s == PENDING for s in cluster.status)
    running = sum(s == RUNNING_ for s in cluster.status)
    began = time.perf_counter()
    starts = next_starts(cluster, args.policy, sim.driver.export(), 1.0, dict(sim.driver.wakes))
    wall_s = time.perf_counter() - began
    print(
        json.dumps(
            {
                "policy": args.policy,
                "running": int(running),
                "waiting": int(waiting),
                "forecast": len(starts),
                "wall_s": round(wall_s, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
