"""Runs one attempt's command and records how it ended: `python -I launch.py DIR`.

It leads a session (and so a process group) of its own, so the agent can signal the whole
group and can restart without taking the job down. It writes its group id to DIR/pgid,
the command's output to DIR/output.log and, when the command ends, its exit code (negative
for a signal) to DIR/exit_code. It passes SIGTERM on to the command and otherwise waits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path


def main(folder: Path) -> int:
    os.setsid()
    (folder / "pgid").write_text(str(os.getpgrp()))
    spec = json.loads((folder / "spec.json").read_text())
    env = {**os.environ, **spec["env"]}
    with (folder / "output.log").open("ab") as log:
        try:
            child = subprocess.Popen(
                spec["command"], env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        except OSError as err:
            log.write(f"corral: cannot start {spec['command'][0]}: {err.strerror}\n".encode())
            (folder / "exit_code").write_text("127")
            return 127
        signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
        code = child.wait()
    tmp = folder / "exit_code.tmp"
    tmp.write_text(str(code))
    tmp.replace(folder / "exit_code")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
