"""Random small worlds for the simulator (fleets of one or two pools, with or without
quotas, and jobs with priorities, checkpoints, restart costs and topology needs), job tables
written as rows, and engines over them under the registry's policies and short variants."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from corral.fleet import Fleet, Segment
from corral.quota import CohortSpec, QueueSpec
from corral.reliability.failures import Cause, FailureModel
from corral.scheduling.ftf import FinishTimeFair
from corral.scheduling.las import Las
from corral.scheduling.registry import POLICIES, make_policy
from corral.sim.engine import Engine
from corral.state.cluster import ClusterState
from corral.workload import JobTable

# Registry policies, and LAS and FTF with thresholds and leases short enough to act within
# these short workloads (demotions, promotions, lease rounds).
FACTORIES = {name: (lambda name=name: make_policy(name)) for name in POLICIES}
FACTORIES["las-short"] = lambda: Las(thresholds_gpu_s=(20.0, 60.0), promote_knob=2.0)
FACTORIES["las-reference"] = lambda: Las((20.0, 60.0), 2.0, order="reference", starve_from="promotion")
FACTORIES["ftf-short"] = lambda: FinishTimeFair(lease_s=5.0)


@st.composite
def worlds(draw, quotas: bool):
    """A fleet of one or two pools (with queues and a cohort when `quotas`) and jobs with
    priorities, checkpoints, restart costs and topology needs."""
    gpus_per_host = draw(st.sampled_from([1, 2, 4]))
    segments = [
        Segment("p0", draw(st.integers(2, 5)), gpus_per_host, draw(st.integers(1, 2)), 2),
    ]
    if draw(st.booleans()):
        segments.append(Segment("p1", draw(st.integers(2, 3)), gpus_per_host, 1, 2))
    queues, cohorts = [], []
    names = ["a", "b"] + (["p1"] if len(segments) > 1 else [])
    if quotas:
        cohorts = [CohortSpec("c")]
        for name in names:
            borrow = draw(st.sampled_from([None, 0, 2]))
            queues.append(QueueSpec(name, draw(st.integers(1, 6)), cohort="c", borrowing_limit_gpus=borrow))
    fleet = Fleet("w", segments, "p0", queues, cohorts)
    n = draw(st.integers(1, 18))
    rows = []
    for _ in range(n):
        queue = draw(st.sampled_from(names))
        pool = fleet.pool_of_queue(queue)
        cap = fleet.pool_gpus[pool]
        if quotas:
            cap = min(cap, QuotaCeiling.of(fleet, queue))
        interval = float(draw(st.sampled_from([0, 0, 4, 7])))
        rows.append(
            dict(
                submit_s=float(draw(st.integers(0, 40))),
                gpus=draw(st.integers(1, max(1, cap))),
                duration_s=float(draw(st.integers(1, 30))),
                queue=queue,
                priority=draw(st.integers(0, 2)),
                preemptible=draw(st.booleans()) or not quotas,
                checkpoint_interval_s=interval,
                checkpoint_write_s=1.0 if interval and draw(st.booleans()) else 0.0,
                restart_s=float(draw(st.sampled_from([0, 0, 2]))),
            )
        )
    return fleet, table(rows)


class QuotaCeiling:
    @staticmethod
    def of(fleet: Fleet, queue: str) -> int:
        state = ClusterState(fleet, enforce_quota=True)
        return int(state.quota.ceiling(state.add_queue(queue)))


DEFAULTS = dict(
    priority=0, preemptible=True, checkpoint_interval_s=0.0, checkpoint_write_s=0.0, restart_s=0.0
)


def table(rows: list[dict]) -> JobTable:
    n = len(rows)
    rows = [{**DEFAULTS, **r} for r in rows]

    def col(name, dtype):
        return np.array([r[name] for r in rows], dtype=dtype)

    return JobTable(
        job_id=[f"j{i}" for i in range(n)],
        submit_s=col("submit_s", float),
        gpus=col("gpus", np.int64),
        duration_s=col("duration_s", float),
        queue=[r["queue"] for r in rows],
        user=[""] * n,
        kind=["experiment"] * n,
        priority=col("priority", np.int64),
        preemptible=col("preemptible", bool),
        checkpoint_interval_s=col("checkpoint_interval_s", float),
        checkpoint_write_s=col("checkpoint_write_s", float),
        restart_s=col("restart_s", float),
    )


def failures(seed: int) -> FailureModel:
    """A host fails about every 200 s and is back within seconds."""
    return FailureModel(
        rate_per_1000_node_days=1000 * 86400 / 200.0,
        causes=(Cause("gpu", 3, 5.0), Cause("network", 1, 12.0)),
        seed=seed,
    )


def engine(fleet, jobs, policy: str, failure_seed: int | None) -> Engine:
    model = None if failure_seed is None else failures(failure_seed)
    return Engine(fleet, jobs, FACTORIES[policy](), record=True, failures=model, sample_s=math.inf)
