"""docs/live.md's loop, run as written: its lines, in bash, in a fresh folder holding a copy of
examples/, with real processes and fake GPUs. Only the port (CORRAL_PORT) and the home folder
are the test's. Then what the text says happened: team-b's evaluation preempted team-a's
training, which saved its step and resumed from it; the history and the replay were written."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq

from tests.support.docs import ROOT, run_lines, section_lines

LIMIT_S = 240  # the loop runs about 20 s of jobs; bounded for a loaded machine


def test_the_loop_of_docs_live_runs_as_written(tmp_path):
    lines = section_lines("## The loop")
    assert lines[0].startswith("corral up ") and lines[-1] == "kill %1"
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    done = run_lines(lines, tmp_path, LIMIT_S)
    assert done.returncode == 0, done.stdout + done.stderr
    # `corral logs 1` (its last attempt): the training job ran again from the step it saved
    # when the evaluation preempted it, and finished
    resumed = int(done.stdout.split("attempt 2: from step ")[1].split(",")[0])
    assert 0 < resumed < 100 and "done: 100 steps" in done.stdout
    assert "job 1: succeeded" in done.stdout and "job 2: succeeded" in done.stdout
    week = pq.read_table(tmp_path / "week.parquet").to_pylist()
    assert sorted((row["user"], row["state"]) for row in week) == [
        ("team-a", "succeeded"),
        ("team-b", "succeeded"),
    ]
    assert "[[queues]]" in (tmp_path / "live.toml").read_text()
    assert "priority" in done.stdout and "fair" in done.stdout  # (the replay's comparison)
