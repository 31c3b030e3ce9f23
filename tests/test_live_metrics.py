"""`GET /metrics` parsed with prometheus-client's own parser and checked against a cluster
state worked by hand (scripted nodes, the server's fake clock, SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.live_cluster import Cluster, Node, at, settle


@pytest.fixture
def cluster(database_url, tmp_path):
    c = Cluster(database_url, tmp_path)
    yield c
    c.engine.dispose()


def scrape(cluster: Cluster) -> dict[tuple, float]:
    """Every sample, keyed by (name, sorted labels)."""
    response = cluster.call("GET", "/metrics", None)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_the_metrics_say_what_the_cluster_holds(cluster):
    # n0 (4 GPUs) runs team-a's 3-GPU job; n1 (4) is cordoned; team-b's 4-GPU job waits,
    # then preempts nothing (priority 0) and another of team-a's fails.
    n0, n1 = Node(cluster, "n0", 4), Node(cluster, "n1", 4)
    assert cluster.call("POST", "/v1/nodes/n1/cordon", cluster.admin).status_code == 200
    cluster.submit("team-a", 3, ["x"])
    cluster.submit("team-b", 4, ["y"])
    failing = cluster.submit("team-a", 1, ["z"])
    settle(cluster, [n0, n1])
    at(cluster, [n0, n1], 1010.0)
    (attempt,) = [a for a in n0.running if cluster.job(failing)["attempts"][0]["attempt"] == a]
    n0.exit(attempt, 2)
    settle(cluster, [n0, n1])
    m = scrape(cluster)
    assert m["corral_jobs", (("queue", "team-a"), ("state", "running"))] == 1
    assert m["corral_jobs", (("queue", "team-b"), ("state", "pending"))] == 1
    assert m["corral_jobs", (("queue", "team-a"), ("state", "pending"))] == 0
    assert m["corral_gpus", (("pool", "default"), ("state", "busy"))] == 3
    assert m["corral_gpus", (("pool", "default"), ("state", "free"))] == 1
    assert m["corral_gpus", (("pool", "default"), ("state", "cordoned"))] == 4
    assert m["corral_quota_used_gpus", (("queue", "team-a"),)] == 3
    assert m["corral_quota_borrowed_gpus", (("queue", "team-a"),)] == 0  # (nominal 8)
    assert m["corral_nodes", (("state", "up"),)] == 1 and m["corral_nodes", (("state", "cordoned"),)] == 1
    assert m["corral_submissions_total", ()] == 3
    assert m["corral_starts_total", ()] == 2
    assert m["corral_failures_total", ()] == 1 and m["corral_preemptions_total", ()] == 0
    # this server's own: each step timed; the two first starts, at once after submission
    steps = m["corral_reconcile_step_seconds_count", ()]
    assert steps >= 6 and m["corral_reconcile_step_seconds_bucket", (("le", "+Inf"),)] == steps
    assert m["corral_submit_to_start_seconds_count", ()] == 2
    assert m["corral_submit_to_start_seconds_sum", ()] == 0.0  # (the fake clock stood still)
    # (stepped by the test, not by a leader's thread: this server does not lead)
    assert [v for k, v in m.items() if k[0] == "corral_leader"] == [0.0]
