"""Checkpoints a live job reports are what a stop keeps and what preempting it costs.

Driven through the HTTP API with a scripted agent (the node token's calls, no processes) and
the server's fake clock, on SQLite and PostgreSQL. Every case is worked by hand: a job that
has never reported keeps what the simulator's jobs without a checkpoint interval keep
(everything on a graceful stop, nothing on a lost node); one that reports keeps up to its
last report, those written in its grace period included, and a rebuilt reconciler agrees.
Fair share's decayed usage, the policy's own memory, outlives a rebuild too."""

from __future__ import annotations

import pytest

from tests.support.live_cluster import Cluster, Node, at, attempts, remaining_s, settle


@pytest.fixture
def cluster(database_url, tmp_path):
    c = Cluster(database_url, tmp_path)
    yield c
    c.engine.dispose()


def preempt_one(cluster: Cluster, report_at: list[float], in_grace_at: float | None) -> dict:
    """A low-priority 4-GPU job (estimate 100 s) starts at 1000 on a 4-GPU node, reports the
    checkpoints `report_at`, is preempted at 1040 by a high-priority job, may report once
    more in its grace period, and exits at 1045. Its first attempt, settled."""
    node = Node(cluster, "n0", 4)
    low = cluster.submit("team-a", 4, ["train"], estimate_s=100.0, priority=0)
    settle(cluster, [node])
    (first,) = node.running
    for t in report_at:
        at(cluster, [node], t)
        node.checkpoint(first)
    at(cluster, [node], 1040.0)
    cluster.submit("team-b", 4, ["serve"], priority=5)
    settle(cluster, [node])
    assert attempts(cluster, low)[0]["ended"] == "preempted"
    if in_grace_at is not None:
        cluster.clock.t = in_grace_at
        node.checkpoint(first)
    cluster.clock.t = 1045.0
    node.exit(first, 143)
    settle(cluster, [node])
    assert cluster.job(low)["state"] == "pending"
    return {"attempt": attempts(cluster, low)[0], "remaining_s": remaining_s(cluster, low), "job": low}


def test_a_job_that_never_reports_keeps_its_run_when_preempted(cluster):
    out = preempt_one(cluster, [], None)
    assert out["attempt"]["kept_s"] == 40.0 and out["remaining_s"] == 60.0


def test_a_reporting_job_keeps_up_to_its_last_report(cluster):
    out = preempt_one(cluster, [1010.0, 1025.0], None)
    assert out["attempt"]["checkpoint_s"] == 1025.0
    assert out["attempt"]["kept_s"] == 25.0 and out["remaining_s"] == 75.0


def test_a_checkpoint_written_in_the_grace_period_keeps_the_work_up_to_the_stop(cluster):
    """Saved at 1043 on SIGTERM: everything up to the stop at 1040 is kept, no more."""
    out = preempt_one(cluster, [1010.0], 1043.0)
    assert out["attempt"]["kept_s"] == 40.0 and out["remaining_s"] == 60.0


def test_a_rebuilt_reconciler_keeps_what_the_running_one_kept(cluster):
    out = preempt_one(cluster, [1010.0, 1025.0], None)
    cluster.app.state.reconciler().rebuild("the test asks")
    assert remaining_s(cluster, out["job"]) == out["remaining_s"] == 75.0


def test_a_lost_node_loses_the_work_since_the_last_report(cluster):
    """The model loses a whole run when its node is lost; a report at 1030 keeps 30 s of
    the 50 s run, and the job starts again on the other node with 70 s of its 100 s
    estimate left."""
    nodes = [Node(cluster, "n0", 4), Node(cluster, "n1", 4)]
    job = cluster.submit("team-a", 4, ["train"], estimate_s=100.0)
    settle(cluster, nodes)
    first = attempts(cluster, job)[0]
    here = next(n for n in nodes if n.name == first["placement"][0][0])
    other = [n for n in nodes if n is not here]
    at(cluster, nodes, 1030.0)
    here.checkpoint(first["attempt"])
    at(cluster, nodes, 1050.0)
    at(cluster, other, 1086.0)  # (`here` silent for longer than its lease and the job's grace)
    cluster.app.state.step()
    history = attempts(cluster, job)
    assert history[0]["ended"] == "failed" and history[0]["kept_s"] == 30.0
    assert history[1]["start_s"] == 1086.0 and remaining_s(cluster, job) == 70.0
    cluster.app.state.reconciler().rebuild("the test asks")
    assert remaining_s(cluster, job) == 70.0


def test_a_lost_node_loses_the_whole_run_of_a_job_that_never_reports(cluster):
    nodes = [Node(cluster, "n0", 4)]
    job = cluster.submit("team-a", 4, ["train"], estimate_s=100.0)
    settle(cluster, nodes)
    cluster.clock.t = 1036.0
    cluster.app.state.step()
    assert attempts(cluster, job)[0]["kept_s"] == 0.0 and remaining_s(cluster, job) == 100.0


def test_preemption_takes_the_job_that_loses_least_since_its_last_report(cluster):
    """Two 2-GPU jobs of equal priority: `old` runs since 1000 and reported at 1045, `young`
    since 1010 and reported at 1012. At 1050 a 2-GPU high-priority job preempts one of them:
    `old` loses 5 s, `young` 38 s, so `old` goes, although with no reports (saved on stop,
    nothing lost either way) the one with less useful work, `young`, would."""
    node = Node(cluster, "n0", 4)
    old = cluster.submit("team-a", 2, ["train"], estimate_s=1000.0)
    settle(cluster, [node])
    at(cluster, [node], 1010.0)
    young = cluster.submit("team-a", 2, ["train"], estimate_s=1000.0)
    settle(cluster, [node])
    first = {job: attempts(cluster, job)[0]["attempt"] for job in (old, young)}
    at(cluster, [node], 1012.0)
    node.checkpoint(first[young])
    at(cluster, [node], 1045.0)
    node.checkpoint(first[old])
    at(cluster, [node], 1050.0)
    cluster.submit("team-b", 2, ["serve"], priority=5)
    settle(cluster, [node])
    assert attempts(cluster, old)[0]["ended"] == "preempted"
    assert attempts(cluster, young)[0]["ended"] == ""


def test_a_restart_waits_for_its_stopping_attempt_to_end(cluster):
    """Drained at its deadline, a job is placed again at once on the other node, but that
    node is told to start it only once the first attempt has ended: it resumes from the
    checkpoint saved in the grace period, and never runs twice at once."""
    nodes = [Node(cluster, "n0", 4), Node(cluster, "n1", 4)]
    job = cluster.submit("team-a", 4, ["train"], estimate_s=100.0)
    settle(cluster, nodes)
    where = attempts(cluster, job)[0]["placement"][0][0]
    first = attempts(cluster, job)[0]["attempt"]
    here, there = (nodes[0], nodes[1]) if where == "n0" else (nodes[1], nodes[0])
    response = cluster.call("POST", f"/v1/nodes/{where}/drain?deadline_s=0", cluster.admin)
    assert response.status_code == 200, response.text
    cluster.clock.t = 1020.0
    settle(cluster, nodes)
    history = attempts(cluster, job)
    assert [a["state"] for a in history] == ["stopping", "committed"]
    assert there.beat()["start"] == []
    here.checkpoint(first)
    here.exit(first, 143)
    cluster.app.state.step()
    assert [spec["attempt"] for spec in there.beat()["start"]] == [history[1]["attempt"]]
    assert attempts(cluster, job)[0]["kept_s"] == 20.0
    assert remaining_s(cluster, job) == 80.0


def test_a_job_reports_its_checkpoint_through_the_api(cluster):
    node = Node(cluster, "n0", 4)
    job = cluster.submit("team-a", 1, ["train"])
    assert cluster.call("POST", f"/v1/jobs/{job}/checkpoint", cluster.teams["team-a"]).status_code == 409
    settle(cluster, [node])
    cluster.clock.t = 1007.0
    assert cluster.call("POST", f"/v1/jobs/{job}/checkpoint", cluster.teams["team-b"]).status_code == 404
    response = cluster.call("POST", f"/v1/jobs/{job}/checkpoint", cluster.teams["team-a"])
    assert response.status_code == 200 and response.json()["checkpoint_s"] == 1007.0


def test_fair_share_usage_outlives_a_restart_of_the_reconciler(database_url, tmp_path):
    """Under fair-decay, team-a ran 4 GPUs for 1000 s; after a crash (a reconciler rebuilt
    from the database) team-b's job goes first of two that arrive together, although
    team-a's arrived first: the decayed usage was kept, not started afresh."""
    cluster = Cluster(database_url, tmp_path, policy="fair-decay:half_life=3600")
    try:
        node = Node(cluster, "n0", 4)
        first = cluster.submit("team-a", 4, ["train"])
        settle(cluster, [node])
        for t in range(1100, 2001, 100):
            at(cluster, [node], float(t))
        node.exit(attempts(cluster, first)[0]["attempt"], 0)
        settle(cluster, [node])
        assert cluster.job(first)["state"] == "succeeded"
        cluster.app.state.reconciler().rebuild("the test asks")
        a = cluster.submit("team-a", 4, ["train"])
        b = cluster.submit("team-b", 4, ["train"])
        settle(cluster, [node])
        assert cluster.job(b)["state"] == "running" and cluster.job(a)["state"] == "pending"
    finally:
        cluster.engine.dispose()
