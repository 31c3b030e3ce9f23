"""Elastic jobs on the live control plane: the `+elastic` policy part grows a job into idle
GPUs and gives them back to waiting work; each resize stops the gang (SIGTERM: it
checkpoints) and starts it again at the new size, with the new WORLD_SIZE, only once the
old ranks have ended. Driven through the HTTP API with scripted agents and the fake clock,
on SQLite and PostgreSQL, worked by hand."""

from __future__ import annotations

import pytest

from tests.support.live_cluster import Cluster, Node, at, attempts, remaining_s, settle


@pytest.fixture
def cluster(database_url, tmp_path):
    c = Cluster(database_url, tmp_path, policy="fifo+elastic:hold=0")
    yield c
    c.engine.dispose()


def started(nodes: list[Node]) -> dict[str, list[dict]]:
    """What each node is told to start on its next heartbeat."""
    return {node.name: node.beat()["start"] for node in nodes}


def test_an_elastic_job_grows_then_shrinks_for_waiting_work(cluster):
    nodes = [Node(cluster, "n0", 4), Node(cluster, "n1", 4)]
    elastic = cluster.submit("team-a", 2, ["train"], estimate_s=1000.0, min_gpus=2, max_gpus=8, step_gpus=2)
    cluster.app.state.step()
    # Started on 2 GPUs and, nothing waiting, grown to 8 in the same pass: the 2-GPU attempt
    # never reached an agent, so it ends at once and the 8-GPU gang may start.
    first, second = attempts(cluster, elastic)
    assert (first["state"], first["ended"]) == ("ended", "resized")
    assert second["state"] == "committed" and sum(len(ids) for _, ids in second["placement"]) == 8
    specs = started(nodes)
    envs = {name: s[0]["env"] for name, s in specs.items()}
    assert {e["WORLD_SIZE"] for e in envs.values()} == {"8"}
    assert sorted(e["RANK"] for e in envs.values()) == ["0", "4"]
    assert cluster.job(elastic)["held_gpus"] == 8
    (row,) = cluster.call("GET", "/v1/jobs", cluster.admin).json()
    assert (row["gpus"], row["held_gpus"]) == (2, 8)
    quota = cluster.call("GET", "/v1/quota", cluster.admin).json()
    assert {q["queue"]: q["used_gpus"] for q in quota}["team-a"] == 8

    # At 1100 a rigid 4-GPU job arrives: the elastic job gives back one node.
    at(cluster, nodes, 1100.0)
    waiting = cluster.submit("team-b", 4, ["serve"])
    settle(cluster, nodes)
    history = attempts(cluster, elastic)
    assert [(a["state"], a["ended"]) for a in history[1:]] == [("stopping", "resized"), ("committed", "")]
    assert [n for n, _ in history[2]["placement"]] == ["n0"]
    assert cluster.job(waiting)["state"] == "running"
    # The 4-GPU gang waits until every rank of the 8-GPU one has ended (it resumes from the
    # checkpoint written on SIGTERM).
    assert all(s["attempt"] != history[2]["attempt"] for specs in started(nodes).values() for s in specs)
    cluster.clock.t = 1105.0
    for node in nodes:
        node.exit(second["attempt"], 143)
    settle(cluster, nodes)
    (spec,) = [s for s in nodes[0].beat()["start"] if s["attempt"] == history[2]["attempt"]]
    assert spec["env"]["WORLD_SIZE"] == "4" and spec["env"]["RANK"] == "0"
    # Work is counted at the size asked for (2 GPUs): 100 s at 8 GPUs did 400 s of it, and
    # the job has run 5 s at 4 GPUs (10 s) since: 1000 - 400 - 10 left.
    assert remaining_s(cluster, elastic) == pytest.approx(590.0)


def test_a_rebuilt_reconciler_keeps_the_size_and_the_work(cluster):
    nodes = [Node(cluster, "n0", 4), Node(cluster, "n1", 4)]
    elastic = cluster.submit("team-a", 2, ["train"], estimate_s=1000.0, min_gpus=2, max_gpus=8)
    settle(cluster, nodes)
    at(cluster, nodes, 1100.0)
    cluster.app.state.reconciler().rebuild("the test asks")
    reconciler = cluster.app.state.reconciler()
    i = reconciler.cluster.index[elastic]
    assert reconciler.cluster.gpus[i] == 8
    assert remaining_s(cluster, elastic) == pytest.approx(600.0)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"min_gpus": 4}, "min_gpus"),  # more than it asks
        ({"min_gpus": 2, "max_gpus": 7}, "step_gpus"),
        ({"min_gpus": 1, "max_gpus": 8, "scaling": 1.5}, "scaling"),
    ],
)
def test_bad_elastic_sizes_are_refused_with_the_field(cluster, extra, field):
    body = {"gpus": 2, "queue": "team-a", "command": ["x"], **extra}
    response = cluster.call("POST", "/v1/jobs", cluster.teams["team-a"], json=body)
    assert response.status_code == 422, response.text
    assert field in response.text
