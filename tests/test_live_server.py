"""The live server's contract, on SQLite and on PostgreSQL: who may do what (401, 403, 404),
what a bad request gets (422 naming the field, never a 500), and jobs run by real
processes under the agent, with fake GPUs."""

from __future__ import annotations

import os

import pytest

from corral.live.agent import Agent
from corral.live.db import connect, migrate
from corral.live.server import bootstrap
from tests.support.live import Clock
from tests.support.live_cluster import LOST_S, SHOW, Cluster, logs


@pytest.fixture
def cluster(database_url, tmp_path):
    c = Cluster(database_url, tmp_path)
    yield c
    c.engine.dispose()


def test_every_endpoint_wants_a_known_token(cluster):
    routes = [
        ("POST", "/v1/jobs"), ("GET", "/v1/jobs"), ("GET", "/v1/jobs/1"), ("POST", "/v1/jobs/1/cancel"),
        ("GET", "/v1/jobs/1/logs"), ("GET", "/v1/jobs/1/reasons"), ("POST", "/v1/teams"),
        ("GET", "/v1/nodes"),
        ("POST", "/v1/nodes/n/drain"), ("GET", "/v1/quota"), ("POST", "/v1/agent/register"),
        ("POST", "/v1/agent/n/heartbeat"), ("POST", "/v1/agent/attempts/1/started"),
        ("POST", "/v1/agent/attempts/1/exited"), ("POST", "/v1/agent/attempts/1/log"),
        ("POST", "/v1/agent/attempts/1/checkpoint"),
    ]  # fmt: skip
    for method, path in routes:
        for token in (None, "not-a-token"):
            response = cluster.call(method, path, token, json={})
            assert response.status_code == 401, (method, path, token, response.text)


def test_roles_and_teams_see_and_touch_only_their_own(cluster):
    a, b = cluster.teams["team-a"], cluster.teams["team-b"]
    job = cluster.submit("team-a", 1, ["true"])
    # a node token runs jobs, it does not submit or read them; a team does not administer
    assert (
        cluster.call("POST", "/v1/jobs", cluster.node, json={"gpus": 1, "command": ["x"]}).status_code == 403
    )
    assert cluster.call("GET", "/v1/jobs", cluster.node).status_code == 403
    assert cluster.call("GET", f"/v1/jobs/{job}", cluster.node).status_code == 403
    assert cluster.call("POST", "/v1/teams", a, json={"name": "x"}).status_code == 403
    assert cluster.call("POST", "/v1/nodes/n/drain", a).status_code == 403
    assert cluster.call("POST", "/v1/agent/register", a, json={"name": "n", "gpus": 1}).status_code == 403
    assert cluster.call("POST", "/v1/agent/attempts/1/exited", a, json={"exit_code": 0}).status_code == 403
    # another team's queue, jobs, logs and cancel
    body = {"gpus": 1, "queue": "team-a", "command": ["true"]}
    assert cluster.call("POST", "/v1/jobs", b, json=body).status_code == 403
    assert cluster.call("GET", "/v1/jobs", b).json() == []
    for method, path in (
        ("GET", f"/v1/jobs/{job}"),
        ("GET", f"/v1/jobs/{job}/logs"),
        ("POST", f"/v1/jobs/{job}/cancel"),
    ):
        assert cluster.call(method, path, b).status_code == 404
    assert [j["job_id"] for j in cluster.call("GET", "/v1/jobs", a).json()] == [job]
    assert [j["job_id"] for j in cluster.call("GET", "/v1/jobs", cluster.admin).json()] == [job]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"gpus": 0, "command": ["x"]}, "gpus"),
        ({"gpus": "many", "command": ["x"]}, "gpus"),
        ({"gpus": 1, "command": []}, "command"),
        ({"gpus": 1}, "command"),
        ({"gpus": 1, "command": ["x"], "queue": "nope"}, "queue"),
        ({"gpus": 64, "command": ["x"]}, "gpus"),  # more than any pool (one 8-GPU node)
        ({"gpus": 1, "command": ["x"], "estimate_s": -5}, "estimate_s"),
        ({"gpus": 1, "command": ["x"], "colour": "red"}, "colour"),
    ],
)
def test_a_bad_request_gets_422_naming_the_field(cluster, body, field):
    cluster.call("POST", "/v1/agent/register", cluster.node, json={"name": "n0", "gpus": 8})
    body = {"queue": "team-a", **body}
    response = cluster.call("POST", "/v1/jobs", cluster.teams["team-a"], json=body)
    assert response.status_code == 422, response.text
    assert field in str(response.json()["detail"])


def test_client_mistakes_never_get_a_500(cluster):
    a = cluster.teams["team-a"]
    for method, path, body in (
        ("GET", "/v1/jobs?state=lost", None), ("GET", "/v1/jobs/999", None),
        ("POST", "/v1/jobs/abc/cancel", None), ("GET", "/v1/jobs/1/logs?attempt=x", None),
        ("POST", "/v1/jobs", "not json"), ("POST", "/v1/jobs", [1, 2]),
    ):  # fmt: skip
        response = (
            cluster.call(method, path, a, content=body)
            if isinstance(body, str)
            else cluster.call(method, path, a, json=body)
        )
        assert 400 <= response.status_code < 500, (method, path, response.status_code, response.text)


# --- real processes, fake GPUs -----------------------------------------------------------


def test_jobs_get_disjoint_gpus_their_exit_codes_and_logs(cluster):
    agent = cluster.agent("n0", 4)
    agent.register()
    first = cluster.submit("team-a", 2, ["sh", "-c", SHOW + "; sleep 0.3"])
    second = cluster.submit("team-b", 2, ["sh", "-c", SHOW + "; exit 3"])
    ended = ("succeeded", "failed")
    cluster.run_until([agent], lambda: all(cluster.job(j)["state"] in ended for j in (first, second)))
    assert (cluster.job(first)["state"], cluster.job(first)["exit_code"]) == ("succeeded", 0)
    assert (cluster.job(second)["state"], cluster.job(second)["exit_code"]) == ("failed", 3)
    seen = [logs(cluster, j).split()[0] for j in (first, second)]
    assert sorted(seen) == ["gpus=0,1", "gpus=2,3"]
    assert "world=2 local=2" in logs(cluster, first)


def test_a_stop_sends_sigterm_then_sigkill_after_the_grace(cluster):
    """A job that ignores SIGTERM is killed once its grace has passed (on the agent's fake
    clock); one that exits on SIGTERM reports it."""
    agent = cluster.agent("n0", 4)
    agent.register()
    stubborn = cluster.submit(
        "team-a", 2, ["sh", "-c", "trap '' TERM; echo up; while :; do sleep 0.05; done"], grace_s=30
    )
    polite = cluster.submit(
        "team-b", 2, ["sh", "-c", "trap 'echo term; exit 143' TERM; echo up; while :; do sleep 0.05; done"]
    )
    cluster.run_until([agent], lambda: all("up" in logs(cluster, j) for j in (stubborn, polite)))
    for job in (stubborn, polite):
        assert cluster.call("POST", f"/v1/jobs/{job}/cancel", cluster.admin).status_code == 200
    cluster.run_until([agent], lambda: cluster.job(polite)["attempts"][0]["exit_code"] is not None)
    assert cluster.job(polite)["attempts"][0]["exit_code"] == 143 and "term" in logs(cluster, polite)
    cluster.run_until([agent], lambda: True)
    assert cluster.job(stubborn)["attempts"][0]["exit_code"] is None  # (still within its grace)
    cluster.clock.t += 31.0
    cluster.run_until([agent], lambda: cluster.job(stubborn)["attempts"][0]["exit_code"] is not None)
    assert cluster.job(stubborn)["attempts"][0]["exit_code"] == -9
    assert {cluster.job(j)["state"] for j in (stubborn, polite)} == {"cancelled"}


def test_a_checkpoint_marker_shortens_the_work_a_lost_node_loses(cluster, tmp_path):
    """A real process saves 20 s into its run (the marker file); its node is lost 35 s in:
    the attempt keeps the 20 s its checkpoint holds, where the model would keep nothing."""
    agent = cluster.agent("n0", 4)
    agent.register()
    go = tmp_path / "go"
    save = f'while [ ! -e {go} ]; do sleep 0.02; done; touch "$CORRAL_CHECKPOINT_DIR/.checkpoint-done"'
    job = cluster.submit("team-a", 1, ["sh", "-c", f"echo up; {save}; sleep 30"])
    cluster.run_until([agent], lambda: "up" in logs(cluster, job))
    cluster.clock.t += 20.0
    go.touch()
    cluster.run_until([agent], lambda: cluster.job(job)["attempts"][0]["checkpoint_s"] is not None)
    cluster.clock.t += 15.0 + LOST_S  # (then silent past the lease, the grace and the timeout)
    cluster.app.state.step()
    attempt = cluster.job(job)["attempts"][0]
    assert attempt["ended"] == "failed" and attempt["kept_s"] == 20.0
    cluster.call("POST", f"/v1/jobs/{job}/cancel", cluster.admin)
    cluster.run_until([agent], lambda: cluster.job(job)["state"] == "cancelled" and not agent._attempts())


def test_two_agents_run_an_8_plus_8_gang_with_its_ranks(cluster):
    agents = [cluster.agent(name, 8) for name in ("n0", "n1")]
    for agent in agents:
        agent.register()
    job = cluster.submit("team-a", 16, ["sh", "-c", SHOW + " master=$MASTER_ADDR:$MASTER_PORT; sleep 0.2"])
    cluster.run_until(agents, lambda: logs(cluster, job).count("gpus=") == 2)
    lines = sorted(line for line in logs(cluster, job).splitlines() if line.startswith("gpus="))
    assert lines[0].startswith("gpus=0,1,2,3,4,5,6,7 rank=0 node=0 world=16 local=8 master=127.0.0.1:")
    assert lines[1].startswith("gpus=0,1,2,3,4,5,6,7 rank=8 node=1 world=16 local=8 master=127.0.0.1:")
    assert lines[0].split("master=")[1] == lines[1].split("master=")[1]


def test_a_silent_node_is_marked_down_and_its_jobs_wait_again(cluster):
    """Past the heartbeat timeout the node is down; its attempt ends as failed and the job
    waits again, as the simulator's host failures leave it. The agent, back, registers
    again, is told to stop what the cluster gave up, and the job runs anew."""
    agent = cluster.agent("n0", 4)
    agent.register()
    job = cluster.submit("team-a", 2, ["sh", "-c", "echo up; sleep 30"])
    cluster.run_until([agent], lambda: "up" in logs(cluster, job))
    cluster.clock.t += LOST_S  # (no heartbeat for longer than the lease and the job's grace)
    cluster.app.state.step()
    nodes = cluster.call("GET", "/v1/nodes", cluster.admin).json()
    assert [n["state"] for n in nodes] == ["down"]
    detail = cluster.job(job)
    assert detail["state"] == "pending" and detail["attempts"][0]["ended"] == "failed"
    cluster.run_until([agent], lambda: len(cluster.job(job)["attempts"]) == 2)
    assert [n["state"] for n in cluster.call("GET", "/v1/nodes", cluster.admin).json()] == ["up"]
    cluster.run_until(
        [agent], lambda: logs(cluster, job).count("up") >= 1 and cluster.job(job)["state"] == "running"
    )
    cluster.call("POST", f"/v1/jobs/{job}/cancel", cluster.admin)
    cluster.run_until([agent], lambda: cluster.job(job)["state"] == "cancelled" and not agent._attempts())


def test_explain_without_a_policy_asks_the_live_cluster(cluster, monkeypatch):
    """`corral explain JOB` with no --policy prints the live job's reasons, in the
    simulator's words: a job waiting behind another for GPUs says so."""
    from typer.testing import CliRunner

    import corral.cli.live as live
    from corral.cli import app

    agent = cluster.agent("n0", 4)
    agent.register()
    first = cluster.submit("team-a", 4, ["sh", "-c", "sleep 30"])
    second = cluster.submit("team-b", 4, ["true"])
    cluster.run_until([agent], lambda: cluster.job(first)["state"] == "running")
    monkeypatch.setattr(
        live,
        "_client",
        lambda server, token: cluster.http.__class__(
            cluster.app, headers={"Authorization": f"Bearer {token}"}
        ),
    )
    result = CliRunner().invoke(app, ["explain", second, "--server", "http://test", "--token", cluster.admin])
    assert result.exit_code == 0, result.output
    assert "waiting for GPUs: needs 4" in result.output or "reserved" in result.output
    result = CliRunner().invoke(app, ["explain", "999", "--server", "http://test", "--token", cluster.admin])
    assert result.exit_code == 2 and "no job '999'" in result.output
    cluster.call("POST", f"/v1/jobs/{first}/cancel", cluster.admin)
    cluster.clock.t += 31.0  # (past the grace: SIGKILL if SIGTERM was not enough)
    cluster.run_until([agent], lambda: cluster.job(second)["state"] == "succeeded" and not agent._attempts())


def test_queues_and_the_policy_change_without_a_restart(cluster):
    """The admin gives a new fleet file (a third queue) and a new policy: jobs go to the new
    queue at once, the running job stays adopted, and a bad file is a 422 naming it."""
    agent = cluster.agent("n0", 4)
    agent.register()
    running = cluster.submit("team-a", 2, ["sh", "-c", "echo up; sleep 30"])
    cluster.run_until([agent], lambda: "up" in logs(cluster, running))
    fleet = (
        'hosts = 1\n[[cohorts]]\nname = "c"\n'
        '[[queues]]\nname = "team-a"\nnominal_gpus = 2\ncohort = "c"\n'
        '[[queues]]\nname = "team-b"\nnominal_gpus = 1\ncohort = "c"\n'
        '[[queues]]\nname = "team-c"\nnominal_gpus = 1\ncohort = "c"\n'
    )
    a = cluster.teams["team-a"]
    assert cluster.call("PUT", "/v1/config", a, json={"policy": "fair"}).status_code == 403
    for bad, field in (
        ({"fleet_toml": "hosts = x"}, "fleet_toml"),
        ({"policy": "las:thresholds=x"}, "policy"),
        ({"policy": "nope"}, "policy"),
    ):
        response = cluster.call("PUT", "/v1/config", cluster.admin, json=bad)
        assert response.status_code == 422 and field in str(response.json()["detail"]), response.text
    response = cluster.call("PUT", "/v1/config", cluster.admin, json={"fleet_toml": fleet, "policy": "fair"})
    assert response.status_code == 200 and response.json()["queues"] == ["team-a", "team-b", "team-c"]
    out = cluster.call(
        "POST", "/v1/teams", cluster.admin, json={"name": "team-c", "queues": ["team-c"]}
    ).json()
    cluster.teams["team-c"] = out["token"]
    new = cluster.submit("team-c", 1, ["sh", "-c", "echo c"])
    cluster.run_until([agent], lambda: cluster.job(new)["state"] == "succeeded")
    assert cluster.job(running)["state"] == "running" and len(cluster.job(running)["attempts"]) == 1
    cluster.call("POST", f"/v1/jobs/{running}/cancel", cluster.admin)
    cluster.clock.t += 31.0
    cluster.run_until([agent], lambda: not agent._attempts())


def test_a_cordoned_node_keeps_its_jobs_and_starts_nothing_new(cluster):
    agent = cluster.agent("n0", 4)
    agent.register()
    running = cluster.submit("team-a", 2, ["sh", "-c", "echo up; sleep 30"])
    cluster.run_until([agent], lambda: "up" in logs(cluster, running))
    assert cluster.call("POST", "/v1/nodes/n0/cordon", cluster.teams["team-a"]).status_code == 403
    assert cluster.call("POST", "/v1/nodes/n0/cordon", cluster.admin).json()["state"] == "cordoned"
    waiting = cluster.submit("team-b", 1, ["true"])
    for _ in range(5):
        cluster.app.state.step()
        agent.tick()
    assert cluster.job(waiting)["state"] == "pending" and cluster.job(running)["state"] == "running"
    assert cluster.call("POST", "/v1/nodes/n0/uncordon", cluster.admin).json()["state"] == "up"
    cluster.run_until([agent], lambda: cluster.job(waiting)["state"] == "succeeded")
    cluster.call("POST", f"/v1/jobs/{running}/cancel", cluster.admin)
    cluster.clock.t += 31.0
    cluster.run_until([agent], lambda: not agent._attempts())


def test_a_drain_stops_what_is_left_at_its_deadline_and_the_job_moves(cluster):
    """Drain n0 with a 10 s deadline: its job runs on until then, is stopped (SIGTERM, so
    it saves) and starts again on n1, never on n0."""
    agents = [cluster.agent(name, 4) for name in ("n0", "n1")]
    for agent in agents:
        agent.register()
    job = cluster.submit("team-a", 4, ["sh", "-c", "echo up; sleep 30"])
    cluster.run_until(agents, lambda: "up" in logs(cluster, job))
    (first,) = cluster.job(job)["attempts"]
    ((node, _),) = first["placement"]
    other = "n1" if node == "n0" else "n0"
    response = cluster.call("POST", f"/v1/nodes/{node}/drain?deadline_s=10", cluster.admin)
    assert response.status_code == 200 and response.json()["state"] == "draining"
    assert cluster.call("POST", f"/v1/nodes/{node}/cordon?deadline_s=10", cluster.admin).status_code == 422
    cluster.run_until(agents, lambda: True)
    assert len(cluster.job(job)["attempts"]) == 1  # (before the deadline it runs on)
    cluster.clock.t += 11.0
    cluster.run_until(agents, lambda: len(cluster.job(job)["attempts"]) == 2)
    attempts = cluster.job(job)["attempts"]
    assert attempts[0]["ended"] == "drained" and attempts[1]["placement"][0][0] == other
    cluster.call("POST", f"/v1/jobs/{job}/cancel", cluster.admin)
    cluster.clock.t += 31.0
    cluster.run_until(agents, lambda: not any(a._attempts() for a in agents))


def test_a_gang_ends_when_every_node_has_ended(cluster):
    """Rank 0's node finishes first: the attempt runs on until the other node's rank ends
    too; a rank that fails ends the attempt at once, with its exit code."""
    agents = [cluster.agent(name, 8) for name in ("n0", "n1")]
    for agent in agents:
        agent.register()
    slow = 'if [ "$NODE_RANK" = 1 ]; then sleep 1; fi; echo "done $NODE_RANK"'
    job = cluster.submit("team-a", 16, ["sh", "-c", slow])
    cluster.run_until(agents, lambda: "done 0" in logs(cluster, job))
    assert cluster.job(job)["state"] == "running"  # (rank 0's node is done, node 1's is not)
    cluster.run_until(agents, lambda: cluster.job(job)["state"] == "succeeded")
    assert "done 1" in logs(cluster, job)
    failing = cluster.submit("team-a", 16, ["sh", "-c", 'if [ "$NODE_RANK" = 1 ]; then exit 7; fi; sleep 30'])
    cluster.run_until(agents, lambda: cluster.job(failing)["state"] == "failed")
    assert cluster.job(failing)["exit_code"] == 7
    cluster.run_until(agents, lambda: not any(a._attempts() for a in agents))


def test_a_restarted_agent_re_adopts_its_process_and_sends_no_output_twice(cluster):
    agent = cluster.agent("n0", 4)
    agent.register()
    go = cluster.data_dir / "go"
    job = cluster.submit(
        "team-a", 1, ["sh", "-c", f"echo once; while [ ! -e {go} ]; do sleep 0.02; done; echo end"]
    )
    cluster.run_until([agent], lambda: "once" in logs(cluster, job))
    again = cluster.agent("n0", 4)  # (the agent restarted: a new one on the same folder)
    again.register()
    go.touch()
    cluster.run_until([again], lambda: cluster.job(job)["state"] == "succeeded")
    assert logs(cluster, job) == "once\nend\n"
    assert len(cluster.job(job)["attempts"]) == 1


def test_jobs_say_how_long_they_waited_and_ran(cluster):
    job = cluster.submit("team-a", 1, ["sleep", "30"])
    cluster.clock.t += 3.0
    listed = cluster.call("GET", "/v1/jobs", cluster.admin).json()
    assert [(j["waited_s"], j["ran_s"]) for j in listed] == [(3.0, 0.0)]
    agent = cluster.agent("n0", 4)
    agent.register()
    cluster.run_until([agent], lambda: cluster.job(job)["attempts"] != [])
    cluster.clock.t += 7.0
    assert (cluster.job(job)["waited_s"], cluster.job(job)["ran_s"]) == (None, 7.0)
    cluster.call("POST", f"/v1/jobs/{job}/cancel", cluster.admin)
    cluster.run_until([agent], lambda: cluster.job(job)["state"] == "cancelled" and not agent._attempts())


def test_a_stop_that_comes_before_the_launcher_has_its_group_is_not_lost(tmp_path):
    """Cancelled within milliseconds of its start, before its launcher wrote its process
    group: the SIGTERM is not spent on nothing, but sent when the server asks again."""
    agent = Agent("http://127.0.0.1:9", "t", tmp_path, 1, name="n0", clock=Clock(0.0))
    folder = tmp_path / "attempts" / "7"
    folder.mkdir(parents=True)
    (folder / "pid").write_text("999999")
    agent.stop(7, 30.0)
    assert agent.kill_at == {}
    (folder / "pgid").write_text("999999")  # (no such group: the signal finds nobody)
    agent.stop(7, 30.0)
    assert agent.kill_at == {7: 30.0}


def test_a_restarted_server_keeps_its_tokens_unless_told_to_rotate_them(database_url, tmp_path):
    from corral.live.server import kept_tokens

    engine = connect(database_url)
    migrate(engine)
    try:
        path = tmp_path / "tokens.json"
        first = kept_tokens(engine, path)
        assert kept_tokens(engine, path) == first
        assert path.stat().st_mode & 0o077 == 0  # (owner only)
        rotated = kept_tokens(engine, path, rotate=True)
        assert rotated[0] != first[0] and rotated[1] != first[1]
        bootstrap(engine)  # (tokens changed behind the file's back: it issues new ones)
        assert kept_tokens(engine, path) not in (first, rotated)
    finally:
        engine.dispose()


def test_logs_name_an_attempt_by_its_number_within_the_job(cluster):
    """`?attempt=N` counts the job's own attempts from 1, as its process's CORRAL_ATTEMPT: the
    second job's first attempt is its attempt 1, though its row is the cluster's second
    (it used to answer "job 2 has no attempt 1")."""
    from tests.support.live_cluster import Node, settle

    node = Node(cluster, "n0", 4)
    first = cluster.submit("team-a", 2, ["true"])
    second = cluster.submit("team-a", 2, ["true"])
    settle(cluster, [node])
    ids = {job: cluster.job(job)["attempts"][0]["attempt"] for job in (first, second)}
    assert ids[second] != 1
    node.post(f"/v1/agent/attempts/{ids[second]}/log", {"text": "hello\n"})
    answer = cluster.call("GET", f"/v1/jobs/{second}/logs?attempt=1", cluster.admin)
    assert answer.status_code == 200 and answer.text == "hello\n"
    missing = cluster.call("GET", f"/v1/jobs/{second}/logs?attempt=2", cluster.admin)
    assert missing.status_code == 404 and "has no attempt 2 (it has 1 to 1)" in missing.text


def test_jobs_filter_by_queue_and_say_when_they_first_started(cluster):
    from tests.support.live_cluster import Node, at, settle

    node = Node(cluster, "n0", 4)
    a = cluster.submit("team-a", 2, ["true"])
    at(cluster, [node], 1010.0)
    b = cluster.submit("team-b", 2, ["true"])
    settle(cluster, [node])
    listed = cluster.call("GET", "/v1/jobs?queue=team-b", cluster.admin).json()
    assert [j["job_id"] for j in listed] == [b]
    assert listed[0]["first_start_s"] == 1010.0 and listed[0]["submit_s"] == 1010.0
    assert cluster.job(a)["first_start_s"] == 1010.0  # (nothing stepped the reconciler before)


def test_a_job_starts_in_the_folder_it_names(cluster, tmp_path):
    """Real processes: a job that names a folder starts there (the CLI names the submitter's
    by default); one that names a folder the node lacks fails with a line that says so,
    never in some other folder; one that names none starts in the agent's."""
    agent = cluster.agent("n0", 4)
    agent.register()
    here = tmp_path / "project"
    here.mkdir()
    there = cluster.submit("team-a", 1, ["pwd"], workdir=str(here))
    missing = cluster.submit("team-a", 1, ["pwd"], workdir=str(tmp_path / "nowhere"))
    plain = cluster.submit("team-a", 1, ["pwd"])
    ended = ("succeeded", "failed")
    cluster.run_until([agent], lambda: all(cluster.job(j)["state"] in ended for j in (there, missing, plain)))
    assert logs(cluster, there) == f"{here}\n" and cluster.job(there)["workdir"] == str(here)
    assert (cluster.job(missing)["state"], cluster.job(missing)["exit_code"]) == ("failed", 127)
    assert f"cannot start in {tmp_path / 'nowhere'}: no such folder on this node" in logs(cluster, missing)
    assert logs(cluster, plain) == f"{os.getcwd()}\n"
    relative = cluster.call(
        "POST",
        "/v1/jobs",
        cluster.teams["team-a"],
        json={"gpus": 1, "queue": "team-a", "command": ["pwd"], "workdir": "rel"},
    )
    assert relative.status_code == 422 and "workdir" in relative.text


def test_the_migrated_schema_is_the_models(database_url):
    """The tables the migrations make are the ones the models declare (columns, types,
    indexes), on SQLite and PostgreSQL: a model changed without its migration is caught."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from corral.live.db import Base

    engine = connect(database_url)
    migrate(engine)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    engine.dispose()
