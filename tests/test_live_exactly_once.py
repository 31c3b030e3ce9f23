"""Exactly once, and nothing stops the step: a live cluster driven through its whole API by
random sequences of submissions (some no node could ever hold), node joins, silences,
reshapes, exits, cancellations, policy changes, crashes of the server and steps of its
reconciler, on a fake clock, with the agents played by the test over HTTP. At every point:

- an exit that was acknowledged is never followed by another attempt of the same job;
- no job has two attempts that may hold processes at once;
- the step never raises, and every answer of the API is below 500;
- every pending job waits with a reason.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from corral.live.db import ATTEMPT_RUNNING, COMMITTED, Attempt, Base, Job, Meta, Node, Team, connect, migrate
from corral.live.reconciler import Config
from corral.live.server import bootstrap, create_app
from tests.support.live import Clock

POLICIES = ["fifo", "fifo-backfill", "priority", "fair", "las"]
FENCE_S, GRACE_S, TIMEOUT_S = 10.0, 5.0, 20.0
DOWN_S = max(TIMEOUT_S, FENCE_S + GRACE_S + 1.0) + 1.0  # (silent this long: surely down)

operations = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), st.integers(1, 12), st.integers(0, 2)),
        st.tuples(st.just("join"), st.integers(0, 2), st.sampled_from([2, 4])),
        st.tuples(st.just("silence"), st.integers(0, 2)),
        st.tuples(st.just("exit"), st.integers(0, 30), st.sampled_from([0, 0, 1])),
        st.tuples(st.just("cancel"), st.integers(0, 30)),
        st.tuples(st.just("policy"), st.sampled_from(POLICIES)),
        st.tuples(
            st.just("crash"),
        ),
        st.tuples(st.just("wait"), st.sampled_from([0.5, 3.0, DOWN_S])),
        st.tuples(
            st.just("agents"),
        ),
        st.tuples(
            st.just("step"),
        ),
        st.tuples(
            st.just("step"),
        ),
    ),
    min_size=5,
    max_size=40,
)


class Live:
    """A server on a fake clock, its reconciler stepped by hand, and agents played by calls."""

    def __init__(self, engine, data_dir: Path) -> None:
        self.engine, self.data_dir = engine, data_dir
        self.clock = Clock(1000.0)
        self.config = Config("fifo", heartbeat_timeout_s=TIMEOUT_S, fence_s=FENCE_S, fence_margin_s=1.0)
        self.admin, self.node = bootstrap(engine)
        self.http = self._app()
        self.alive: dict[str, int] = {}  # node -> its GPUs, while its agent answers
        self.acknowledged: dict[str, int] = {}  # job -> the attempt whose exit was taken

    def _app(self) -> TestClient:
        app = create_app(self.engine, self.config, self.data_dir, self.clock, reconcile_every_s=None)
        self.app = app
        return TestClient(app, raise_server_exceptions=False)

    def call(self, method: str, path: str, token: str, **kwargs):
        response = self.http.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs)
        assert response.status_code < 500, (method, path, response.text)
        return response

    def crash(self) -> None:
        """The server is killed and started again over the same database."""
        self.http = self._app()

    def agents(self) -> None:
        """Every answering agent heartbeats, starts what it is given, and ends what it is
        told to stop (SIGTERM: it exits 143)."""
        for name in sorted(self.alive):
            answer = self.call("POST", f"/v1/agent/{name}/heartbeat", self.node, json={"running": []})
            if answer.status_code == 404:  # (marked down meanwhile: it joins again)
                self.call(
                    "POST", "/v1/agent/register", self.node, json={"name": name, "gpus": self.alive[name]}
                )
                continue
            work = answer.json()
            for spec in work["start"]:
                self.call("POST", f"/v1/agent/attempts/{spec['attempt']}/started", self.node)
            for spec in work["stop"]:
                self.exit(spec["attempt"], 143, name)

    def exit(self, attempt: int, code: int, node: str) -> None:
        view = self.call(
            "POST", f"/v1/agent/attempts/{attempt}/exited", self.node, json={"exit_code": code, "node": node}
        ).json()
        if view["state"] == "exited" and not view["ended"]:
            with Session(self.engine) as session:
                job = session.get(Job, session.get(Attempt, attempt).job).job_id
            self.acknowledged.setdefault(job, attempt)

    def apply(self, op: tuple) -> None:
        kind = op[0]
        if kind == "submit":
            body = {"gpus": op[1], "priority": op[2], "command": ["train"], "grace_s": GRACE_S}
            self.call("POST", "/v1/jobs", self.admin, json=body)
        elif kind == "join":
            name = f"n{op[1]}"
            answer = self.call(
                "POST", "/v1/agent/register", self.node, json={"name": name, "gpus": op[2], "pool": "default"}
            )
            if answer.status_code == 200:
                self.alive[name] = op[2]
        elif kind == "silence":
            self.alive.pop(f"n{op[1]}", None)
        elif kind == "exit":
            with Session(self.engine) as session:
                live = list(
                    session.scalars(
                        select(Attempt).where(Attempt.state == ATTEMPT_RUNNING).order_by(Attempt.id)
                    )
                )
            if live:
                attempt = live[op[1] % len(live)]
                for node, _ in attempt.placement:
                    if node in self.alive:
                        self.exit(attempt.id, op[2], node)
        elif kind == "cancel":
            jobs = self.call("GET", "/v1/jobs", self.admin).json()
            if jobs:
                self.call("POST", f"/v1/jobs/{jobs[op[1] % len(jobs)]['job_id']}/cancel", self.admin)
        elif kind == "policy":
            self.call("PUT", "/v1/config", self.admin, json={"policy": op[1]})
        elif kind == "crash":
            self.crash()
        elif kind == "wait":
            self.clock.t += op[1]
        elif kind == "agents":
            self.agents()
        elif kind == "step":
            self.app.state.step()  # (must not raise)

    def check(self) -> None:
        with Session(self.engine) as session:
            attempts: dict[str, list[Attempt]] = {}
            for attempt in session.scalars(select(Attempt).order_by(Attempt.id)):
                attempts.setdefault(session.get(Job, attempt.job).job_id, []).append(attempt)
        for job, attempt_id in self.acknowledged.items():
            later = [a.id for a in attempts.get(job, []) if a.id > attempt_id]
            assert not later, f"job {job} ran again (attempts {later}) after its exit in {attempt_id}"
        for job, runs in attempts.items():
            holding = [a.id for a in runs if a.state in (COMMITTED, ATTEMPT_RUNNING)]
            assert len(holding) <= 1, f"job {job} has attempts {holding} at once"
        for row in self.call("GET", "/v1/jobs?state=pending", self.admin).json():
            reasons = self.call("GET", f"/v1/jobs/{row['job_id']}/reasons", self.admin).json()
            assert reasons, f"pending job {row['job_id']} has no reason"


def wipe(engine) -> None:
    with Session(engine) as session, session.begin():
        for table in (Attempt, Job, Node, Meta, Team):
            session.execute(delete(table))
        for name in ("demand", "moves", "services"):
            session.execute(Base.metadata.tables[name].delete())


def run(engine, data_dir: Path, ops: list[tuple]) -> None:
    wipe(engine)
    live = Live(engine, data_dir)
    for op in ops:
        live.apply(op)
        live.check()
    live.agents()
    live.app.state.step()
    live.check()


def test_exactly_once_and_nothing_stops_the_step(database_url, tmp_path):
    engine = connect(database_url)
    migrate(engine)
    examples = 40 if database_url.startswith("sqlite") else 15

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(operations)
    def check(ops):
        run(engine, tmp_path, ops)

    try:
        check()
    finally:
        engine.dispose()
