"""A multi-node Ray cluster on this machine for the tests: a head without GPUs and worker
nodes with fake GPUs (`--num-gpus`) and corral's node labels, each node a `ray start
--block` process that the tests can kill to lose that node. Ray binds to the address it
finds for this machine (its own choice; nothing leaves the machine)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.live import free_port

RAY = str(Path(sys.executable).with_name("ray"))


class RayCluster:
    def __init__(self, workers: dict[str, int], pool: str = "default") -> None:
        from ray._private.services import get_node_ip_address

        self.port = free_port()
        self.address = f"{get_node_ip_address()}:{self.port}"
        # Token authentication off for the nodes and for this process's client alike: a token
        # that an earlier local `ray.init()` left in ~/.ray would switch `ray start` to it.
        os.environ["RAY_AUTH_MODE"] = "disabled"
        self.env = {  # (a lost node is noticed in a few seconds rather than Ray's default 15-30 s)
            **os.environ,
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_health_check_period_ms": "1000",
            "RAY_health_check_timeout_ms": "3000",
            "RAY_health_check_failure_threshold": "5",
        }
        self.nodes: dict[str, subprocess.Popen] = {}
        try:
            self._start(
                "head", ["--head", f"--port={self.port}", "--num-gpus=0", "--include-dashboard=false"]
            )
            self.wait_for(set())
            names: set[str] = set()
            for name, gpus in workers.items():  # (one at a time: nodes starting together on one
                self.add(name, gpus, pool)  # machine can pick the same socket names)
                names.add(name)
                self.wait_for(names)
        except BaseException:
            self.stop()
            raise

    def _start(self, name: str, args: list[str]) -> None:
        common = ["--num-cpus=1", "--disable-usage-stats", "--block"]
        self.nodes[name] = subprocess.Popen(
            [RAY, "start", *args, *common],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def add(self, name: str, gpus: int, pool: str = "default") -> None:
        labels = json.dumps({"corral.io/node": name, "corral.io/pool": pool})
        self._start(name, [f"--address={self.address}", f"--num-gpus={gpus}", f"--labels={labels}"])

    def wait_for(self, names: set[str], limit_s: float = 60.0) -> None:
        """Until exactly `names` are the alive GPU nodes (bounded)."""
        import ray

        from corral.live.ray_executor import ray_nodes

        until = time.monotonic() + limit_s
        while time.monotonic() < until:
            if ray.is_initialized() and set(ray_nodes()) == names:
                return
            if not ray.is_initialized():
                with contextlib.suppress(ConnectionError):
                    ray.init(
                        address=self.address, namespace="corral", logging_level="ERROR", log_to_driver=False
                    )
            time.sleep(0.5)
        raise AssertionError(f"Ray nodes never became {sorted(names)}")

    def kill(self, name: str) -> None:
        """Lose a node: its `ray start` process group, raylet and workers, killed at once."""
        process = self.nodes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        import ray

        ray.shutdown()
        for process in self.nodes.values():
            os.killpg(process.pid, signal.SIGTERM)
        until = time.monotonic() + 5.0  # (then killed: nothing of a test cluster is kept)
        for process in self.nodes.values():
            try:
                process.wait(timeout=max(0.1, until - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        # (`ray start` leaves its address for later `ray.init()` calls to join: not this one)
        current = Path("/tmp/ray/ray_current_cluster")
        if current.exists() and current.read_text().strip() == self.address:
            current.unlink(missing_ok=True)
