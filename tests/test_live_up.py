"""`corral up` as a newcomer runs it, in real processes: two teams' jobs under `priority`,
one preempted and resumed from its checkpoint, the server killed with SIGKILL mid-run and
started again on the same folder, every job accounted for; then the history exported and
replayed by the simulator under `fair`. Bounded waits on real processes, no fixed sleeps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.live import free_port

LIMIT_S = 60.0


def corral(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "corral.cli", *args], capture_output=True, text=True, env=env, timeout=LIMIT_S
    )


def wait_for(check, what: str) -> None:
    until = time.monotonic() + LIMIT_S
    while time.monotonic() < until:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Up:
    def __init__(self, data_dir: Path, fleet: Path, port: int) -> None:
        self.data_dir, self.fleet, self.port = data_dir, fleet, port
        self.process: subprocess.Popen | None = None

    def start(self) -> dict[str, str]:
        env_file = self.data_dir / "env"
        env_file.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "corral.cli", "up", "--gpus", "4", "--data-dir", str(self.data_dir),
             "--port", str(self.port), "--policy", "priority", "--fleet", str(self.fleet)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        wait_for(env_file.exists, "the env file")
        values = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        assert values["CORRAL_SERVER"] == f"http://127.0.0.1:{self.port}"
        return {**os.environ, **values}

    def kill(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(timeout=LIMIT_S)


@pytest.fixture
def up(tmp_path):
    fleet = tmp_path / "lab.toml"
    fleet.write_text(
        'hosts = 1\ngpus_per_host = 4\n[[cohorts]]\nname = "lab"\n'
        '[[queues]]\nname = "team-a"\nnominal_gpus = 2\ncohort = "lab"\n'
        '[[queues]]\nname = "team-b"\nnominal_gpus = 2\ncohort = "lab"\n'
    )
    cluster = Up(tmp_path / "cluster", fleet, free_port())
    yield cluster
    if cluster.process is not None and cluster.process.poll() is None:
        cluster.kill(signal.SIGTERM)


def jobs(env) -> dict[str, dict]:
    out = corral("jobs", "--json", env=env)
    assert out.returncode == 0, out.stderr
    return {j["job_id"]: j for j in json.loads(out.stdout)}


# A job that checkpoints: it counts to `steps`, saving its step in the checkpoint folder
# (and telling the agent), and resumes from the saved step; on SIGTERM it saves and exits.
TRAIN = (
    'd="$CORRAL_CHECKPOINT_DIR"; s=$(cat "$d/step" 2>/dev/null || echo 0); echo "resumed at $s"; '
    'trap \'echo $s > "$d/step"; touch "$d/.checkpoint-done"; exit 143\' TERM; '
    'while [ $s -lt STEPS ]; do s=$((s+1)); echo $s > "$d/step"; sleep 0.1; done; echo "done at $s"'
)


def test_a_newcomer_runs_preempts_crashes_resumes_and_replays(up, tmp_path):
    env = up.start()
    teams = {}
    for team in ("team-a", "team-b"):
        out = corral("team", team, "--queue", team, "--json", env=env)
        assert out.returncode == 0, out.stderr
        teams[team] = {**env, "CORRAL_TOKEN": json.loads(out.stdout)["token"]}
    low = corral("submit", "--gpus", "4", "--queue", "team-a", "--grace", "10s", "--json", "--",
                 "sh", "-c", TRAIN.replace("STEPS", "150"), env=teams["team-a"])  # fmt: skip
    assert low.returncode == 0, low.stderr
    low_id = json.loads(low.stdout)["job_id"]
    wait_for(lambda: jobs(env)[low_id]["state"] == "running", "the first job to run")
    time.sleep(0.5)  # (a few steps of work, so that a preemption has something to keep)
    high = corral("submit", "--gpus", "2", "--queue", "team-b", "--priority", "10", "--json", "--",
                  "sh", "-c", "echo urgent $CUDA_VISIBLE_DEVICES; sleep 1", env=teams["team-b"])  # fmt: skip
    high_id = json.loads(high.stdout)["job_id"]
    wait_for(lambda: jobs(env)[high_id]["state"] == "succeeded", "the urgent job to finish")
    # team-b may not see team-a's job
    assert set(jobs(teams["team-b"])) == {high_id}
    # the first job was preempted, saved its step, and resumed from it
    wait_for(lambda: jobs(env)[low_id]["state"] == "running", "the first job to resume")
    wait_for(lambda: "resumed at" in corral("logs", low_id, env=env).stdout, "the resumed job's output")
    resumed = int(corral("logs", low_id, env=env).stdout.split("resumed at ")[-1].split()[0])
    assert resumed > 0
    # SIGKILL the whole cluster mid-run; the job's process lives on, and is re-adopted
    up.kill(signal.SIGKILL)
    again = up.start()
    assert again["CORRAL_TOKEN"] == env["CORRAL_TOKEN"]  # (the same cluster, the same tokens)
    wait_for(lambda: jobs(env)[low_id]["state"] == "succeeded", "the first job to finish after the restart")
    assert set(jobs(teams["team-a"])) == {low_id}
    # its output once, although the restarted agent took over shipping it
    assert corral("logs", low_id, env=env).stdout.count("resumed at") == 1
    final = jobs(env)
    assert {final[low_id]["state"], final[high_id]["state"]} == {"succeeded"}
    detail = json.loads(corral("jobs", "--json", env=env).stdout)
    assert all(j["exit_code"] == 0 for j in detail)
    # the real week to the simulator
    table, fleet = tmp_path / "history.parquet", tmp_path / "exported.toml"
    assert corral("history", "--out", str(table), env=env).returncode == 0
    assert corral("fleet", "export", "--out", str(fleet), env=env).returncode == 0
    replay = corral(
        "simulate", "--workload", str(table), "--fleet", str(fleet), "--policy", "fair", "--policy", "fifo"
    )
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "2 jobs" in replay.stdout
