"""Runs one attempt's command and records how it ended: `python -I launch.py DIR`.

It leads a session (and so a process group) of its own, so the agent can signal the whole
group and can restart without taking the job down. It writes its group id to DIR/pgid,
the command's output to DIR/output.log and, when the command ends, its exit code (negative
for a signal) to DIR/exit_code.

Fencing: where the spec names a lease file, the agent writes into it, at each renewal of its
node's lease with the server, the monotonic time until which the lease holds. Once that
time has passed (the agent is dead, or cannot reach the server), the server may soon give the
job to another node, so the launcher stops its own command first: SIGTERM to the group, then
SIGKILL after the job's grace, and DIR/fenced says why it ended. The server waits for the
lease, the grace and a margin before it starts the job anywhere else, so two copies of one
job never run at once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 0.25
RUNTIME_FAILED = (125, 126, 127)  # a container runtime's own exit codes (containers.py)


def lease_until(path: Path) -> float:
    """The monotonic time the agent's lease holds until (inf while it has written none)."""
    try:
        return float(path.read_text())
    except (OSError, ValueError):
        return float("inf")


def main(folder: Path) -> int:
    os.setsid()
    (folder / "pgid").write_text(str(os.getpgrp()))
    spec = json.loads((folder / "spec.json").read_text())
    env = {**os.environ, **spec["env"]}
    lease = Path(spec["lease"]) if spec.get("lease") else None
    # (a SIGTERM to the group reaches the command itself: the launcher only outlives it)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    workdir = spec.get("workdir")
    container = spec.get("container")  # (the command is the runtime's, where it runs in one)
    with (folder / "output.log").open("ab") as log:
        if container is not None and container["runtime"] is None:
            log.write(
                f"corral: the job runs in image {container['image']} but this node has no container "
                "runtime (podman or docker on its PATH)\n".encode()
            )
            (folder / "exit_code").write_text("127")
            return 127
        if workdir is not None and not os.path.isdir(workdir):
            log.write(f"corral: cannot start in {workdir}: no such folder on this node\n".encode())
            (folder / "exit_code").write_text("127")
            return 127
        try:
            child = subprocess.Popen(
                spec["command"],
                cwd=workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL),
            )
        except (OSError, ValueError) as err:
            why = getattr(err, "strerror", None) or str(err)
            log.write(f"corral: cannot start {spec['command'][0]!r}: {why}\n".encode())
            (folder / "exit_code").write_text("127")
            return 127
        kill_at = None
        while True:
            try:
                code = child.wait(timeout=POLL_S)
                break
            except subprocess.TimeoutExpired:
                pass
            if lease is None:
                continue
            now, until = time.monotonic(), lease_until(lease)
            if kill_at is None and now > until:
                (folder / "fenced").write_text(f"lease expired at {until:.3f}\n")
                log.write(b"corral: this node lost its lease with the server: stopping the job\n")
                log.flush()
                os.killpg(os.getpgrp(), signal.SIGTERM)
                kill_at = now + float(spec.get("grace_s", 30.0))
            elif kill_at is not None and now >= kill_at:
                os.killpg(os.getpgrp(), signal.SIGKILL)  # (the launcher too: fenced says why)
    if container is not None:
        if code in RUNTIME_FAILED:
            with (folder / "output.log").open("ab") as log:
                log.write(
                    f"corral: the container runtime could not run the job in image {container['image']} "
                    f"(exit {code}): its message is above\n".encode()
                )
        subprocess.run(  # (gone already with --rm, unless killed: then removed here)
            [container["runtime"], "rm", "-f", container["name"]],
            capture_output=True,
            timeout=30,
            check=False,
        )
    tmp = folder / "exit_code.tmp"
    tmp.write_text(str(code))
    tmp.replace(folder / "exit_code")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
