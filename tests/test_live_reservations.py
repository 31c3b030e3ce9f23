"""Reservations through the HTTP API with scripted nodes (no processes) and the server's
fake clock, on SQLite and PostgreSQL: a window stops the jobs on its nodes at its start and
frees them at its end; a queue's reservation keeps other queues off; bad input gets 422
naming the field, another team 403."""

from __future__ import annotations

import pytest

from corral.cli.live import parse_when_s
from corral.errors import InputError
from corral.fleet import fleet_from_text
from tests.support.live_cluster import Cluster, Node, at, attempts, settle


@pytest.fixture
def cluster(database_url, tmp_path):
    c = Cluster(database_url, tmp_path)
    yield c
    c.engine.dispose()


def reserve(cluster: Cluster, **body) -> dict:
    response = cluster.call("POST", "/v1/reservations", cluster.admin, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_a_maintenance_window_stops_its_nodes_jobs_at_its_start_and_frees_them_at_its_end(cluster):
    n0, n1 = Node(cluster, "n0", 4), Node(cluster, "n1", 4)
    nodes = [n0, n1]
    first = cluster.submit("team-a", 4, ["train"])  # no estimate: a year, as far as anyone knows
    second = cluster.submit("team-a", 4, ["train"])
    settle(cluster, nodes)
    assert len(n0.running) == len(n1.running) == 1
    on_n1 = first if attempts(cluster, first)[0]["placement"][0][0] == "n1" else second
    reserve(
        cluster, nodes=["n1"], maintenance=True, start_s=1010.0, duration_s=20.0, notice_s=0.0, name="fix"
    )
    at(cluster, nodes, 1010.0)
    settle(cluster, nodes)
    (stopped,) = attempts(cluster, on_n1)
    assert stopped["ended"] == "reserved" and stopped["state"] == "stopping"
    n1.exit(n1.running[0], -15)
    settle(cluster, nodes)
    assert cluster.job(on_n1)["state"] == "pending" and n1.running == []  # (n1 is nobody's now)
    listed = cluster.call("GET", "/v1/reservations", cluster.teams["team-b"]).json()
    assert [(w["name"], w["maintenance"], w["held_nodes"]) for w in listed] == [("fix", True, ["n1"])]
    at(cluster, nodes, 1030.0)
    settle(cluster, nodes)
    assert len(n1.running) == 1 and cluster.job(on_n1)["state"] == "running"


def test_a_queues_reservation_keeps_other_queues_off_and_lets_short_jobs_finish_first(cluster):
    node = Node(cluster, "n0", 4)
    reserve(cluster, gpus=4, queue="team-b", start_s=1100.0, duration_s=100.0)  # notice: a day
    late = cluster.submit("team-a", 4, ["x"], estimate_s=200.0)  # would run into the window
    settle(cluster, [node])
    assert node.running == [] and cluster.job(late)["state"] == "pending"
    cluster.call("POST", f"/v1/jobs/{late}/cancel", cluster.teams["team-a"])
    short = cluster.submit("team-a", 4, ["x"], estimate_s=50.0)  # ends by 1100: it may
    settle(cluster, [node])
    assert cluster.job(short)["state"] == "running"
    node.exit(node.running[0], 0)
    at(cluster, [node], 1100.0)
    theirs = cluster.submit("team-a", 4, ["x"], estimate_s=1.0)
    ours = cluster.submit("team-b", 4, ["x"])
    settle(cluster, [node])
    assert cluster.job(ours)["state"] == "running" and cluster.job(theirs)["state"] == "pending"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"nodes": ["n0"], "gpus": 4, "maintenance": True}, None),
        ({"nodes": ["n0"]}, None),
        ({"nodes": ["n9"], "maintenance": True}, "nodes"),
        ({"gpus": 64, "maintenance": True}, "gpus"),
        ({"gpus": 4, "queue": "nobody"}, "queue"),
        ({"gpus": 4, "maintenance": True, "pool": "other"}, "pool"),
        ({"gpus": 4, "maintenance": True, "duration_s": 0}, "duration_s"),
    ],
)
def test_a_bad_reservation_gets_422(cluster, body, field):
    Node(cluster, "n0", 4)
    response = cluster.call(
        "POST", "/v1/reservations", cluster.admin, json={"start_s": 0, "duration_s": 10} | body
    )
    assert response.status_code == 422, response.text
    if field is not None:
        assert field in str(response.json()["detail"][0]["loc"])


def test_only_the_admin_reserves_and_names_are_unique(cluster):
    Node(cluster, "n0", 4)
    body = {"gpus": 4, "maintenance": True, "start_s": 0, "duration_s": 10, "name": "fix"}
    assert cluster.call("POST", "/v1/reservations", cluster.teams["team-a"], json=body).status_code == 403
    reserve(cluster, **body)
    assert cluster.call("POST", "/v1/reservations", cluster.admin, json=body).status_code == 409
    assert cluster.call("DELETE", "/v1/reservations/fix", cluster.admin).status_code == 200
    assert cluster.call("DELETE", "/v1/reservations/fix", cluster.admin).status_code == 404


def test_start_times_read_as_now_a_duration_from_now_or_a_local_time():
    assert parse_when_s("now", 1000.0) == 1000.0
    assert parse_when_s("+2h", 1000.0) == 1000.0 + 7200
    assert parse_when_s("1970-01-01T00:00+00:00", 5.0) == 0.0
    with pytest.raises(InputError) as err:
        parse_when_s("tomorrow", 0.0)
    assert err.value.field == "start"


def test_the_fleet_export_gives_the_simulator_the_reservations_from_the_first_submission(cluster):
    """`corral fleet export` after `corral history`: the window on the host it holds, its
    times counted from the first submission, as the history counts the jobs'."""
    nodes = [Node(cluster, "n0", 4), Node(cluster, "n1", 4)]
    job = cluster.submit("team-a", 4, ["x"], estimate_s=5.0)  # (submitted at 1000)
    reserve(cluster, nodes=["n1"], maintenance=True, start_s=1100.0, duration_s=50.0, name="fix")
    reserve(cluster, gpus=4, queue="team-b", start_s=500.0, duration_s=100.0, name="over")
    settle(cluster, nodes)
    running = next(n for n in nodes if n.running)
    at(cluster, nodes, 1005.0)
    running.exit(running.running[0], 0)
    settle(cluster, nodes)
    assert cluster.job(job)["state"] == "succeeded"
    text = cluster.call("GET", "/v1/fleet", cluster.admin).text
    fleet = fleet_from_text(text)
    (spec,) = fleet.reservations
    assert (spec.name, spec.start_s, spec.duration_s, spec.hosts, spec.maintenance) == (
        "fix",
        100,
        50,
        ("1",),
        True,
    )
    assert "# left out: reservation over (over before the first job)" in text
