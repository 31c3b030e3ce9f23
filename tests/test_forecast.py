"""The start-time forecast (sim/forecast.py): with exact estimates and no new arrivals, each
waiting job's forecast start is when it does start, under every policy, from a simulation
cut at any instant and from a live reconciler's state."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.scheduling.registry import POLICIES, make_policy
from corral.sim.engine import Engine
from corral.sim.forecast import next_starts
from tests.conftest import flat_fleet, make_jobs
from tests.support.live_cluster import Cluster, Node, at, settle
from tests.support.worlds import engine, worlds


def later_starts(runs, first: int) -> dict[int, float]:
    """Each job's first start among the runs from the `first`th on (those after a cut: a
    job may have started and been stopped again within the cut's own instant)."""
    out: dict[int, float] = {}
    for job, start in zip(runs.job[first:], runs.start_s[first:], strict=True):
        out.setdefault(job, start)
    return out


@pytest.mark.parametrize("policy", sorted(POLICIES))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds(quotas=True), cut=st.integers(0, 40))
def test_the_forecast_is_the_start_when_estimates_are_exact_and_nothing_arrives(policy, world, cut):
    fleet, jobs = world
    jobs.submit_s[jobs.submit_s > cut] = cut  # (everything has arrived by the cut)
    sim = engine(fleet, jobs, policy, None)
    sim.begin()
    sim.advance(float(cut))
    cluster = sim.cluster
    waiting = [j for j in range(len(jobs)) if cluster.status[j] == 1]  # PENDING
    first = len(cluster.runs)
    forecast = next_starts(cluster, policy, sim.driver.export(), float(cut), dict(sim.driver.wakes))
    sim.advance()
    actual = later_starts(cluster.runs, first)
    for job in waiting:
        assert forecast.get(job) == pytest.approx(actual.get(job, math.nan), nan_ok=True), (job, policy)


@pytest.fixture
def cluster(database_url, tmp_path):
    c = Cluster(database_url, tmp_path)
    yield c
    c.engine.dispose()


def test_a_live_forecast_is_when_jobs_start_and_learns_a_default_for_jobs_without_estimates(cluster):
    # team-b's one job so far ran 30 s (1000-1030). Then n0 (4 GPUs) runs a (4 GPUs, 100 s)
    # from 1030; b (4 GPUs, 50 s) and c (2 GPUs, no estimate: its queue's median, 30 s)
    # wait: b is expected at 1130, c at 1180, and that is when they start.
    node = Node(cluster, "n0", 4)
    done = cluster.submit("team-b", 1, ["x"], estimate_s=30.0)
    settle(cluster, [node])
    at(cluster, [node], 1030.0)
    node.exit(node.running[0], 0)
    settle(cluster, [node])
    a = cluster.submit("team-a", 4, ["a"], estimate_s=100.0)
    settle(cluster, [node])
    b = cluster.submit("team-a", 4, ["b"], estimate_s=50.0)
    c = cluster.submit("team-b", 2, ["c"])
    settle(cluster, [node])
    assert cluster.job(done)["state"] == "succeeded" and cluster.job(a)["state"] == "running"
    listed = {j["job_id"]: j for j in cluster.call("GET", "/v1/jobs?forecast=true", cluster.admin).json()}
    assert "forecast_start_s" not in listed[a]
    assert (listed[b]["forecast_start_s"], listed[c]["forecast_start_s"]) == (1130.0, 1180.0)
    one = cluster.call("GET", f"/v1/jobs/{c}/forecast", cluster.teams["team-b"]).json()
    assert one == {"job_id": c, "state": "pending", "forecast_start_s": 1180.0}
    # and so it goes: a ends at its estimate, b starts; b ends, c starts
    at(cluster, [node], 1130.0)
    node.exit(node.running[0], 0)
    settle(cluster, [node])
    assert cluster.job(b)["attempts"][0]["start_s"] == 1130.0
    at(cluster, [node], 1180.0)
    node.exit(node.running[0], 0)
    settle(cluster, [node])
    assert cluster.job(c)["attempts"][0]["start_s"] == 1180.0


def test_jobs_forecast_asks_the_server_and_shows_each_expected_start(monkeypatch):
    """`corral jobs --forecast` (against a canned answer): it asks for the forecast, and
    shows a pending job's expected start in local time, or that none is expected."""
    import time as clock

    from typer.testing import CliRunner

    from corral.cli import app, live

    asked: list = []
    base = {
        "name": "", "team": "t", "queue": "q", "gpus": 1, "held_gpus": None, "state": "pending",
        "exit_code": None, "submit_s": 1_800_000_000.0, "first_start_s": None, "end_s": None, "ran_s": 0.0,
    }  # fmt: skip
    rows = [
        base | {"job_id": "1", "forecast_start_s": 1_800_003_600.0},
        base | {"job_id": "2", "forecast_start_s": None},
    ]

    def call(_s, _t, method, path, params=None, **_):
        asked.append(params)
        return rows

    monkeypatch.setattr(live, "_call", call)
    result = CliRunner().invoke(app, ["jobs", "--forecast"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert asked == [{"forecast": "true"}] and "expected start" in result.output
    assert clock.strftime("%Y-%m-%d %H:%M:%S", clock.localtime(1_800_003_600.0)) in result.output
    assert "not expected" in result.output


def test_explain_of_a_live_pending_job_says_when_it_is_expected_to_start(monkeypatch):
    import time as clock

    from typer.testing import CliRunner

    from corral.cli import app, live

    answers = {
        "/v1/jobs/7": {
            "gpus": 4,
            "queue": "q",
            "priority": 0,
            "state": "pending",
            "submit_s": 1_800_000_000.0,
        },
        "/v1/jobs/7/reasons": [{"time_s": 1_800_000_000.0, "kind": "behind", "reason": "waiting its turn"}],
        "/v1/jobs/7/forecast": {"job_id": "7", "state": "pending", "forecast_start_s": 1_800_000_600.0},
    }
    monkeypatch.setattr(live, "_call", lambda _s, _t, method, path, **_: answers[path])
    result = CliRunner().invoke(app, ["explain", "7"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    expected = clock.strftime("%Y-%m-%d %H:%M:%S", clock.localtime(1_800_000_600.0))
    assert f"expected to start at {expected}" in result.output


def test_jobs_not_yet_arrived_are_not_forecast_and_do_not_arrive_in_it():
    # Two hosts of 4 GPUs. a (4 GPUs) runs 0-10; b (8 GPUs) waits for it; c arrives at 50.
    sim = Engine(flat_fleet(2, 4), make_jobs([(0, 4, 10), (0, 8, 5), (50, 4, 5)]), make_policy("fifo"))
    sim.begin()
    sim.advance(2.0)
    assert next_starts(sim.cluster, "fifo", sim.driver.export(), 2.0) == {1: 10.0}
