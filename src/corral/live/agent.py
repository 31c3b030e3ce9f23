"""The node agent: registers the node's GPUs, heartbeats, and runs the attempts the server
gives it as process groups with `CUDA_VISIBLE_DEVICES` set to their GPUs.

Each attempt runs under a small launcher (`python -I launch.py DIR`) in a session of
its own, which writes the command's exit code into DIR. The agent keeps nothing else: when it
restarts, it finds its attempts in its data directory, re-adopts those still running (their
launcher's pid is alive) and reports the exits it missed. Stopping sends SIGTERM to the
group, then SIGKILL once the attempt's grace period has passed.

A job reports a checkpoint by creating `$CORRAL_CHECKPOINT_DIR/.checkpoint-done`; the agent
passes it on and removes the marker.

Each answer from the server renews the node's lease: the agent writes into DATA_DIR/lease the
monotonic time until which it holds (the time the request was sent, plus the fence the server
gives). The launchers read it and stop their jobs once it has passed (launch.py), so a node
cut off from the server, or whose agent died, runs nothing the server may give to another.
"""

from __future__ import annotations

import logging
import shutil
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from corral.live.rank import Rank

log = logging.getLogger(__name__)
DEFAULT_FENCE_S = 60.0  # a lease's length until the server says otherwise
MAX_BACKOFF_S = 10.0  # the longest wait between tries to reach the server


def gpu_count() -> int:
    """The GPUs NVML sees here (0 without NVML or a driver)."""
    try:
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception as err:  # (no library, no driver, no device: no GPUs to offer)
        log.info("no GPUs found through NVML: %s", err)
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
        lease_clock: Callable[[], float] = time.monotonic,
        real_gpus: bool = False,
    ) -> None:
        """`clock` times the agent's own waits (a grace before SIGKILL); `lease_clock` is
        the one its launchers read the lease by, the machine's monotonic time. `real_gpus`:
        the GPUs are devices (NVML found them) that a container is given, not fake ones."""
        self.lease_clock = lease_clock
        self.name = name or socket.gethostname()
        self.gpus, self.pool, self.real_gpus = gpus, pool, real_gpus
        # (absolute: a job's checkpoint folder is handed to processes that start elsewhere)
        self.dir = data_dir.expanduser().absolute() / "attempts"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.http = client or httpx.Client(base_url=server, timeout=10.0)
        self.http.headers["Authorization"] = f"Bearer {token}"
        self.kill_at: dict[int, float] = {}  # attempt -> when SIGKILL follows SIGTERM
        self.fence_s = DEFAULT_FENCE_S  # (the server says how long a lease holds)
        self.lease = data_dir / "lease"

    # --- talking to the server -----------------------------------------------------------

    def _post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.http.post(path, json=body or {})
        response.raise_for_status()
        return response.json()

    def _renew(self, path: str, body: dict[str, Any]) -> Any:
        """A call that renews the node's lease when the server answers it."""
        sent = self.lease_clock()
        answer = self._post(path, body)
        self.fence_s = float(answer.get("fence_s", self.fence_s))
        tmp = self.lease.with_suffix(".tmp")
        tmp.write_text(repr(sent + self.fence_s))
        tmp.replace(self.lease)
        return answer

    def register(self) -> None:
        self._renew("/v1/agent/register", {"name": self.name, "gpus": self.gpus, "pool": self.pool})

    def tick(self) -> None:
        """One round: report exits, checkpoints and logs; take work; signal what must stop."""
        for attempt in self._attempts():
            try:
                self._report(attempt)
            except httpx.HTTPStatusError as err:
                if err.response.status_code not in (404, 409, 422):
                    raise
                # (an attempt the server does not know, or has ended: said once, then let go)
                log.warning("agent %s: attempt %s is not the server's (%s): killed", self.name, attempt, err)
                self._rank(attempt).signal(signal.SIGKILL)
                self._forget(attempt, ship=False)
        try:
            work = self._renew(f"/v1/agent/{self.name}/heartbeat", {"running": self._attempts()})
        except httpx.HTTPStatusError as err:
            if err.response.status_code == 404:  # (the server forgot the node, or marked it down)
                log.warning(
                    "agent %s: the server does not know this node (%s): registering again", self.name, err
                )
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
                self._rank(attempt).signal(signal.SIGKILL)
                del self.kill_at[attempt]

    def _report(self, attempt: int) -> None:
        """Send an attempt's new output and checkpoint, and its exit once it has ended."""
        rank = self._rank(attempt)
        self._ship_log(attempt)
        if rank.take_checkpoint():
            self._post(f"/v1/agent/attempts/{attempt}/checkpoint")
        code = rank.exit_code()
        if code is not None:
            end = {"exit_code": code, "node": self.name, "fenced": rank.fenced}
            self._post(f"/v1/agent/attempts/{attempt}/exited", end)
            self._forget(attempt)

    def run(
        self,
        every_s: float = 0.5,
        stop: Callable[[], bool] = lambda: False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Register, then tick every `every_s` until `stop()`. While the server cannot be
        reached (not up yet, restarting) it tries again, backing off to `MAX_BACKOFF_S`;
        its processes run on meanwhile, until their lease runs out."""
        registered, wait_s = False, every_s
        while not stop():
            try:
                if not registered:
                    self.register()
                    registered = True
                self.tick()
                wait_s = every_s
            except httpx.HTTPError as err:  # (the server restarts: keep the processes, retry)
                log.warning("agent %s: %s (again in %.1f s)", self.name, err, wait_s)
                sleep(wait_s)
                wait_s = min(MAX_BACKOFF_S, wait_s * 2)
                continue
            sleep(every_s)

    # --- processes -----------------------------------------------------------------------

    def start(self, spec: dict[str, Any]) -> None:
        """Start `spec`'s attempt once (a repeat of a started one does nothing), after any
        process still stopping on the same GPUs has gone."""
        attempt = int(spec["attempt"])
        rank = self._rank(attempt)
        if rank.started or (self.dir.parent / "done" / str(attempt)).exists():
            return  # (started here already: running, or ended)
        busy = {g for other in self._attempts() if other != attempt for g in self._rank(other).gpu_ids()}
        if busy & set(spec["gpu_ids"]):
            return  # (asked again next round)
        checkpoints = self.dir.parent / "checkpoints" / str(spec["job_id"])
        rank.start({**spec, "lease": str(self.lease), "node": self.name}, checkpoints, self.real_gpus)
        self._post(f"/v1/agent/attempts/{attempt}/started")

    def stop(self, attempt: int, grace_s: float) -> None:
        """SIGTERM now, SIGKILL after `grace_s` (once per attempt)."""
        rank = self._rank(attempt)
        if attempt in self.kill_at or not rank.started:
            if not rank.folder.exists():  # (never started here: nothing to stop)
                self._post(
                    f"/v1/agent/attempts/{attempt}/exited",
                    {"exit_code": -int(signal.SIGTERM), "node": self.name},
                )
            return
        if rank.signal(signal.SIGTERM):  # (else its launcher has yet to start its group: the
            self.kill_at[attempt] = self.clock() + grace_s  # server asks again next round)

    def _rank(self, attempt: int) -> Rank:
        return Rank(self.dir / str(attempt))

    def _attempts(self) -> list[int]:
        return sorted(int(p.name) for p in self.dir.iterdir() if p.name.isdigit() and (p / "pid").exists())

    def _ship_log(self, attempt: int) -> None:
        """Send the output written since the last call, once."""
        rank = self._rank(attempt)
        sent, data = rank.unsent_output()
        if data:
            self._post(f"/v1/agent/attempts/{attempt}/log", {"text": data.decode(errors="replace")})
            rank.mark_sent(sent + len(data))

    def _forget(self, attempt: int, ship: bool = True) -> None:
        if ship:
            self._ship_log(attempt)
        self.kill_at.pop(attempt, None)
        done = self.dir.parent / "done"
        done.mkdir(exist_ok=True)
        shutil.move(str(self.dir / str(attempt)), str(done / str(attempt)))
