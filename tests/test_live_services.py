"""Services on the live cluster, with a fake clock and a fake executor: the live broker takes
the simulation's decisions on the fungible-fleet demand, replicas follow its targets, every
move is logged with its reason, a rebuilt reconciler repeats none, and lending holds GPUs out
of elastic growth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from corral.capacity.broker import Broker
from corral.capacity.scenario import STEP_S, fungible_fleet
from corral.capacity.sim import CapacityFleet, Service, simulate_capacity
from corral.capacity.training import ElasticJob
from corral.live.db import ATTEMPT_RUNNING, COMMITTED, EXITED, STOPPING, Attempt, Demand, Job, Move
from corral.live.db import Service as ServiceRow
from corral.live.reconciler import Config, Reconciler
from corral.live.services import REPLICA_PRIORITY, BrokerConfig
from tests.support.live import Clock, add_nodes, database

SCALE = 32  # the fungible fleet's demand and GPUs, divided


def scaled_fleet() -> CapacityFleet:
    """fungible-fleet's first day (a Monday, after its week of history) at 1/32: the same
    demand shapes, replica sizes and start-up times."""
    full = fungible_fleet(2.0)
    services = tuple(
        Service(
            s.name,
            s.demand_gpus[: int(86400 / STEP_S)] / SCALE,
            s.gpus_per_replica,
            s.startup_s,
            max(1, s.min_replicas // SCALE),
            history_gpus=s.history_gpus / SCALE,  # type: ignore[operator]
        )
        for s in full.services
    )
    job = ElasticJob("pretrain", 64, 384, 32, buffer_gpus=32)
    return CapacityFleet(full.gpus // SCALE, full.research_gpus // SCALE, services, job, STEP_S)


def run_executor(engine) -> None:
    """Replicas start at once and stop at once when asked."""
    with Session(engine) as session, session.begin():
        for attempt in session.scalars(select(Attempt).where(Attempt.state == STOPPING)):
            attempt.state, attempt.exit_code, attempt.end_s = EXITED, -15, attempt.stop_s
        for attempt in session.scalars(select(Attempt).where(Attempt.state == COMMITTED)):
            attempt.state = ATTEMPT_RUNNING


def add_service(engine, name: str, gpus: int, startup_s: float, floor: int, at_s: float) -> None:
    with Session(engine) as session, session.begin():
        session.add(
            ServiceRow(
                name=name,
                team="t",
                queue="default",
                gpus_per_replica=gpus,
                min_replicas=floor,
                max_replicas=100_000,
                replica_rps=1.0,  # (so demand in requests/s x GPUs per replica is GPUs)
                startup_s=startup_s,
                slo_latency_s=1.0,
                slo_percentile=0.99,
                command=["serve"],
                target_replicas=0,
                created_s=at_s,
            )
        )


def push(engine, name: str, t_s: float, gpus: float, per: int) -> None:
    with Session(engine) as session, session.begin():
        session.add(Demand(service=name, t_s=t_s, requests_per_s=gpus / per))


def live_targets(engine, names: list[str], first: int, steps: int) -> np.ndarray:
    """Each service's target replicas at each step, from the logged moves."""
    out = np.zeros((len(names), steps), dtype=np.int64)
    with Session(engine) as session:
        moves = list(session.scalars(select(Move).where(Move.kind == "replicas").order_by(Move.id)))
    for i, name in enumerate(names):
        for m in (m for m in moves if m.service == name):
            out[i, m.step - first :] = m.after
    return out


@pytest.mark.parametrize("kind", ["reactive", "predictive"])
def test_the_live_broker_takes_the_simulations_decisions(tmp_path, kind):
    """A day of fungible-fleet demand (at 1/32, after its week of history), one sample per
    5-minute step in the demand table, a reconciler stepped by a fake clock: every service's
    target replicas at every step are the simulation's, and the replica jobs follow them;
    the reconciler is rebuilt from the database twice on the way."""
    fleet = scaled_fleet()
    sim = simulate_capacity(fleet, Broker(kind))
    other = simulate_capacity(fleet, Broker("reactive" if kind == "predictive" else "predictive"))
    assert (sim.targets != other.targets).any()  # (the two brokers' decisions tell them apart)
    engine = database(f"sqlite:///{tmp_path}/live.db")
    add_nodes(engine, [8] * (fleet.gpus // 8))
    past = len(fleet.services[0].history_gpus)  # type: ignore[arg-type]
    for s in fleet.services:
        add_service(engine, s.name, s.gpus_per_replica, s.startup_s, s.min_replicas, 0.0)
        for k, gpus in enumerate(s.history_gpus):  # type: ignore[union-attr]
            push(engine, s.name, k * STEP_S, float(gpus), s.gpus_per_replica)
    clock = Clock()
    config = Config("priority", broker=BrokerConfig(kind, step_s=STEP_S))
    config.heartbeat_timeout_s = math.inf
    reconciler = Reconciler(engine, config, clock)
    steps = fleet.steps
    for t in range(steps):
        for s in fleet.services:
            push(engine, s.name, (past + t) * STEP_S, float(s.demand_gpus[t]), s.gpus_per_replica)
        clock.t = (past + t) * STEP_S + 1.0
        reconciler.step()
        run_executor(engine)
        if t in (100, 200):  # (a crash: a new reconciler from the database alone)
            reconciler = Reconciler(engine, config, clock)
    names = [s.name for s in fleet.services]
    assert np.array_equal(live_targets(engine, names, past, steps), sim.targets)
    with Session(engine) as session:
        for i, name in enumerate(names):
            live = session.scalars(
                select(Job).where(Job.service == name, Job.state.in_(("pending", "running")))
            ).all()
            live = [j for j in live if not j.cancel_requested]
            assert len(live) == sim.targets[i, -1]
            assert all(j.priority == REPLICA_PRIORITY and not j.preemptible for j in live)
        logged = [(m.step, m.service) for m in session.scalars(select(Move).where(Move.kind == "replicas"))]
        assert len(logged) == len(set(logged))  # (no move logged twice across the rebuilds)


# -- through the HTTP API, on SQLite and PostgreSQL -----------------------------------------


@pytest.fixture
def cluster(database_url, tmp_path):
    from tests.support.live_cluster import Cluster

    c = Cluster(
        database_url,
        tmp_path,
        policy="priority+elastic:hold=0",
        broker=BrokerConfig("reactive", step_s=10.0, headroom=0.0, notice_s=0.0),
    )
    yield c
    c.engine.dispose()


SERVICE = {
    "name": "chat",
    "queue": "team-a",
    "gpus_per_replica": 1,
    "min_replicas": 1,
    "max_replicas": 6,
    "replica_rps": 2.0,
    "startup_s": 0.0,
    "command": ["serve"],
}


def test_replicas_follow_demand_and_lent_gpus_come_back(cluster):
    """Two nodes of 4 GPUs. An elastic training job (2-8 GPUs, not preemptible) has them all
    until the chat service's demand asks for replicas: the broker (reactive, no headroom,
    steps of 10 s) sets 2 replicas for 3 requests/s, then 5 for 9; each time the training
    job gives back what the replicas need, and every move is logged with its reason. Demand
    gone, the service keeps its minimum and the job grows back."""
    from tests.support.live_cluster import Node, at, settle

    nodes = [Node(cluster, "n0", 4), Node(cluster, "n1", 4)]
    team = cluster.teams["team-a"]
    assert cluster.call("POST", "/v1/services", team, json=SERVICE).status_code == 201
    train = cluster.submit(
        "team-a", 2, ["train"], estimate_s=1e6, min_gpus=2, max_gpus=8, priority=10, preemptible=False
    )
    settle(cluster, nodes)
    reconciler = cluster.app.state.reconciler()

    def gpus(job: str) -> int:
        return reconciler.cluster.gpus[reconciler.cluster.index[job]]

    def replicas() -> dict[str, int]:
        (row,) = cluster.call("GET", "/v1/services", team).json()
        return {k: row[k] for k in ("target_replicas", "running", "pending")}

    # (the service holds its minimum from its creation, before any demand)
    assert replicas() == {"target_replicas": 1, "running": 1, "pending": 0}
    assert gpus(train) == 6  # (7 free: whole steps of 2)
    for t, rps, want, training in ((1010.0, 3.0, 2, 6), (1020.0, 9.0, 5, 2)):
        at(cluster, nodes, t)
        response = cluster.call("POST", "/v1/services/chat/demand", team, json={"requests_per_s": rps})
        assert response.status_code == 200, response.text
        settle(cluster, nodes)
        assert replicas() == {"target_replicas": want, "running": want, "pending": 0}
        assert gpus(train) == training
    ends = cluster.call("GET", "/v1/services/chat/endpoints", team).json()
    assert len(ends) == 5 and all(e["url"].startswith("http://127.0.0.1:3") for e in ends)
    spec = next(s for node in nodes for s in node.beat()["start"] if s["job_id"] == ends[0]["job_id"])
    assert ends[0]["url"].endswith(":" + spec["env"]["CORRAL_PORT"])
    moves = cluster.call("GET", "/v1/moves", team).json()
    scaled = [(m["before"], m["after"]) for m in moves if m["kind"] == "replicas"]
    assert scaled == [(0, 1), (1, 2), (2, 5)]
    assert moves[0]["reason"] == "no demand seen yet: min_replicas = 1"
    assert all("reactive: demand now" in m["reason"] for m in moves[1:] if m["kind"] == "replicas")
    # Demand gone: after the 6-step cooldown (a minute) the service is back to its minimum,
    # and the training job grows into what the replicas gave back.
    for k in range(1, 9):
        at(cluster, nodes, 1020.0 + 10 * k)
        cluster.call("POST", "/v1/services/chat/demand", team, json={"requests_per_s": 0.0})
        settle(cluster, nodes)
    assert replicas() == {"target_replicas": 1, "running": 1, "pending": 0}
    assert gpus(train) == 6  # (7 free: whole steps of 2)


def test_a_rebuilt_reconciler_repeats_no_move(cluster):
    from tests.support.live_cluster import Node, at, settle

    nodes = [Node(cluster, "n0", 4)]
    team = cluster.teams["team-a"]
    cluster.call("POST", "/v1/services", team, json=SERVICE)
    cluster.call("POST", "/v1/services/chat/demand", team, json={"requests_per_s": 5.0})
    settle(cluster, nodes)
    before = cluster.call("GET", "/v1/moves", team).json()
    cluster.app.state.reconciler().rebuild("the test asks")
    at(cluster, nodes, 1005.0)  # (within the same broker step)
    settle(cluster, nodes)
    assert cluster.call("GET", "/v1/moves", team).json() == before
    (row,) = cluster.call("GET", "/v1/services", team).json()
    assert row["target_replicas"] == 3 and row["running"] == 3


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/services", SERVICE | {"max_replicas": 0}, "max_replicas"),
        ("/v1/services", SERVICE | {"queue": "nope"}, "queue"),
        ("/v1/services", SERVICE | {"replica_rps": 0}, "replica_rps"),
        ("/v1/services", SERVICE | {"name": "a b"}, "name"),
        ("/v1/services/chat/demand", {"requests_per_s": 1.0, "samples": [[0, 1]]}, "requests_per_s"),
        ("/v1/services/chat/demand", {"samples": [[5000.0, 1.0]]}, "samples"),  # (in the future)
        ("/v1/services/chat/demand", {"requests_per_s": -1}, "requests_per_s"),
    ],
)
def test_bad_service_requests_get_422_with_the_field(cluster, path, body, field):
    team = cluster.teams["team-a"]
    cluster.call("POST", "/v1/services", team, json=SERVICE)
    response = cluster.call("POST", path, team, json=body)
    assert response.status_code == 422, response.text
    assert field in response.text


def test_a_team_sees_only_its_own_services(cluster):
    cluster.call("POST", "/v1/services", cluster.teams["team-a"], json=SERVICE)
    other = cluster.teams["team-b"]
    assert cluster.call("GET", "/v1/services", other).json() == []
    response = cluster.call("POST", "/v1/services/chat/demand", other, json={"requests_per_s": 1})
    assert response.status_code == 404
    assert cluster.call("DELETE", "/v1/services/chat", other).status_code == 404
    assert cluster.call("POST", "/v1/services", other, json=SERVICE).status_code == 403  # (team-a's queue)


def test_service_names_are_per_team_and_reveal_nothing(cluster):
    """Team B may call its service what team A calls its own: a 201, not a 409 that would
    tell B that A's exists. Each team sees, feeds and deletes only its own; the admin
    names one as team:name; a team sees only its own services' moves."""
    a, b = cluster.teams["team-a"], cluster.teams["team-b"]
    assert cluster.call("POST", "/v1/services", a, json=SERVICE).status_code == 201
    assert cluster.call("POST", "/v1/services", a, json=SERVICE).status_code == 409  # (its own)
    mine = cluster.call("POST", "/v1/services", b, json=SERVICE | {"queue": "team-b", "min_replicas": 2})
    assert mine.status_code == 201, mine.text
    assert [(s["name"], s["team"]) for s in cluster.call("GET", "/v1/services", b).json()] == [
        ("chat", "team-b")
    ]
    assert (
        cluster.call("POST", "/v1/services/team-a:chat/demand", b, json={"requests_per_s": 1}).status_code
        == 404
    )
    listed = cluster.call("GET", "/v1/services", cluster.admin).json()
    assert sorted((s["team"], s["min_replicas"]) for s in listed) == [("team-a", 1), ("team-b", 2)]
    ambiguous = cluster.call("GET", "/v1/services/chat/endpoints", cluster.admin)
    assert ambiguous.status_code == 404 and "team:chat" in ambiguous.text
    assert cluster.call("GET", "/v1/services/team-b:chat/endpoints", cluster.admin).status_code == 200
    cluster.call("POST", "/v1/agent/register", cluster.node, json={"name": "n0", "gpus": 8})
    for token in (a, b):
        assert (
            cluster.call("POST", "/v1/services/chat/demand", token, json={"requests_per_s": 3}).status_code
            == 200
        )
    cluster.app.state.step()  # (the broker sets both targets: a move each)
    for team, token in (("team-a", a), ("team-b", b)):
        moves = [m for m in cluster.call("GET", "/v1/moves", token).json() if m["kind"] == "replicas"]
        assert moves and {(m["service"], m["team"]) for m in moves} == {("chat", team)}
    replicas = {j["team"]: j["service"] for j in cluster.call("GET", "/v1/jobs", cluster.admin).json()}
    assert replicas == {"team-a": "chat", "team-b": "chat"}
    assert cluster.call("DELETE", "/v1/services/chat", b).json() == {
        "name": "chat",
        "team": "team-b",
        "removed": True,
    }
    assert [s["team"] for s in cluster.call("GET", "/v1/services", cluster.admin).json()] == ["team-a"]


def test_services_stored_before_names_were_per_team_are_moved_under_their_team(database_url):
    """A database at revision 0009 with a service, its demand, a replica and a move: after
    the migration each names the service as team:name."""
    from sqlalchemy import text

    from corral.live.db import connect, migrate

    engine = connect(database_url)
    try:
        migrate(engine, "0009")
        with engine.begin() as db:
            db.execute(
                text(
                    "INSERT INTO services (name, team, queue, gpus_per_replica, min_replicas, max_replicas,"
                    " replica_rps, startup_s, slo_latency_s, slo_percentile, command, target_replicas,"
                    " created_s, metrics_counter) VALUES ('chat', 'team-a', 'q', 1, 1, 2, 1.0, 0.0, 1.0,"
                    " 0.99, '[\"serve\"]', 1, 0.0, 'requests_total')"
                )
            )
            db.execute(text("INSERT INTO demand (service, t_s, requests_per_s) VALUES ('chat', 0.0, 3.0)"))
            db.execute(
                text(
                    "INSERT INTO moves (t_s, step, service, kind, before, after, reason) VALUES"
                    " (0.0, 0, 'chat', 'replicas', 0, 1, 'r'), (0.0, 0, '', 'lend', 0, 1, 'r')"
                )
            )
        migrate(engine)
        with engine.begin() as db:
            assert db.execute(text("SELECT name FROM services")).scalars().all() == ["team-a:chat"]
            assert db.execute(text("SELECT service FROM demand")).scalars().all() == ["team-a:chat"]
            moved = db.execute(text("SELECT service FROM moves ORDER BY id")).scalars().all()
            assert moved == ["team-a:chat", ""]
    finally:
        engine.dispose()


def test_a_target_beyond_the_pool_is_capped_and_says_so(cluster):
    """One node of 4 GPUs. A service of 2-GPU replicas with min_replicas 3 is held at 2
    replicas (4 GPUs) before any demand, and demand for 9 replicas (18 requests/s at 2 per
    replica) is capped at 2 as well, each move saying why, instead of leaving replicas
    pending for ever with no word."""
    from tests.support.live_cluster import Node, at, settle

    nodes = [Node(cluster, "n0", 4)]
    team = cluster.teams["team-a"]
    spec = SERVICE | {"gpus_per_replica": 2, "min_replicas": 3, "max_replicas": 20}
    assert cluster.call("POST", "/v1/services", team, json=spec).status_code == 201
    settle(cluster, nodes)
    (row,) = cluster.call("GET", "/v1/services", team).json()
    assert (row["target_replicas"], row["running"], row["pending"]) == (2, 2, 0)
    at(cluster, nodes, 1010.0)
    cluster.call("POST", "/v1/services/chat/demand", team, json={"requests_per_s": 18.0})
    settle(cluster, nodes)
    (row,) = cluster.call("GET", "/v1/services", team).json()
    assert (row["target_replicas"], row["running"], row["pending"]) == (2, 2, 0)
    first, second = [m for m in cluster.call("GET", "/v1/moves", team).json() if m["kind"] == "replicas"]
    assert first["reason"] == "no demand seen yet: min_replicas = 3; capped at 2: the pool has 4 GPUs"
    assert (second["before"], second["after"]) == (2, 2)
    assert second["reason"].endswith("-> 9 replicas (min 3, max 20); capped at 2: the pool has 4 GPUs")


def test_the_cli_says_what_demand_it_sent_and_when_the_broker_moved(monkeypatch):
    """`corral service demand` printed nothing; `corral moves` printed epoch seconds
    (1,796,659,828). Against canned answers of the API: the first says what it recorded,
    the second prints the time as a date and clock time, in local time."""
    import time

    from typer.testing import CliRunner

    from corral.cli import app
    from corral.cli import services as service_cli

    t_s = 1_796_659_828.0
    answers = {
        ("POST", "/v1/services/chat/demand"): {"name": "chat", "samples": 1},
        ("GET", "/v1/moves"): [
            {"time_s": t_s, "service": "chat", "kind": "replicas", "before": 0, "after": 2, "reason": "why"}
        ],
    }
    monkeypatch.setattr(service_cli, "_call", lambda _s, _t, method, path, **_: answers[(method, path)])
    runner = CliRunner()
    sent = runner.invoke(app, ["service", "demand", "chat", "12.5"], env={"COLUMNS": "200"})
    assert sent.exit_code == 0 and "service chat: 12.5 requests/s recorded" in sent.output, sent.output
    moved = runner.invoke(app, ["moves"], env={"COLUMNS": "200"})
    assert moved.exit_code == 0, moved.output
    assert time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t_s)) in moved.output
    assert "1,796,659,828" not in moved.output
