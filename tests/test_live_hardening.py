"""The live cluster's defects found by trying it as an attacker would, each a test: one
client's input never stops the scheduler for the others, nothing answers 500, an exit once
acknowledged is final, and a node cut off from the server stops its own jobs (fencing)."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from corral.live.db import Attempt
from corral.live.rank import Rank, alive
from tests.support.live_cluster import Cluster, logs


@pytest.fixture
def cluster(database_url, tmp_path):
    c = Cluster(database_url, tmp_path)
    yield c
    c.engine.dispose()


def register(cluster: Cluster, name: str, gpus: int):
    return cluster.call("POST", "/v1/agent/register", cluster.node, json={"name": name, "gpus": gpus})


def heartbeat(cluster: Cluster, name: str) -> dict:
    return cluster.call("POST", f"/v1/agent/{name}/heartbeat", cluster.node, json={"running": []}).json()


def attempts(cluster: Cluster, job: str) -> list[dict]:
    return cluster.job(job)["attempts"]


@pytest.mark.parametrize("rebuild_by", ["crash", "config"])
def test_an_acknowledged_exit_is_final_whatever_rebuilds_the_reconciler(cluster, rebuild_by):
    """The agent reports exit 0, and before the reconciler's next step the server dies (a
    new reconciler over the same database) or takes a policy change: the job has succeeded
    in its one attempt, and is never started again."""
    register(cluster, "n0", 4)
    job = cluster.submit("team-a", 2, ["train"])
    cluster.app.state.step()
    (spec,) = heartbeat(cluster, "n0")["start"]
    cluster.call("POST", f"/v1/agent/attempts/{spec['attempt']}/started", cluster.node)
    exited = cluster.call(
        "POST",
        f"/v1/agent/attempts/{spec['attempt']}/exited",
        cluster.node,
        json={"exit_code": 0, "node": "n0"},
    )
    assert exited.json()["state"] == "exited"
    if rebuild_by == "crash":
        cluster.restart()
    else:
        assert cluster.call("PUT", "/v1/config", cluster.admin, json={"policy": "fifo"}).status_code == 200
    for _ in range(3):
        cluster.app.state.step()
    detail = cluster.job(job)
    assert detail["state"] == "succeeded" and [a["ended"] for a in detail["attempts"]] == ["completed"]


def test_a_policy_change_keeps_the_queues(cluster):
    answer = cluster.call("PUT", "/v1/config", cluster.admin, json={"policy": "fifo"})
    assert answer.status_code == 200 and answer.json()["queues"] == ["team-a", "team-b"]
    cluster.submit("team-a", 1, ["true"])  # (its queue still exists)
    assert cluster.call("PUT", "/v1/config", cluster.admin, json={}).json()["queues"] == ["team-a", "team-b"]


def test_a_job_no_node_can_hold_waits_with_its_reason_and_blocks_no_one(cluster):
    """Accepted while no node was up, a 100-GPU job can never be placed on the 4-GPU node
    that joins: it waits, saying why; a 1-GPU job behind it runs; cancelling it works."""
    big = cluster.submit("team-a", 100, ["train"])
    cluster.app.state.step()
    register(cluster, "n0", 4)
    small = cluster.submit("team-a", 1, ["true"])
    for _ in range(2):
        cluster.app.state.step()
    assert cluster.job(small)["state"] == "running"
    (reason,) = cluster.call("GET", f"/v1/jobs/{big}/reasons", cluster.admin).json()
    assert reason["kind"] == "unplaceable" and "100 GPUs" in reason["reason"] and "only 4" in reason["reason"]
    cluster.call("POST", f"/v1/jobs/{big}/cancel", cluster.admin)
    cluster.app.state.step()
    assert cluster.job(big)["state"] == "cancelled"


def test_a_node_back_with_fewer_gpus_is_a_host_lost_and_a_host_joined(cluster):
    """n0's agent comes back with 2 GPUs while a 4-GPU job runs there: that attempt ends
    as failed, the job waits (it no longer fits: it says so), and new jobs run."""
    register(cluster, "n0", 4)
    big = cluster.submit("team-a", 4, ["train"])
    cluster.app.state.step()
    assert register(cluster, "n0", 2).status_code == 200
    small = cluster.submit("team-a", 1, ["true"])
    for _ in range(2):
        cluster.app.state.step()
    assert [a["ended"] for a in attempts(cluster, big)] == ["failed"]
    assert cluster.job(big)["state"] == "pending" and cluster.job(small)["state"] == "running"
    answer = cluster.call("GET", f"/v1/jobs/{big}/reasons", cluster.admin)
    assert answer.status_code == 200 and "only 2" in answer.json()[-1]["reason"]
    assert heartbeat(cluster, "n0")["start"][0]["job_id"] == small


@pytest.mark.parametrize(
    "body, field",
    [
        ({"gpus": True, "command": ["x"]}, "gpus"),
        ({"gpus": 1, "preemptible": 1, "command": ["x"]}, "preemptible"),
        ({"gpus": 1, "command": ["echo", "a\udfffb"]}, "command"),
        ({"gpus": 1, "command": ["echo", "a\x00b"]}, "command"),
        ({"gpus": 1, "name": "x\x00", "command": ["x"]}, "name"),
        ({"gpus": 1, "command": ["x" * (10 * 1024 * 1024)]}, "command"),
        ({"gpus": 1, "command": ["x" * 100_000] * 11}, "command"),
    ],
)
def test_a_submission_that_cannot_be_stored_or_run_is_refused_with_422(cluster, body, field):
    raw = json.dumps({"queue": "team-a", **body})  # (ASCII, a lone surrogate as its escape)
    response = cluster.call(
        "POST", "/v1/jobs", cluster.teams["team-a"], content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422 and field in str(response.json()["detail"]), response.text[:300]
    assert cluster.call("GET", "/v1/jobs", cluster.admin).json() == []


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/v1/jobs/%00"),
        ("POST", "/v1/jobs/%00/cancel"),
        ("GET", "/v1/jobs?team=%00"),
        ("POST", "/v1/nodes/%00/cordon"),
        ("POST", "/v1/agent/%00/heartbeat"),
        ("GET", "/v1/jobs/%ED%BF%BF"),
        ("DELETE", "/v1/services/%00"),
    ],
)
def test_a_nul_byte_or_bad_utf8_in_a_path_or_query_is_a_422(cluster, method, path):
    response = cluster.call(method, path, cluster.admin, json={"running": []})
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("attempt", [0, 2**31, 2**63, -1])
@pytest.mark.parametrize("call", ["started", "exited", "log", "checkpoint"])
def test_attempt_ids_beyond_the_column_are_a_422(cluster, attempt, call):
    body = {"exited": {"exit_code": 0}, "log": {"text": "x"}}.get(call, {})
    response = cluster.call("POST", f"/v1/agent/attempts/{attempt}/{call}", cluster.node, json=body)
    assert response.status_code == 422, response.text


def test_a_register_with_a_nul_byte_is_a_422(cluster):
    assert register(cluster, "n\x000", 4).status_code == 422
    assert cluster.call("GET", "/v1/nodes", cluster.admin).json() == []


def test_the_launcher_fences_its_job_once_the_lease_runs_out(tmp_path):
    """A real process under the launcher, its lease renewed twice, then no more: within the
    lease it runs; past it, SIGTERM (the job's trap says so), then SIGKILL after its grace,
    and the rank says it was fenced. Nothing of the job outlives lease + grace."""
    lease = tmp_path / "lease"
    lease.write_text(repr(time.monotonic() + 1.0))
    rank = Rank(tmp_path / "1")
    command = ["sh", "-c", "trap 'echo term' TERM; echo up; while :; do sleep 0.05; done"]
    spec = {"attempt": 1, "job_id": "1", "command": command, "gpu_ids": [0], "grace_s": 1.0, "env": {}}
    rank.start({**spec, "lease": str(lease)}, tmp_path / "checkpoints")
    pid = int((tmp_path / "1" / "pid").read_text())
    until = time.monotonic() + 30.0
    while rank.exit_code() is None and time.monotonic() < until:
        time.sleep(0.05)
    fenced_by = time.monotonic()
    assert rank.exit_code() == -int(signal.SIGKILL) and rank.fenced
    output = (tmp_path / "1" / "output.log").read_text()
    assert "up" in output and "term" in output and "lost its lease" in output
    assert not alive(pid) and fenced_by < until
    group, gone = rank.group(), False
    for _ in range(100):  # (its killed processes are reaped by init)
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            gone = True
            break
        time.sleep(0.05)
    assert gone


def test_a_fenced_exit_is_a_lost_node_not_the_jobs_end(cluster, tmp_path):
    """n0's agent cannot reach the server; its launcher stops the job when the lease runs
    out and the agent, back, reports the exit as fenced: the attempt ends as failed and the
    job runs again, rather than ending as failed with exit 143."""
    agent = cluster.agent("n0", 4)
    agent.register()
    job = cluster.submit(
        "team-a", 1, ["sh", "-c", "trap 'exit 143' TERM; echo up; while :; do sleep 0.05; done"]
    )
    cluster.run_until([agent], lambda: "up" in logs(cluster, job))
    agent.lease.write_text(repr(time.monotonic() - 1.0))  # (as if no renewal for a whole lease)
    (attempt,) = [a["attempt"] for a in attempts(cluster, job)]
    until = time.monotonic() + 20.0
    while Rank(agent.dir / str(attempt)).exit_code() is None and time.monotonic() < until:
        time.sleep(0.05)
    cluster.run_until([agent], lambda: len(attempts(cluster, job)) == 2)
    first = attempts(cluster, job)[0]
    assert first["ended"] == "failed" and first["exit_code"] == 143
    assert cluster.job(job)["state"] == "running"
    cluster.call("POST", f"/v1/jobs/{job}/cancel", cluster.admin)
    cluster.run_until([agent], lambda: cluster.job(job)["state"] == "cancelled" and not agent._attempts())


def test_the_server_waits_out_lease_and_grace_before_it_gives_a_job_away(cluster):
    """A silent node with a 30 s-grace job is not down at the 30 s heartbeat timeout, nor
    at lease + grace; only past them, and only then does the job start on n1."""
    register(cluster, "n0", 4)
    job = cluster.submit("team-a", 4, ["train"], grace_s=30.0)
    cluster.app.state.step()
    heartbeat(cluster, "n0")
    register(cluster, "n1", 4)
    for silence in (31.0, 5.0 + 30.0 - 0.5):
        cluster.clock.t = 1000.0 + silence
        heartbeat(cluster, "n1")
        cluster.app.state.step()
        assert len(attempts(cluster, job)) == 1, silence
    cluster.clock.t = 1000.0 + 5.0 + 30.0 + 0.5
    heartbeat(cluster, "n1")
    cluster.app.state.step()
    first, second = attempts(cluster, job)
    assert first["ended"] == "failed" and second["placement"][0][0] == "n1"
    with Session(cluster.engine) as session:
        assert session.scalar(select(Attempt.state).where(Attempt.id == first["attempt"])) == "ended"


def test_a_team_token_can_be_rotated_revoked_and_made_to_expire(cluster):
    """Rotation: the old token is refused at once and the new one works. Revocation: the
    token stops working, the team's jobs stay. Expiry: refused from its instant on."""
    old = cluster.teams["team-a"]
    job = cluster.submit("team-a", 1, ["true"])
    rotated = cluster.call("POST", "/v1/teams/team-a/rotate", cluster.admin).json()["token"]
    assert cluster.call("GET", "/v1/jobs", old).status_code == 401
    assert [j["job_id"] for j in cluster.call("GET", "/v1/jobs", rotated).json()] == [job]
    assert cluster.call("POST", "/v1/teams/team-a/rotate", rotated).status_code == 403
    assert cluster.call("POST", "/v1/teams/admin/rotate", cluster.admin).status_code == 404
    assert cluster.call("POST", "/v1/teams/team-a/revoke", cluster.admin).status_code == 200
    assert cluster.call("GET", "/v1/jobs", rotated).status_code == 401
    assert cluster.job(job)["state"] == "pending"
    body = {"expires_s": 60.0}
    expiring = cluster.call("POST", "/v1/teams/team-a/rotate", cluster.admin, json=body).json()["token"]
    cluster.clock.t += 59.0
    assert cluster.call("GET", "/v1/jobs", expiring).status_code == 200
    cluster.clock.t += 1.0
    answer = cluster.call("GET", "/v1/jobs", expiring)
    assert answer.status_code == 401 and "expired" in answer.text
    listed = {t["team"]: t for t in cluster.call("GET", "/v1/teams", cluster.admin).json()}
    assert set(listed) == {"team-a", "team-b"} and listed["team-a"]["token_expires_s"] == 1060.0
    assert cluster.call("POST", "/v1/teams", cluster.admin, json={"name": "list"}).status_code == 422


def test_a_cut_off_node_never_runs_its_job_alongside_the_copy_given_away(cluster, tmp_path):
    """Real processes, and a server clock that follows the real one. The job holds an
    exclusive lock on a shared file for as long as any of its processes lives; a copy that
    cannot take it at once writes 'overlap'. n0's agent stops reaching the server: its
    launcher stops the job when the lease runs out, and only after that does the server
    give the job to n1, whose copy takes the lock. n0, back, reports its copy as fenced."""
    cluster.config.heartbeat_timeout_s = 2.0  # (down after max(2 s, lease 5 s + grace 1 s))
    cluster.restart()
    lock, overlap = tmp_path / "lock", tmp_path / "overlap"
    body = f"flock -n {lock} sh -c 'echo up; while :; do sleep 0.05; done' || echo overlap >> {overlap}"
    n0, n1 = cluster.agent("n0", 4), cluster.agent("n1", 4)
    real_start = time.monotonic()

    def run_until(agents, done, limit_s: float = 40.0) -> None:
        until = time.monotonic() + limit_s
        while not done():
            assert time.monotonic() < until, "timed out"
            cluster.clock.t = 1000.0 + time.monotonic() - real_start
            cluster.app.state.step()
            for agent in agents:
                agent.tick()
            time.sleep(0.05)

    n0.register()
    job = cluster.submit("team-a", 4, ["sh", "-c", body], grace_s=1.0)
    run_until([n0], lambda: "up" in logs(cluster, job))
    n1.register()
    (first,) = [a["attempt"] for a in attempts(cluster, job)]

    def second_log() -> str:
        answer = cluster.call("GET", f"/v1/jobs/{job}/logs?attempt=2", cluster.admin)  # (the job's second)
        return answer.text if answer.status_code == 200 else ""

    run_until([n1], lambda: overlap.exists() or "up" in second_log())
    assert Rank(n0.dir / str(first)).fenced and not overlap.exists()
    run_until([n0, n1], lambda: attempts(cluster, job)[0]["ended"] is not None)
    assert attempts(cluster, job)[0]["ended"] == "failed" and cluster.job(job)["state"] == "running"
    cluster.call("POST", f"/v1/jobs/{job}/cancel", cluster.admin)
    run_until([n0, n1], lambda: cluster.job(job)["state"] == "cancelled" and not n1._attempts())
    assert not overlap.exists()
