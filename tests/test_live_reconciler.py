"""The reconciler against the simulator: the same workload, the same policy object, a fake
clock and a fake executor give the same start of every attempt; and a reconciler rebuilt
from the database at any step carries on as if nothing had happened."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.fleet import Fleet, Segment
from corral.live.reconciler import Config
from corral.quota import CohortSpec, QueueSpec
from corral.scheduling.registry import make_policy
from corral.sim.engine import Engine
from tests.live_support import replay
from tests.test_restore import table

# every registry policy that reads no true duration (estimates are given to both)
POLICIES = ["fifo", "fifo-firstfit", "fifo-backfill", "las", "quota-fifo", "fair", "priority"]
QUEUES = (QueueSpec("a", 8, cohort="c"), QueueSpec("b", 8, cohort="c"))
COHORTS = (CohortSpec("c"),)


@st.composite
def workloads(draw):
    nodes = draw(st.integers(1, 3))
    gpus = draw(st.sampled_from([4, 8]))
    rows = []
    for _ in range(draw(st.integers(1, 12))):
        rows.append(
            dict(
                submit_s=float(draw(st.integers(0, 30))),
                gpus=draw(st.integers(1, min(nodes * gpus, 8))),
                duration_s=float(draw(st.integers(1, 40))),
                queue=draw(st.sampled_from(["a", "b"])),
                priority=draw(st.integers(0, 2)),
                preemptible=True,
            )
        )
    # A live cluster numbers jobs as they arrive; ties between equal victims go by number.
    rows.sort(key=lambda row: row["submit_s"])
    return [gpus] * nodes, table(rows)


def simulated(node_gpus, jobs, policy):
    fleet = Fleet(
        "x", [Segment("default", len(node_gpus), node_gpus[0], 1, 1)], "default", list(QUEUES), list(COHORTS)
    )
    result = Engine(fleet, jobs, make_policy(policy), sample_s=0).run()
    starts: dict[str, list[float]] = {}
    for job, start in sorted(zip(result.runs.job, result.runs.start_s, strict=True), key=lambda x: x[1]):
        starts.setdefault(jobs.job_id[job], []).append(start)
    return starts


@pytest.mark.parametrize("policy", POLICIES)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=workloads())
def test_the_reconciler_starts_what_the_simulator_starts(tmp_path_factory, policy, case):
    node_gpus, jobs = case
    url = f"sqlite:///{tmp_path_factory.mktemp('db')}/live.db"
    live, _, _ = replay(url, node_gpus, jobs, policy, Config(policy, QUEUES, COHORTS))
    assert live == simulated(node_gpus, jobs, policy)


@pytest.mark.parametrize("policy", POLICIES)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=workloads())
def test_a_reconciler_rebuilt_after_every_commit_loses_and_repeats_nothing(tmp_path_factory, policy, case):
    """Killed between every commit and the launch that follows it, and rebuilt from the
    database: every job runs, each attempt once, at the simulator's times. LAS's
    attained-service queues are the policy's own state: the rebuilt reconciler restores
    them from the export committed with each step."""
    node_gpus, jobs = case
    url = f"sqlite:///{tmp_path_factory.mktemp('db')}/live.db"
    live, _, _ = replay(url, node_gpus, jobs, policy, Config(policy, QUEUES, COHORTS), crash=True)
    assert live == simulated(node_gpus, jobs, policy)


def test_the_same_on_sqlite_and_postgresql(database_url):
    jobs = table(
        [
            dict(submit_s=0.0, gpus=8, duration_s=30.0, queue="a", priority=0),
            dict(submit_s=1.0, gpus=4, duration_s=10.0, queue="b", priority=2),
            dict(submit_s=2.0, gpus=4, duration_s=10.0, queue="b", priority=0),
            dict(submit_s=3.0, gpus=8, duration_s=5.0, queue="a", priority=1),
        ]
    )
    for policy in ("fifo", "priority"):
        config = Config(policy, QUEUES, COHORTS)
        live, _, engine = replay(database_url, [8], jobs, policy, config, crash=policy == "priority")
        assert live == simulated([8], jobs, policy)
        engine.dispose()
        from sqlalchemy import text

        with engine.begin() as connection:
            for name in (
                "attempts",
                "demand",
                "moves",
                "services",
                "jobs",
                "nodes",
                "teams",
                "meta",
                "alembic_version",
            ):
                connection.execute(text(f"DROP TABLE {name}"))


def test_a_rebuilt_las_reconciler_still_wakes_for_a_demotion(tmp_path):
    """One node of 8 GPUs, LAS with a first queue of 16 GPU-s. Job 0 (7 GPUs, 3 s) reaches
    16 GPU-s at 16/7 s and drops to the second queue; job 1 (2 GPUs, 1 s), waiting in the
    first, then preempts it and runs to 16/7 + 1, when job 0 comes back. A reconciler rebuilt
    after every commit must wake at 16/7 as the one it replaced asked to (its wakes are
    committed with the policy's export); one that forgot would start job 1 only at 3."""
    jobs = table(
        [
            dict(submit_s=0.0, gpus=7, duration_s=3.0, queue="a", priority=0),
            dict(submit_s=0.0, gpus=2, duration_s=1.0, queue="a", priority=0),
        ]
    )
    policy = "las:thresholds=16,64"
    live, _, engine = replay(
        f"sqlite:///{tmp_path}/live.db", [8], jobs, policy, Config(policy, QUEUES, COHORTS), crash=True
    )
    engine.dispose()
    assert live == simulated([8], jobs, policy)
    assert live["j1"] == [pytest.approx(16 / 7)] and live["j0"] == [0.0, pytest.approx(16 / 7 + 1)]
