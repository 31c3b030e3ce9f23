"""The reconciler against the simulator: the same workload, the same policy object, a fake
clock and a fake executor give the same start of every attempt; and a reconciler rebuilt
from the database at any step carries on as if nothing had happened."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.fleet import Fleet, Segment
from corral.live.reconciler import Config
from corral.quota import CohortSpec, QueueSpec
from corral.scheduling.registry import POLICIES as REGISTRY
from corral.scheduling.registry import make_policy
from corral.sim.engine import Engine
from corral.windows import ReservationSpec
from tests.conftest import empty_database
from tests.support.live import replay
from tests.support.worlds import table

# every registry policy: live, the durations the oracles read are the users' estimates, which
# are the true durations here
POLICIES = list(REGISTRY)
# and LAS with thresholds low enough that these short jobs are demoted and promoted
REBUILT = [*POLICIES, "las:thresholds=16,64"]
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


@st.composite
def gated_workloads(draw):
    """As `workloads`, with dependencies on earlier jobs (ok, any or notok: every job here
    succeeds, so notok cancels) and an array of 2-4 tasks with a limit."""
    node_gpus, jobs = draw(workloads())
    n = len(jobs)
    after = []
    for k in range(n):
        earlier = draw(st.lists(st.integers(0, k - 1), max_size=2, unique=True)) if k else []
        kinds = [draw(st.sampled_from(["ok", "ok", "any", "notok"])) for _ in earlier]
        after.append(" ".join(f"{jobs.job_id[e]}:{kind}" for e, kind in zip(earlier, kinds, strict=True)))
    first = draw(st.integers(0, n - 1))
    tasks = range(first, min(n, first + draw(st.integers(2, 4))))
    limit = draw(st.integers(1, 2))
    jobs.submit_s[tasks.start : tasks.stop] = jobs.submit_s[first]  # (an array arrives at once)
    for k in tasks:
        after[k] = after[first] if after[first].split(":")[0] not in {jobs.job_id[t] for t in tasks} else ""
    jobs.extra["after"] = after
    jobs.extra["array_job"] = ["1000" if k in tasks else "" for k in range(n)]
    jobs.extra["array_limit"] = [str(limit) if k in tasks else "" for k in range(n)]
    return node_gpus, jobs


@st.composite
def reserved_workloads(draw):
    """As `workloads`, with a maintenance window on one node or a reservation of one node's
    GPUs for a queue, with a notice of none, some or plenty."""
    node_gpus, jobs = draw(workloads())
    queue = draw(st.sampled_from([None, "a", "b"]))
    by_gpus = queue is not None and draw(st.booleans())
    window = ReservationSpec(
        "w",
        start_s=float(draw(st.integers(0, 40))),
        duration_s=float(draw(st.integers(5, 40))),
        hosts=() if by_gpus else (str(draw(st.integers(0, len(node_gpus) - 1))),),
        gpus=node_gpus[0] if by_gpus else 0,
        queue=queue,
        notice_s=float(draw(st.sampled_from([0, 10, 1000]))),
    )
    return node_gpus, jobs, window


def cancelled(url: str) -> set[str]:
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from corral.live.db import CANCELLED, Job

    engine = create_engine(url)
    with Session(engine) as session:
        out = set(session.scalars(select(Job.job_id).where(Job.state == CANCELLED)))
    engine.dispose()
    return out


def simulated_cancelled(node_gpus, jobs, policy) -> set[str]:
    from corral.state.cluster import CANCELLED

    fleet = Fleet(
        "x", [Segment("default", len(node_gpus), node_gpus[0], 1, 1)], "default", list(QUEUES), list(COHORTS)
    )
    engine = Engine(fleet, jobs, make_policy(policy), sample_s=0)
    engine.run()
    return {jobs.job_id[j] for j, s in enumerate(engine.cluster.status) if s == CANCELLED}


def simulated(node_gpus, jobs, policy, windows=()):
    fleet = Fleet(
        "x",
        [Segment("default", len(node_gpus), node_gpus[0], 1, 1)],
        "default",
        list(QUEUES),
        list(COHORTS),
        reservations=list(windows),
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


def rebuilt_as_told(kind, folder, node_gpus, jobs, policy, crash):
    with empty_database(kind, folder) as url:
        live, _, engine = replay(url, node_gpus, jobs, policy, Config(policy, QUEUES, COHORTS), crash=crash)
        engine.dispose()
    return live


def rebuilds_change_nothing(kind, folder, policy, case, seed):
    """Killed between every commit and the launch that follows it (and, separately, at
    random steps), and rebuilt from the database: every job runs, each attempt once, at
    the times of a reconciler never rebuilt and of the simulator. The policy's own state
    (LAS's queues, FTF's leases, FIFO's requeue order, decayed usage) and its wakes are
    restored from the export committed with each step."""
    node_gpus, jobs = case
    rng = random.Random(seed)
    never = rebuilt_as_told(kind, folder, node_gpus, jobs, policy, False)
    every = rebuilt_as_told(kind, folder, node_gpus, jobs, policy, True)
    at_random = rebuilt_as_told(kind, folder, node_gpus, jobs, policy, lambda: rng.random() < 0.5)
    assert every == never
    assert at_random == never
    assert never == simulated(node_gpus, jobs, policy)


@pytest.mark.parametrize("policy", REBUILT)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=workloads(), seed=st.integers(0, 2**32 - 1))
def test_a_rebuilt_reconciler_commits_what_one_never_rebuilt_and_the_simulator_do(
    tmp_path_factory, policy, case, seed
):
    rebuilds_change_nothing("sqlite", tmp_path_factory.mktemp("db"), policy, case, seed)


@pytest.mark.parametrize("policy", POLICIES)
@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=workloads(), seed=st.integers(0, 2**32 - 1))
def test_the_same_rebuilds_on_postgresql(tmp_path_factory, policy, case, seed):
    """As above, on PostgreSQL (fewer cases: each makes three databases)."""
    rebuilds_change_nothing("postgresql", tmp_path_factory.mktemp("db"), policy, case, seed)


@pytest.mark.parametrize("policy", POLICIES)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=gated_workloads(), seed=st.integers(0, 2**32 - 1))
def test_dependencies_and_arrays_run_live_as_simulated_rebuilt_or_not(tmp_path_factory, policy, case, seed):
    """Jobs held for their dependencies and array limits start when the simulator starts
    them, a reconciler rebuilt at random steps holds the same ones, and a dependency that
    can no longer be met cancels the same jobs in both faces."""
    node_gpus, jobs = case
    rng = random.Random(seed)
    folder = tmp_path_factory.mktemp("db")
    url = f"sqlite:///{folder}/never.db"
    never, _, engine = replay(url, node_gpus, jobs, policy, Config(policy, QUEUES, COHORTS))
    engine.dispose()
    assert never == simulated(node_gpus, jobs, policy)
    assert cancelled(url) == simulated_cancelled(node_gpus, jobs, policy)
    url = f"sqlite:///{folder}/rebuilt.db"
    crash = lambda: rng.random() < 0.5  # noqa: E731
    rebuilt, _, engine = replay(url, node_gpus, jobs, policy, Config(policy, QUEUES, COHORTS), crash=crash)
    engine.dispose()
    assert rebuilt == never
    assert cancelled(url) == simulated_cancelled(node_gpus, jobs, policy)


@pytest.mark.parametrize("policy", POLICIES)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=reserved_workloads(), seed=st.integers(0, 2**32 - 1))
def test_reservations_run_live_as_simulated_rebuilt_or_not(tmp_path_factory, policy, case, seed):
    """Jobs keep off reserved nodes, are stopped at a window's start and come back at its
    end when the simulator says, rebuilt at random steps or not."""
    node_gpus, jobs, window = case
    rng = random.Random(seed)
    folder = tmp_path_factory.mktemp("db")
    config = Config(policy, QUEUES, COHORTS)
    never, _, engine = replay(
        f"sqlite:///{folder}/never.db", node_gpus, jobs, policy, config, windows=(window,)
    )
    engine.dispose()
    assert never == simulated(node_gpus, jobs, policy, (window,))
    crash = lambda: rng.random() < 0.5  # noqa: E731
    rebuilt, _, engine = replay(
        f"sqlite:///{folder}/rebuilt.db", node_gpus, jobs, policy, config, crash=crash, windows=(window,)
    )
    engine.dispose()
    assert rebuilt == never


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
                "reservations",
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


def test_a_rebuilt_fair_decay_reconciler_keeps_the_usage_accrued_since_its_last_update(tmp_path):
    """One node of 8 GPUs, fair-decay. Queue a holds 5 GPUs (j1) from 9 to 23 and 3 more
    (j4-j6) from 17 to 18: 73 GPU-s, against b's 1 (j0) then 5 (j3, from 23). A queue's
    decayed usage is brought up to date only when it changes or is read, so at 15 a's was
    last updated at 9, with nothing accrued yet: a rebuild that dropped that update time
    would count a's usage from 15 and forget 30 GPU-s, and a, looking lighter than b, would
    start j2 at 33 ahead of b's j7 (which the simulator starts first)."""
    rows = zip(
        [0.0, 9.0, 15.0, 16.0, 17.0, 17.0, 17.0, 21.0],
        [1, 5, 4, 5, 1, 1, 1, 6],
        [1.0, 14.0, 1.0, 10.0, 1.0, 1.0, 1.0, 1.0],
        "baabaaab",
        strict=True,
    )
    jobs = table([dict(submit_s=s, gpus=g, duration_s=d, queue=q, priority=0) for s, g, d, q in rows])
    live = rebuilt_as_told("sqlite", tmp_path, [8], jobs, "fair-decay", True)
    assert live == simulated([8], jobs, "fair-decay")
    assert live["j7"] == [33.0] and live["j2"] == [34.0]


def test_a_rebuilt_las_reconciler_promotes_a_starving_job_when_the_simulator_does(tmp_path):
    """LAS promotes a waiting job once it has waited long enough since its last stop; a
    rebuilt cluster state must know when that stop was (from the attempt's stop time), or
    the policy takes the promotion for a stale one and drops it. One node of 8 GPUs,
    thresholds 16 and 64 GPU-s: the simulator runs j2 three times (from 4, 20.95 and
    27.95) and j3's second run from 27.24; a rebuild that forgot the stop ran j2 twice and
    started j3 again at 27.29 (the case the rebuild property found)."""
    rows = [(4, 16.0), (1, 1.0), (6, 9.0), (7, 3.0)]
    jobs = table([dict(submit_s=0.0, gpus=g, duration_s=d, queue="a", priority=0) for g, d in rows])
    policy = "las:thresholds=16,64"
    live = rebuilt_as_told("sqlite", tmp_path, [8], jobs, policy, True)
    assert live == simulated([8], jobs, policy)
    assert len(live["j2"]) == 3 and live["j3"][1] == pytest.approx(27.238095238)
