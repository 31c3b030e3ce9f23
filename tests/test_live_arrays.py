"""Arrays and dependencies through the HTTP API, with a scripted node (no processes) and the
server's fake clock, on SQLite and PostgreSQL: a failed dependency cancels, naming it; an
array's limit holds; an array's id and its tasks are cancelled and found; a rebuilt
reconciler holds what was held; bad input gets 422 naming the field."""

from __future__ import annotations

import pytest

from tests.support.live_cluster import Cluster, Node, settle


@pytest.fixture
def cluster(database_url, tmp_path):
    c = Cluster(database_url, tmp_path)
    yield c
    c.engine.dispose()


def running_jobs(cluster: Cluster) -> list[str]:
    jobs = cluster.call("GET", "/v1/jobs?state=running", cluster.admin).json()
    return sorted(j["job_id"] for j in jobs)


def test_a_failed_dependency_cancels_its_dependents_and_lets_notok_ones_run(cluster):
    node = Node(cluster, "n0", 8)
    train = cluster.submit("team-a", 4, ["train"])
    on_ok = cluster.submit("team-a", 1, ["eval"], after=[train])
    on_fail = cluster.submit("team-a", 1, ["report"], after=[f"{train}:notok"])
    after_any = cluster.submit("team-a", 1, ["clean"], after=[f"{on_ok}:any"])
    settle(cluster, [node])
    assert running_jobs(cluster) == [train]
    reasons = cluster.call("GET", f"/v1/jobs/{on_ok}/reasons", cluster.admin).json()
    assert reasons[-1]["kind"] == "dependency" and f"{train}:ok" in reasons[-1]["reason"]
    (attempt,) = node.running
    node.exit(attempt, 1)
    settle(cluster, [node])
    eval_job = cluster.job(on_ok)
    assert eval_job["state"] == "cancelled" and eval_job["attempts"] == []
    assert eval_job["reason"] == f"cancelled: its dependency {train}:ok can no longer be met"
    # the report (after a failure) and the clean-up (after the evaluation in any way) run
    assert running_jobs(cluster) == sorted([on_fail, after_any])
    assert cluster.job(after_any)["after"] == [f"{on_ok}:any"]


def test_an_array_runs_at_most_its_limit_and_its_tasks_are_found_and_cancelled(cluster):
    node = Node(cluster, "n0", 8)
    out = cluster.call(
        "POST",
        "/v1/jobs",
        cluster.teams["team-a"],
        json={"gpus": 1, "queue": "team-a", "command": ["x"], "array": "0-4%2"},
    ).json()
    array = out["array_job_id"]
    assert out["job_id"] == array and out["tasks"] == 5
    settle(cluster, [node])
    assert len(node.running) == 2
    jobs = cluster.call("GET", "/v1/jobs", cluster.admin).json()
    assert [(j["array_job_id"], j["array_task_id"]) for j in jobs] == [(array, k) for k in range(5)]
    # a task is found as ARRAY_TASK, and its logs and cancel take that form too
    task = cluster.call("GET", f"/v1/jobs/{array}_3", cluster.admin).json()
    assert task["array_task_id"] == 3 and task["state"] == "pending"
    assert cluster.call("POST", f"/v1/jobs/{array}_3/cancel", cluster.teams["team-a"]).status_code == 200
    first = node.running[0]
    node.exit(first, 0)
    settle(cluster, [node])
    assert len(node.running) == 2  # (task 2 took the freed slot; task 3 is cancelled)
    out = cluster.call("POST", f"/v1/jobs/{array}/cancel", cluster.teams["team-a"]).json()
    assert out["cancelled_tasks"] == 3  # (tasks 1, 2 running and 4 held)
    settle(cluster, [node])
    states = [j["state"] for j in cluster.call("GET", "/v1/jobs", cluster.admin).json()]
    assert states.count("succeeded") == 1 and "pending" not in states


def test_a_rebuilt_reconciler_holds_what_was_held(cluster):
    node = Node(cluster, "n0", 8)
    first = cluster.call(
        "POST",
        "/v1/jobs",
        cluster.teams["team-a"],
        json={"gpus": 1, "queue": "team-a", "command": ["x"], "array": "0-3%1"},
    ).json()["job_id"]
    blocker = cluster.submit("team-a", 1, ["y"], after=[f"{first}"])
    settle(cluster, [node])
    assert len(node.running) == 1
    cluster.restart()  # (a crash: the reconciler is rebuilt from the database)
    settle(cluster, [node])
    assert len(node.running) == 1
    assert cluster.job(blocker)["state"] == "pending"
    node.exit(node.running[0], 0)
    cluster.restart()
    settle(cluster, [node])
    assert len(node.running) == 1  # (the next task, and only it)
    assert cluster.job(blocker)["state"] == "pending"  # (it waits for every task)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"array": "5-1"}, "array"),
        ({"array": "0-3%0"}, "array"),
        ({"after": ["999999"]}, "after"),
        ({"after": ["1:maybe"]}, "after"),
        ({"after": ["1_2"]}, "after"),
    ],
)
def test_bad_arrays_and_dependencies_get_422_naming_the_field(cluster, body, field):
    cluster.submit("team-a", 1, ["x"])  # (job 1, not an array)
    response = cluster.call(
        "POST",
        "/v1/jobs",
        cluster.teams["team-a"],
        json={"gpus": 1, "queue": "team-a", "command": ["x"], **body},
    )
    assert response.status_code == 422, response.text
    assert field in str(response.json()["detail"][0]["loc"])


def test_another_teams_job_is_no_dependency(cluster):
    theirs = cluster.submit("team-b", 1, ["x"])
    response = cluster.call(
        "POST",
        "/v1/jobs",
        cluster.teams["team-a"],
        json={"gpus": 1, "queue": "team-a", "command": ["x"], "after": [theirs]},
    )
    assert response.status_code == 422 and "no job" in response.text


def test_jobs_are_listed_by_user(cluster):
    cluster.submit("team-a", 1, ["x"], user="ada")
    cluster.submit("team-a", 1, ["x"], user="bob")
    listed = cluster.call("GET", "/v1/jobs?user=ada", cluster.admin).json()
    assert [j["user"] for j in listed] == ["ada"]


def test_history_exports_dependencies_and_arrays_for_the_simulator(cluster):
    node = Node(cluster, "n0", 8)
    body = {"gpus": 1, "queue": "team-a", "command": ["x"], "array": "0-1%1"}
    array = cluster.call("POST", "/v1/jobs", cluster.teams["team-a"], json=body).json()["array_job_id"]
    after = cluster.submit("team-a", 1, ["y"], after=[array])
    for _ in range(3):  # (one task at a time, then the job after them)
        settle(cluster, [node])
        cluster.clock.t += 10.0
        node.exit(node.running[0], 0)
    settle(cluster, [node])
    rows = {r["job_id"]: r for r in cluster.call("GET", "/v1/history", cluster.admin).json()["jobs"]}
    tasks = [str(int(array)), str(int(array) + 1)]
    assert rows[after]["after"] == [f"{t}:ok" for t in tasks]
    assert [(rows[t]["array_job"], rows[t]["array_limit"]) for t in tasks] == [(array, 1)] * 2
