"""docs/live.md's pipeline and containers, and the README's live examples, run as written in
bash with real processes and fake GPUs (and the tests' own podman): an array with a limit, a
job after the whole array, one after a failure that never comes, a job in an image; then
what the text says happened."""

from __future__ import annotations

import json
import sqlite3

from tests.support.docs import run_lines, section_lines
from tests.support.fake_podman import install

LIMIT_S = 240  # about 5 s of jobs; bounded for a loaded machine


def test_the_pipeline_of_docs_live_runs_as_written(tmp_path):
    lines = section_lines("## Pipelines: arrays and dependencies")
    assert lines[0].startswith("corral up ") and lines[-1] == "kill %1"
    done = run_lines(lines, tmp_path, LIMIT_S)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    sweep = json.loads((tmp_path / "sweep.json").read_text())
    array = sweep["array_job_id"]
    assert sweep["job_id"] == array and sweep["tasks"] == 6
    # the folded line, then each task; task 3 printed its own index
    assert f"{array}_[0-5%2]" in out and f"{array}_5" in out
    assert "lr=1e-3" in out
    assert f"job {array}_5: succeeded" in out  # (`corral wait ARRAY` waited for every task)
    cancelled = json.loads(out[out.rindex("\n[") :])
    (report,) = cancelled
    assert report["job_id"] == str(int(array) + 7) and report["state"] == "cancelled"
    assert report["after"] == [f"{int(array) + k}:notok" for k in range(6)]
    assert "can no longer be met" in report["reason"]
    assert any(f"dependency {int(array) + k}:notok" in report["reason"] for k in range(6))
    assert report["array_job_id"] is None and report["array_task_id"] is None
    # every task ran in its own attempt, at most two at once (the server's record)
    with sqlite3.connect(tmp_path / "lab" / "corral.db") as connection:
        rows = connection.execute(
            "SELECT a.start_s, a.end_s FROM attempts a JOIN jobs j ON a.job = j.id WHERE j.array_job = ?",
            (int(array),),
        ).fetchall()
        evaluation = connection.execute(
            "SELECT j.state, a.start_s FROM attempts a JOIN jobs j ON a.job = j.id WHERE j.id = ?",
            (int(array) + 6,),
        ).fetchall()
    assert len(rows) == 6
    most = max(sum(1 for s, e in rows if s <= t < e) for t, _ in rows)
    assert most == 2
    # the evaluation ran once, after the last task ended
    assert [state for state, _ in evaluation] == ["succeeded"]
    assert evaluation[0][1] >= max(e for _, e in rows)


def test_the_containers_of_docs_live_run_as_written(tmp_path):
    """With the tests' own podman on the PATH (no OCI container starts here)."""
    lines = section_lines("## Containers")
    assert lines[0].startswith("corral up ") and lines[-1] == "kill %1"
    done = run_lines(lines, tmp_path, LIMIT_S, install(tmp_path / "runtime"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "in podman on GPU 0" in done.stdout
    (run,) = [
        c for c in map(json.loads, (tmp_path / "runtime/podman-state/calls.jsonl").open()) if c[0] == "run"
    ]
    assert f"{tmp_path}:/work:ro" in run


def test_the_readmes_live_examples_run_as_written(tmp_path):
    """The README's quick start, then its arrays, dependencies, reservations and container,
    against a live cluster (the tests' own podman on the PATH): each command succeeds, and
    the jobs they submit run."""
    lines = section_lines("## Run a cluster on this machine", "README.md")
    assert lines[0].startswith("corral up ") and lines[-1] == "corral reservations"
    lines = [line for line in lines if not line.startswith("corral simulate")]  # (the replay: test_readme)
    lines += ["corral wait --timeout 3m", "corral jobs --json > jobs.json", "kill %1"]
    done = run_lines(lines, tmp_path, LIMIT_S, install(tmp_path / "runtime"))
    assert done.returncode == 0, done.stdout + done.stderr
    jobs = json.loads((tmp_path / "jobs.json").read_text())
    assert [j["state"] for j in jobs] == ["succeeded"] * 13  # (1, the array 2-11, 12 after it, 13)
    assert jobs[11]["after"] == [f"{k}:ok" for k in range(2, 12)] and jobs[12]["image"] == "busybox"
    assert "default" in done.stdout and "maintenance" in done.stdout  # (the reservations listed)
