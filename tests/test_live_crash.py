"""The crash test, in real processes on SQLite and PostgreSQL: clients submit in bursts while
`corral serve` is killed with SIGKILL three times and started again on the same folder and
database; a separate `corral agent` runs every job on fake GPUs, each job appending its id
to a file. Counts what was acknowledged, stored, lost, run twice and stuck: 0 lost, 0 run
twice, 0 stuck. Bounded in jobs and time; loopback only."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from tests.support.live import free_port

CLIENTS, JOBS_PER_CLIENT, KILLS = 4, 20, 3
LIMIT_S = 120.0


class Server:
    def __init__(self, data_dir: Path, url: str, port: int) -> None:
        self.args = [sys.executable, "-m", "corral.cli", "serve", "--data-dir", str(data_dir)]
        self.args += ["--port", str(port), "--db", url]
        self.base = f"http://127.0.0.1:{port}"
        self.data_dir = data_dir
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with (self.data_dir.parent / "server.err").open("a") as err:
            self.process = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=err)
        until = time.monotonic() + LIMIT_S
        while time.monotonic() < until:
            try:
                if httpx.get(self.base + "/v1/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("the server did not come up")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def tokens(self) -> dict[str, str]:
        return json.loads((self.data_dir / "tokens.json").read_text())


def test_no_acknowledged_job_is_lost_run_twice_or_stuck_across_server_kills(tmp_path, database_url):
    server = Server(tmp_path / "server", database_url, free_port())
    server.start()
    tokens = server.tokens()
    runs = tmp_path / "runs"
    runs.write_text("")
    agent = subprocess.Popen(
        [sys.executable, "-m", "corral.cli", "agent", "--server", server.base, "--token", tokens["node"],
         "--data-dir", str(tmp_path / "agent"), "--gpus", "4", "--name", "n0"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "agent.err").open("w"),
    )  # fmt: skip
    acknowledged: list[str] = []
    done = threading.Event()

    def client(k: int) -> None:
        http = httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {tokens['admin']}"})
        command = ["sh", "-c", f'echo "$CORRAL_JOB_ID" >> {runs}']
        sent, until = 0, time.monotonic() + LIMIT_S
        while sent < JOBS_PER_CLIENT and time.monotonic() < until:
            try:
                body = {"gpus": 1, "command": command, "name": f"c{k}"}
                answer = http.post("/v1/jobs", json=body, timeout=5)
            except httpx.HTTPError:  # (the server is down: not acknowledged; try again)
                time.sleep(0.05)
                continue
            if answer.status_code == 201:
                acknowledged.append(answer.json()["job_id"])
                sent += 1
            time.sleep(0.02)

    clients = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    try:
        for thread in clients:
            thread.start()
        for _ in range(KILLS):
            time.sleep(1.5)
            server.kill()
            time.sleep(0.3)
            server.start()
        for thread in clients:
            thread.join(timeout=LIMIT_S)
        done.set()
        admin = httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {tokens['admin']}"})
        until = time.monotonic() + LIMIT_S
        while time.monotonic() < until:
            try:
                stored = {j["job_id"]: j for j in admin.get("/v1/jobs", timeout=10).json()}
            except httpx.HTTPError as err:
                raise AssertionError((tmp_path / "server.err").read_text()[-3000:]) from err
            if all(stored.get(j, {}).get("state") == "succeeded" for j in acknowledged):
                break
            time.sleep(0.5)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
        server.kill()
    ran = Counter(runs.read_text().split())
    lost = [j for j in acknowledged if j not in stored]
    stuck = [j for j in acknowledged if j in stored and stored[j]["state"] != "succeeded"]
    twice = sorted(j for j, n in ran.items() if n > 1)
    attempts_twice = [j for j in stored if ran[j] > 1]
    summary = {
        "acknowledged": len(acknowledged),
        "stored": len(stored),
        "lost": len(lost),
        "ran_twice": len(twice),
        "stuck": len(stuck),
    }
    assert len(acknowledged) == CLIENTS * JOBS_PER_CLIENT, summary
    assert not lost and not twice and not stuck and not attempts_twice, (summary, lost, twice, stuck)
    assert all(ran[j] == 1 for j in acknowledged), summary
