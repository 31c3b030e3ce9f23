"""A live server driven by hand over a real database: a fake clock, the API through a test
client, agents ticked by the test (real processes, fake GPUs) or scripted nodes that only
make the agents' calls."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from corral.live.agent import Agent
from corral.live.db import connect, migrate
from corral.live.reconciler import Config, Reconciler
from corral.live.server import bootstrap, create_app
from corral.quota import CohortSpec, QueueSpec
from tests.support.live import Clock

QUEUES = (QueueSpec("team-a", 8, cohort="c"), QueueSpec("team-b", 8, cohort="c"))
# An agent's lease, in real seconds (the agents here tick many times a second); a node whose
# jobs have the default 30 s grace is down after FENCE_S + 30 s of silence.
FENCE_S = 5.0
LOST_S = FENCE_S + 30.0 + 1.0


class Cluster:
    """A server on `url` (stepped by hand) with a fake clock, an admin, a node token and two
    teams, each allowed its own queue."""

    def __init__(self, url: str, data_dir: Path, policy: str = "priority", broker=None) -> None:
        self.engine = connect(url)
        migrate(self.engine)
        self.clock = Clock(1000.0)
        self.config = Config(
            policy, QUEUES, (CohortSpec("c"),), broker=broker, fence_s=FENCE_S, fence_margin_s=0.0
        )
        self.data_dir = data_dir
        self.restart()
        self.admin, self.node = bootstrap(self.engine)
        self.teams = {}
        for team in ("team-a", "team-b"):
            out = self.call("POST", "/v1/teams", self.admin, json={"name": team, "queues": [team]})
            self.teams[team] = out.json()["token"]
        self.data_dir = data_dir

    def restart(self) -> None:
        """A server (and reconciler) started anew over the same database, as after a crash."""
        self.app = create_app(self.engine, self.config, self.data_dir, self.clock, reconcile_every_s=None)
        self.http = TestClient(self.app, raise_server_exceptions=False)

    def call(self, method: str, path: str, token: str | None, **kwargs):
        headers = kwargs.pop("headers", {}) | ({} if token is None else {"Authorization": f"Bearer {token}"})
        return self.http.request(method, path, headers=headers, **kwargs)

    def agent(self, name: str, gpus: int) -> Agent:
        client = TestClient(self.app)
        return Agent(
            "http://test", self.node, self.data_dir / name, gpus, name=name, client=client, clock=self.clock
        )

    def submit(self, team: str, gpus: int, command: list[str], **extra) -> str:
        body = {"gpus": gpus, "queue": team, "command": command, **extra}
        response = self.call("POST", "/v1/jobs", self.teams[team], json=body)
        assert response.status_code == 201, response.text
        return response.json()["job_id"]

    def job(self, job_id: str) -> dict:
        return self.call("GET", f"/v1/jobs/{job_id}", self.admin).json()

    def run_until(self, agents: list[Agent], done, limit_s: float = 20.0) -> None:
        """Step the reconciler and tick the agents until `done()` (real processes need real
        milliseconds to start and end; bounded)."""
        until = time.monotonic() + limit_s
        while time.monotonic() < until:
            self.app.state.step()
            for agent in agents:
                agent.tick()
            if done():
                return
            time.sleep(0.02)
        raise AssertionError("timed out")


SHOW = (
    'echo "gpus=$CUDA_VISIBLE_DEVICES rank=$RANK node=$NODE_RANK world=$WORLD_SIZE local=$LOCAL_WORLD_SIZE"'
)


def logs(cluster, job: str) -> str:
    return cluster.call("GET", f"/v1/jobs/{job}/logs", cluster.admin).text


class Node:
    """An agent as the server sees it: register, heartbeat, and the attempt calls."""

    def __init__(self, cluster: Cluster, name: str, gpus: int) -> None:
        self.cluster, self.name = cluster, name
        self.running: list[int] = []
        self.post("/v1/agent/register", {"name": name, "gpus": gpus})

    def post(self, path: str, body: dict | None = None) -> dict:
        response = self.cluster.call("POST", path, self.cluster.node, json=body or {})
        assert response.status_code == 200, response.text
        return response.json()

    def beat(self) -> dict:
        """One heartbeat: start what it is given, report what it must stop as stopping."""
        work = self.post(f"/v1/agent/{self.name}/heartbeat", {"running": self.running})
        for spec in work["start"]:
            if spec["attempt"] not in self.running:
                self.running.append(spec["attempt"])
                self.post(f"/v1/agent/attempts/{spec['attempt']}/started")
        return work

    def checkpoint(self, attempt: int) -> None:
        self.post(f"/v1/agent/attempts/{attempt}/checkpoint")

    def exit(self, attempt: int, code: int) -> None:
        self.running.remove(attempt)
        self.post(f"/v1/agent/attempts/{attempt}/exited", {"exit_code": code, "node": self.name})


def attempts(cluster: Cluster, job: str) -> list[dict]:
    return cluster.job(job)["attempts"]


def remaining_s(cluster: Cluster, job: str) -> float:
    """The work the reconciler's state says `job` has left (its estimate less what it kept)."""
    reconciler: Reconciler = cluster.app.state.reconciler()
    assert reconciler.cluster is not None
    i = reconciler.cluster.index[job]
    return reconciler.cluster.view.remaining_s(i)


def at(cluster: Cluster, nodes: list[Node], t: float) -> None:
    """Time moves to `t`; the nodes heartbeat (they would have all along)."""
    cluster.clock.t = t
    for node in nodes:
        node.beat()


def settle(cluster: Cluster, nodes: list[Node]) -> None:
    for _ in range(3):
        cluster.app.state.step()
        for node in nodes:
            node.beat()
