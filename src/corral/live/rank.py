"""One rank of an attempt on one node, kept in a folder: the launcher's pid and process group,
the command's output and exit code, and how much of the output was already sent. Everything
lives in the folder, so whoever runs the rank (the node agent, or a Ray actor) can restart and
take it up again.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from corral.live.containers import Container, container_name, find_runtime

MARKER = ".checkpoint-done"
LOG_CHUNK_BYTES = 1 << 20
# Run as a file in isolated mode: it needs only the standard library, and a rank should not
# wait for the corral package to import before its command starts.
LAUNCHER = str(Path(__file__).with_name("launch.py"))


class Rank:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @property
    def started(self) -> bool:
        return (self.folder / "pid").exists()

    def start(self, spec: dict[str, Any], checkpoints: Path, real_gpus: bool = False) -> None:
        """Start the command under the launcher (`launch.py`) with `spec`'s environment plus
        CUDA_VISIBLE_DEVICES (its GPU indices) and CORRAL_CHECKPOINT_DIR; in a container of
        its image where it names one (containers.py: `real_gpus` passes the devices in)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        checkpoints.mkdir(parents=True, exist_ok=True)
        env = {
            **spec["env"],
            "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in spec["gpu_ids"]),
            "CORRAL_CHECKPOINT_DIR": str(checkpoints),
        }
        if spec.get("image"):
            runtime = find_runtime(spec.get("runtime"))
            name = container_name(int(spec["attempt"]), spec.get("node", "node"))
            spec = {**spec, "container": {"runtime": runtime, "name": name, "image": spec["image"]}}
            if runtime is not None:
                container = Container(
                    runtime, name, spec["image"], tuple(spec.get("mounts") or ()), tuple(spec["gpu_ids"]),
                    real_gpus, tuple(env), str(checkpoints), spec.get("workdir"),
                )  # fmt: skip
                spec["command"] = container.run_args(spec["command"])
        (self.folder / "spec.json").write_text(json.dumps({**spec, "env": env}))
        link = self.folder / "checkpoints"
        if not link.is_symlink():
            link.symlink_to(checkpoints)
        pid = os.spawnv(os.P_NOWAIT, sys.executable, [sys.executable, "-I", LAUNCHER, str(self.folder)])
        (self.folder / "pid").write_text(str(pid))

    def gpu_ids(self) -> list[int]:
        spec = self.folder / "spec.json"
        return json.loads(spec.read_text())["gpu_ids"] if spec.exists() else []

    def group(self) -> int | None:
        """The command's process group, once the launcher has written it."""
        path = self.folder / "pgid"
        return int(path.read_text()) if path.exists() and path.read_text() else None

    def signal(self, sig: signal.Signals) -> bool:
        """Signal the rank's process group; False while the launcher has yet to make one."""
        group = self.group()
        if group is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, sig)
        if sig == signal.SIGKILL:  # (the runtime's client dies; its container would live on)
            self._remove_container()
        return True

    def _remove_container(self) -> None:
        spec = json.loads((self.folder / "spec.json").read_text())
        held = spec.get("container")
        if held and held.get("runtime"):
            Container(held["runtime"], held["name"], held["image"], (), (), False, (), "", None).remove()

    def exit_code(self) -> int | None:
        """The command's exit code once its launcher wrote it; a launcher that died without
        writing one (killed with its group) counts as killed."""
        code = self.folder / "exit_code"
        if code.exists() and code.read_text().strip():
            return int(code.read_text())
        pid = int((self.folder / "pid").read_text())
        with contextlib.suppress(ChildProcessError):  # (reap our own child; not ours after a restart)
            os.waitpid(pid, os.WNOHANG)
        if alive(pid):
            return None
        return int(code.read_text()) if code.exists() and code.read_text().strip() else -int(signal.SIGKILL)

    @property
    def fenced(self) -> bool:
        """Whether its launcher stopped it because the node's lease ran out."""
        return (self.folder / "fenced").exists()

    def take_checkpoint(self) -> bool:
        """Whether the job reported a checkpoint since the last call (the marker is removed)."""
        marker = self.folder / "checkpoints" / MARKER
        if not marker.exists():
            return False
        marker.unlink(missing_ok=True)
        return True

    def unsent_output(self) -> tuple[int, bytes]:
        """Where the output not yet sent starts, and up to a chunk of it."""
        path, mark = self.folder / "output.log", self.folder / "shipped"
        if not path.exists():
            return 0, b""
        sent = int(mark.read_text() or 0) if mark.exists() else 0
        with path.open("rb") as handle:
            handle.seek(sent)
            return sent, handle.read(LOG_CHUNK_BYTES)

    def mark_sent(self, offset: int) -> None:
        """Record that the output up to `offset` was sent (kept beside the log, so a restarted
        runner does not send it twice)."""
        (self.folder / "shipped").write_text(str(offset))


def alive(pid: int) -> bool:
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
