"""The node agent: registers the node's GPUs, heartbeats, and runs the attempts the server
gives it as process groups with `CUDA_VISIBLE_DEVICES` set to their GPUs.

Each attempt runs under a small launcher (`python -m corral.live.launch DIR`) in a session of
its own, which writes the command's exit code into DIR. The agent keeps nothing else: when it
restarts, it finds its attempts in its data directory, re-adopts those still running (their
launcher's pid is alive) and reports the exits it missed. Stopping sends SIGTERM to the
group, then SIGKILL once the attempt's grace period has passed.

A job reports a checkpoint by creating `$CORRAL_CHECKPOINT_DIR/.checkpoint-done`; the agent
passes it on and removes the marker.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

MARKER = ".checkpoint-done"


def gpu_count() -> int:
    """The GPUs NVML sees here (0 without NVML or a driver)."""
    try:
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return 0


class Agent:
    def __init__(
        self,
        server: str,
        token: str,
        data_dir: Path,
        gpus: int,
        name: str | None = None,
        pool: str = "default",
        clock: Callable[[], float] = time.monotonic,
        client: httpx.Client | None = None,
    ) -> None:
        self.name = name or socket.gethostname()
        self.gpus, self.pool = gpus, pool
        self.dir = data_dir / "attempts"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.http = client or httpx.Client(base_url=server, timeout=10.0)
        self.http.headers["Authorization"] = f"Bearer {token}"
        self.kill_at: dict[int, float] = {}  # attempt -> when SIGKILL follows SIGTERM
        self.sent: dict[int, int] = {}  # attempt -> log bytes sent

    # --- talking to the server -----------------------------------------------------------

    def _post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.http.post(path, json=body or {})
        response.raise_for_status()
        return response.json()

    def register(self) -> None:
        self._post("/v1/agent/register", {"name": self.name, "gpus": self.gpus, "pool": self.pool})

    def tick(self) -> None:
        """One round: report exits, checkpoints and logs; take work; signal what must stop."""
        for attempt in self._attempts():
            self._ship_log(attempt)
            marker = self.dir / str(attempt) / "checkpoints" / MARKER
            if marker.exists():
                self._post(f"/v1/agent/attempts/{attempt}/checkpoint")
                marker.unlink(missing_ok=True)
            code = self._exit_code(attempt)
            if code is not None:
                self._post(f"/v1/agent/attempts/{attempt}/exited", {"exit_code": code, "node": self.name})
                self._forget(attempt)
        try:
            work = self._post(f"/v1/agent/{self.name}/heartbeat", {"running": self._attempts()})
        except httpx.HTTPStatusError as err:
            if err.response.status_code == 404:  # (the server forgot the node, or marked it down)
                self.register()
                return
            raise
        for spec in work["stop"]:
            self.stop(spec["attempt"], spec["grace_s"])
        for spec in work["start"]:
            self.start(spec)
        now = self.clock()
        for attempt, at in list(self.kill_at.items()):
            if now >= at:
                self._signal(attempt, signal.SIGKILL)
                del self.kill_at[attempt]

    def run(self, every_s: float = 0.5, stop: Callable[[], bool] = lambda: False) -> None:
        self.register()
        while not stop():
            try:
                self.tick()
            except httpx.HTTPError as err:  # (the server restarts: keep the processes, retry)
                print(f"agent {self.name}: {err}", file=sys.stderr)
            time.sleep(every_s)

    # --- processes -----------------------------------------------------------------------

    def start(self, spec: dict[str, Any]) -> None:
        """Start `spec`'s attempt once (a repeat of a started one does nothing), after any
        process still stopping on the same GPUs has gone."""
        attempt = int(spec["attempt"])
        folder = self.dir / str(attempt)
        if (folder / "pid").exists() or (self.dir.parent / "done" / str(attempt)).exists():
            return  # (started here already: running, or ended)
        busy = {g for other in self._attempts() if other != attempt for g in self._gpus_of(other)}
        if busy & set(spec["gpu_ids"]):
            return  # (asked again next round)
        folder.mkdir(parents=True, exist_ok=True)
        checkpoints = self.dir.parent / "checkpoints" / str(spec["job_id"])
        checkpoints.mkdir(parents=True, exist_ok=True)
        env = {
            **spec["env"],
            "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in spec["gpu_ids"]),
            "CORRAL_CHECKPOINT_DIR": str(checkpoints),
        }
        (folder / "spec.json").write_text(json.dumps({**spec, "env": env}))
        (folder / "checkpoints").symlink_to(checkpoints)
        pid = os.spawnv(
            os.P_NOWAIT, sys.executable, [sys.executable, "-m", "corral.live.launch", str(folder)]
        )
        (folder / "pid").write_text(str(pid))
        self._post(f"/v1/agent/attempts/{attempt}/started")

    def stop(self, attempt: int, grace_s: float) -> None:
        """SIGTERM now, SIGKILL after `grace_s` (once per attempt)."""
        if attempt in self.kill_at or not (self.dir / str(attempt) / "pid").exists():
            if not (self.dir / str(attempt)).exists():  # (never started here: nothing to stop)
                self._post(
                    f"/v1/agent/attempts/{attempt}/exited",
                    {"exit_code": -int(signal.SIGTERM), "node": self.name},
                )
            return
        if self._group(attempt) is None:
            return  # (its launcher has yet to start its group: the server asks again next round)
        self._signal(attempt, signal.SIGTERM)
        self.kill_at[attempt] = self.clock() + grace_s

    def _signal(self, attempt: int, sig: signal.Signals) -> None:
        group = self._group(attempt)
        if group is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, sig)

    def _group(self, attempt: int) -> int | None:
        path = self.dir / str(attempt) / "pgid"
        return int(path.read_text()) if path.exists() and path.read_text() else None

    def _attempts(self) -> list[int]:
        return sorted(int(p.name) for p in self.dir.iterdir() if p.name.isdigit() and (p / "pid").exists())

    def _gpus_of(self, attempt: int) -> list[int]:
        spec = self.dir / str(attempt) / "spec.json"
        return json.loads(spec.read_text())["gpu_ids"] if spec.exists() else []

    def _exit_code(self, attempt: int) -> int | None:
        """The command's exit code once its launcher wrote it; a launcher that died without
        writing one (killed with its group) counts as killed."""
        folder = self.dir / str(attempt)
        code = folder / "exit_code"
        if code.exists() and code.read_text().strip():
            return int(code.read_text())
        pid = int((folder / "pid").read_text())
        with contextlib.suppress(ChildProcessError):  # (reap our own child; not ours after a restart)
            os.waitpid(pid, os.WNOHANG)
        if _alive(pid):
            return None
        return int(code.read_text()) if code.exists() and code.read_text().strip() else -int(signal.SIGKILL)

    def _ship_log(self, attempt: int) -> None:
        """Send the output written since the last call. How far it got is kept beside the log,
        so that an agent restarted (re-adopting the process) does not send it again."""
        folder = self.dir / str(attempt)
        path, mark = folder / "output.log", folder / "shipped"
        if not path.exists():
            return
        if attempt not in self.sent:
            self.sent[attempt] = int(mark.read_text() or 0) if mark.exists() else 0
        sent = self.sent[attempt]
        with path.open("rb") as handle:
            handle.seek(sent)
            data = handle.read(1 << 20)
        if data:
            self._post(f"/v1/agent/attempts/{attempt}/log", {"text": data.decode(errors="replace")})
            self.sent[attempt] = sent + len(data)
            mark.write_text(str(sent + len(data)))

    def _forget(self, attempt: int) -> None:
        self._ship_log(attempt)
        self.kill_at.pop(attempt, None)
        self.sent.pop(attempt, None)
        folder = self.dir / str(attempt)
        done = self.dir.parent / "done"
        done.mkdir(exist_ok=True)
        shutil.move(str(folder), str(done / str(attempt)))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # (a zombie child counts as gone)
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True
