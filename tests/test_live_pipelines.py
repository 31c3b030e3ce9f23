"""docs/live.md's pipeline, run as written in bash with real processes and fake GPUs: an
array with a limit, a job after the whole array, one after a failure that never comes; then
what the text says happened."""

from __future__ import annotations

import json
import sqlite3

from tests.support.docs import run_lines, section_lines

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
