"""The part of podman's command line a corral agent uses (run, stop, kill, rm, inspect), for
tests on machines where no OCI container can start: `run` runs the command as a plain
process (no image, no isolation) with only the environment it was given by name, in the
working folder it names, proxying SIGTERM to it as podman's attached client does, and exits
with its code (125 where podman itself would fail: an unknown image, a name in use, a
missing mount source; 127 for a command not found).

Images it knows: FAKE_PODMAN_IMAGES (comma-separated). Its state (one file per container)
and a log of every call (calls.jsonl) are in FAKE_PODMAN_STATE.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

VALUED = {"--name", "--network", "-e", "--env", "-v", "--volume", "-w", "--workdir", "--device", "--gpus"}


def install(folder: Path, images: str = "busybox") -> dict[str, str]:
    """A `podman` in `folder`/bin that runs this one, knowing `images`: the environment
    (PATH first, and where its state goes) that puts it before any other."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "podman").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__)}" "$@"\n')
    (bin_dir / "podman").chmod(0o755)
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_PODMAN_STATE": str(folder / "podman-state"),
        "FAKE_PODMAN_IMAGES": images,
    }


def fail(message: str, code: int = 125) -> int:
    print(f"Error: {message}", file=sys.stderr)
    return code


def run(args: list[str]) -> int:
    options: dict[str, list[str]] = {}
    flags = set()
    i = 0
    while i < len(args) and args[i].startswith("-"):
        if args[i] in VALUED:
            options.setdefault(args[i], []).append(args[i + 1])
            i += 2
        else:
            flags.add(args[i])
            i += 1
    image, command = args[i], args[i + 1 :]
    if image not in os.environ.get("FAKE_PODMAN_IMAGES", "").split(","):
        return fail(f"{image}: image not known")
    name = options.get("--name", [f"c{os.getpid()}"])[0]
    state = CONTAINERS / name
    if state.exists():
        return fail(f'the container name "{name}" is already in use')
    for volume in options.get("-v", []):
        source = volume.split(":")[0]
        if not os.path.exists(source):
            return fail(f"statfs {source}: no such file or directory")
    env = {"PATH": os.environ["PATH"], "container": "podman"}
    env |= {k: os.environ[k] for k in options.get("-e", []) if k in os.environ}
    workdir = options.get("-w", [None])[0]
    try:
        child = subprocess.Popen(command, cwd=workdir, env=env)
    except OSError:
        return fail(f"crun: executable file `{command[0]}` not found in $PATH", 127)
    CONTAINERS.mkdir(parents=True, exist_ok=True)
    state.write_text(
        json.dumps({"pid": child.pid, "image": image, "options": options, "flags": sorted(flags)})
    )
    signal.signal(signal.SIGTERM, lambda sig, _: child.send_signal(sig))  # (--sig-proxy)
    code = child.wait()
    if "--rm" in flags:
        state.unlink(missing_ok=True)
    return code if code >= 0 else 128 - code


def signal_container(name: str, sig: signal.Signals) -> int:
    state = CONTAINERS / name
    if not state.exists():
        return fail(f'no container with name or ID "{name}" found: no such container')
    with contextlib.suppress(ProcessLookupError):
        os.kill(json.loads(state.read_text())["pid"], sig)
    return 0


STATE = Path(os.environ.get("FAKE_PODMAN_STATE", "."))
CONTAINERS = STATE / "containers"


def main(argv: list[str]) -> int:
    STATE.mkdir(parents=True, exist_ok=True)
    with (STATE / "calls.jsonl").open("a") as calls:
        calls.write(json.dumps(argv) + "\n")
    verb, args = argv[0], argv[1:]
    if verb == "run":
        return run(args)
    if verb == "stop":
        code = signal_container(args[-1], signal.SIGTERM)
        time.sleep(0.5)
        signal_container(args[-1], signal.SIGKILL)
        return code
    if verb == "kill":
        return signal_container(args[-1], signal.SIGKILL)
    if verb == "rm":
        state = CONTAINERS / args[-1]
        if not state.exists():
            return 0 if "-f" in args else fail(f'no container with name or ID "{args[-1]}" found')
        signal_container(args[-1], signal.SIGKILL)
        state.unlink(missing_ok=True)
        return 0
    if verb == "inspect":
        state = CONTAINERS / args[-1]
        if not state.exists():
            return fail(f'no such object: "{args[-1]}"')
        print(json.dumps([json.loads(state.read_text())]))
        return 0
    return fail(f"unknown command {verb!r} for podman")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
