"""The live cluster run by Ray instead of corral's agents, on a real multi-node Ray cluster on
this machine (a head and two worker nodes of 8 fake GPUs each, labelled n0 and n1): gangs land
where corral placed them, stops keep the SIGTERM-grace-SIGKILL contract, a lost Ray node
requeues its job, and a restarted server takes up the running ranks.

Skipped where Ray is not installed, unless CORRAL_REQUIRE_RAY is set (as in CI)."""

from __future__ import annotations

import contextlib
import os
import signal

import pytest
from fastapi.testclient import TestClient

from corral.live.server import create_app
from tests.support.live_cluster import LOST_S, SHOW, Cluster, logs

try:
    import ray

    from corral.live.ray_executor import RayExecutor, ray_nodes
    from tests.support.ray_cluster import RayCluster
except ImportError:
    if os.environ.get("CORRAL_REQUIRE_RAY"):
        raise
    pytest.skip("Ray is not installed (pip install 'corral[ray]')", allow_module_level=True)

UP = "trap 'echo term; exit 143' TERM; echo up; while :; do sleep 0.05; done"


@pytest.fixture(scope="module")
def ray_cluster():
    cluster = RayCluster({"n0": 8, "n1": 8})
    try:
        cluster.wait_for({"n0", "n1"})
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster(ray_cluster, tmp_path):
    c = Cluster(f"sqlite:///{tmp_path}/corral.db", tmp_path)
    yield c
    c.engine.dispose()


def executor(cluster: Cluster, tmp_path) -> RayExecutor:
    return RayExecutor(
        "http://test", cluster.node, tmp_path / "ray", client=TestClient(cluster.app), clock=cluster.clock
    )


def restarted(cluster: Cluster, data_dir) -> Cluster:
    """The same cluster behind a new API process: same database, tokens and teams; its
    reconciler rebuilt from the database."""
    again = Cluster.__new__(Cluster)
    again.__dict__.update(cluster.__dict__)
    config = cluster.app.state.reconciler().config
    again.app = create_app(cluster.engine, config, data_dir, cluster.clock, reconcile_every_s=None)
    again.http = TestClient(again.app, raise_server_exceptions=False)
    return again


def kill_ranks(node_dir) -> None:
    """What losing a machine does to the processes it ran."""
    for pgid in node_dir.glob("attempts/*/pgid"):
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.killpg(int(pgid.read_text()), signal.SIGKILL)


def wait(cluster: Cluster, runner: RayExecutor, done) -> None:
    cluster.run_until([runner], done, limit_s=60.0)


def test_an_8_plus_8_gang_lands_on_the_nodes_corral_chose_with_its_ranks(cluster, tmp_path):
    runner = executor(cluster, tmp_path)
    job = cluster.submit("team-a", 16, ["sh", "-c", SHOW + " ray=$CORRAL_RAY_NODE_ID; sleep 0.2"])
    wait(cluster, runner, lambda: cluster.job(job)["state"] == "succeeded")
    placement = cluster.job(job)["attempts"][0]["placement"]
    assert sorted(name for name, _ in placement) == ["n0", "n1"]
    ray_ids = {node.name: node.node_id for node in ray_nodes().values()}
    lines = sorted(line for line in logs(cluster, job).splitlines() if line.startswith("gpus="))
    assert len(lines) == 2
    for node_rank, line in enumerate(lines):
        name, gpu_ids = placement[node_rank]
        fields = dict(part.split("=", 1) for part in line.split())
        assert fields["gpus"] == ",".join(map(str, gpu_ids)) == "0,1,2,3,4,5,6,7"
        assert (fields["rank"], fields["node"], fields["world"]) == (str(8 * node_rank), str(node_rank), "16")
        assert fields["ray"] == ray_ids[name]  # (the Ray node corral chose, not one Ray picked)
    assert (
        not runner.ranks
        and not ray.util.placement_group_table()
        or all(group["state"] == "REMOVED" for group in ray.util.placement_group_table().values())
    )


def test_preemption_and_cancellation_keep_the_grace_contract(cluster, tmp_path):
    """A preemptible job on both nodes is SIGTERMed when a higher priority arrives and exits
    politely; a job that ignores SIGTERM is cancelled and killed once its grace has passed."""
    runner = executor(cluster, tmp_path)
    low = cluster.submit("team-a", 16, ["sh", "-c", UP], priority=0)
    wait(cluster, runner, lambda: logs(cluster, low).count("up") == 2)
    high = cluster.submit(
        "team-b", 8, ["sh", "-c", "trap '' TERM; echo up; while :; do sleep 0.05; done"], priority=5
    )
    wait(cluster, runner, lambda: cluster.job(high)["state"] == "running" and "up" in logs(cluster, high))
    first = cluster.job(low)["attempts"][0]
    assert first["ended"] == "preempted" and first["exit_code"] == 143
    assert logs(cluster, low).count("term") == 2
    cluster.call("POST", f"/v1/jobs/{low}/cancel", cluster.admin)
    assert cluster.call("POST", f"/v1/jobs/{high}/cancel", cluster.admin).status_code == 200
    wait(cluster, runner, lambda: bool(runner.kill_at))
    assert cluster.job(high)["attempts"][0]["exit_code"] is None  # (within its 30 s grace)
    cluster.clock.t += 31.0
    wait(cluster, runner, lambda: cluster.job(high)["attempts"][0]["exit_code"] is not None)
    assert cluster.job(high)["attempts"][0]["exit_code"] == -9
    wait(cluster, runner, lambda: cluster.job(low)["state"] == "cancelled" and not runner.ranks)
    assert cluster.job(high)["state"] == "cancelled"


def test_a_restarted_server_takes_up_the_running_ranks(cluster, tmp_path):
    """The executor and the API start afresh over the same database: the named actors are
    found, the job's output and exit still arrive, and nothing is started twice."""
    runner = executor(cluster, tmp_path)
    go = tmp_path / "go"
    job = cluster.submit(
        "team-a", 16, ["sh", "-c", f"echo up; while [ ! -e {go} ]; do sleep 0.05; done; echo done"]
    )
    wait(cluster, runner, lambda: logs(cluster, job).count("up") == 2)
    again = Cluster.__new__(Cluster)
    again.__dict__.update(cluster.__dict__)
    from corral.live.server import create_app

    again.app = create_app(
        cluster.engine, cluster.app.state.reconciler().config, tmp_path, cluster.clock, None
    )
    again.http = TestClient(again.app, raise_server_exceptions=False)
    fresh = executor(again, tmp_path)
    assert sorted(fresh.ranks) == sorted(runner.ranks)
    go.touch()
    wait(again, fresh, lambda: again.job(job)["state"] == "succeeded")
    detail = again.job(job)
    assert len(detail["attempts"]) == 1 and logs(again, job).count("done") == 2
    assert logs(again, job).count("up") == 2  # (no output sent twice)


def named_ranks() -> list[str]:
    """The rank actors alive on the Ray cluster (their names free once they are gone)."""
    return [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("corral-rank-")
    ]


def test_ranks_an_earlier_server_left_on_ray_do_not_stop_a_fresh_one(cluster, tmp_path):
    """A fresh server (a new database) over a Ray cluster where an earlier server's ranks still
    run: the executor takes them up by name, and when they end it reports attempts the new
    server has never heard of (404). Each is said once and let go: the nodes keep their
    heartbeats and the new server's own job runs (a 404 used to abort every round before the
    heartbeats, the nodes went down and the job waited for ever)."""
    go = tmp_path / "go"
    old = cluster.submit("team-a", 16, ["sh", "-c", f"echo up; while [ ! -e {go} ]; do sleep 0.05; done"])
    wait(cluster, executor(cluster, tmp_path / "old"), lambda: logs(cluster, old).count("up") == 2)
    fresh = Cluster(f"sqlite:///{tmp_path}/fresh.db", tmp_path / "fresh")
    try:
        runner = executor(fresh, tmp_path / "new")
        assert {attempt for attempt, _ in runner.ranks} == {1}  # (the old server's attempt 1)
        go.touch()
        wait(fresh, runner, lambda: not runner.ranks and not named_ranks())
        job = fresh.submit("team-a", 8, ["sh", "-c", "echo mine"])
        wait(fresh, runner, lambda: fresh.job(job)["state"] == "succeeded")
        assert logs(fresh, job) == "mine\n"
        assert {n["name"]: n["state"] for n in fresh.call("GET", "/v1/nodes", fresh.admin).json()} == {
            "n0": "up",
            "n1": "up",
        }
    finally:
        fresh.engine.dispose()


def test_an_elastic_gang_restarts_on_ray_at_its_new_size(ray_cluster, tmp_path):
    """An elastic job (8-16 GPUs, not preemptible) grows to both Ray nodes at once; a job of
    higher priority makes it give one back: its 16-GPU gang gets SIGTERM on both nodes and,
    once both ranks have exited, starts again as an 8-GPU gang with WORLD_SIZE 8."""
    cluster = Cluster(f"sqlite:///{tmp_path}/corral.db", tmp_path, policy="priority+elastic:hold=0")
    try:
        runner = executor(cluster, tmp_path)
        loop = "trap 'echo term; exit 143' TERM; echo world=$WORLD_SIZE; while :; do sleep 0.05; done"
        job = cluster.submit(
            "team-a", 8, ["sh", "-c", loop], min_gpus=8, max_gpus=16, step_gpus=8, preemptible=False
        )
        wait(cluster, runner, lambda: logs(cluster, job).count("world=16") == 2)
        cluster.submit("team-b", 8, ["sh", "-c", "sleep 30"], priority=5)

        def shrunk() -> bool:
            attempts = cluster.job(job)["attempts"]
            return attempts[-1]["state"] == "running" and "world=8" in logs(cluster, job)

        wait(cluster, runner, shrunk)
        attempts = cluster.job(job)["attempts"]
        assert [(a["ended"], sum(len(ids) for _, ids in a["placement"])) for a in attempts] == [
            ("resized", 8),  # (grown in the pass that started it: never reached Ray)
            ("resized", 16),
            ("", 8),
        ]
        assert attempts[1]["exit_code"] == 143
        for running in cluster.call("GET", "/v1/jobs", cluster.admin).json():
            cluster.call("POST", f"/v1/jobs/{running['job_id']}/cancel", cluster.admin)
        wait(cluster, runner, lambda: not runner.ranks)
    finally:
        cluster.engine.dispose()


def test_a_lost_ray_node_is_a_node_failure_and_the_job_waits_again(cluster, tmp_path, ray_cluster):
    """n1's Ray node is killed under a running gang: corral hears nothing from it, marks it
    down after the heartbeat timeout, ends the attempt as failed and requeues the job, which
    runs again on what is left once it fits (an 8-GPU job here). (Runs last: it loses n1.)"""
    runner = executor(cluster, tmp_path)
    job = cluster.submit("team-a", 8, ["sh", "-c", UP])
    wait(cluster, runner, lambda: "up" in logs(cluster, job))
    ((name, _),) = cluster.job(job)["attempts"][0]["placement"]
    ray_cluster.kill(name)
    kill_ranks(tmp_path / "ray" / name)  # (on one machine they outlive their node)
    ray_cluster.wait_for({"n0", "n1"} - {name})
    cluster.clock.t += LOST_S
    runner.tick()  # (n0 heartbeats at the new time; n1 is silent)
    wait(cluster, runner, lambda: len(cluster.job(job)["attempts"]) == 2)
    first = cluster.job(job)["attempts"][0]
    assert first["ended"] == "failed"
    nodes = {n["name"]: n["state"] for n in cluster.call("GET", "/v1/nodes", cluster.admin).json()}
    assert nodes[name] == "down"
    wait(cluster, runner, lambda: "up" in logs(cluster, job))  # (the second attempt's log)
    assert cluster.job(job)["attempts"][1]["placement"][0][0] != name
    cluster.call("POST", f"/v1/jobs/{job}/cancel", cluster.admin)
    wait(cluster, runner, lambda: cluster.job(job)["state"] == "cancelled" and not runner.ranks)
