"""docs/live.md's loop, run as written: its lines, in bash, in a fresh folder holding a copy of
examples/, with real processes and fake GPUs. Only the port (CORRAL_PORT) and the home folder
are the test's. Then what the text says happened: team-b's evaluation preempted team-a's
training, which saved its step and resumed from it; the history and the replay were written."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from tests.support.live import free_port

ROOT = Path(__file__).resolve().parent.parent
LIMIT_S = 240  # the loop runs about 20 s of jobs; bounded for a loaded machine


def walkthrough() -> list[str]:
    """The indented lines of the section "The loop" of docs/live.md."""
    text = (ROOT / "docs" / "live.md").read_text()
    section = text[text.index("## The loop") : text.index("## HTTP API")]
    return [line[4:] for line in section.splitlines() if line.startswith("    ")]


def test_the_loop_of_docs_live_runs_as_written(tmp_path):
    lines = walkthrough()
    assert lines[0].startswith("corral up ") and lines[-1] == "kill %1"
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "CORRAL_PORT": str(free_port()),
    }
    for name in ("CORRAL_SERVER", "CORRAL_TOKEN", "CORRAL_DB"):
        env.pop(name, None)
    script = "set -euo pipefail\n" + "\n".join(lines) + "\nwait\n"
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=LIMIT_S
    )
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
