"""docs/live.md's maintenance window, run as written in bash with real processes and fake
GPUs; then what the text says happened, from the jobs' record."""

from __future__ import annotations

import json

from tests.support.docs import run_lines, section_lines

LIMIT_S = 240  # about 12 s of jobs; bounded for a loaded machine


def test_the_maintenance_window_of_docs_live_runs_as_written(tmp_path):
    lines = section_lines("## Reservations and maintenance windows")
    assert lines[0].startswith("corral up ") and lines[-1] == "kill %1"
    done = run_lines(lines, tmp_path, LIMIT_S)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fix" in done.stdout and "maintenance" in done.stdout  # (the listing)
    jobs = {j["job_id"]: j for j in json.loads((tmp_path / "jobs.json").read_text())}
    assert [jobs[k]["state"] for k in ("1", "2", "3")] == ["succeeded"] * 3
    (window,) = json.loads((tmp_path / "windows.json").read_text())
    start_s, end_s = window["start_s"], window["end_s"]
    # the first job's first run was stopped at the window's start; it ran again after it
    assert jobs["1"]["first_start_s"] < start_s
    assert jobs["1"]["run_s"] >= 6.0 and jobs["1"]["end_s"] >= end_s + 6.0 - 0.5
    # the job with no room before the window waited for its end
    assert jobs["3"]["first_start_s"] >= end_s
