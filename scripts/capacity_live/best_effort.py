"""A best-effort research job for the live capacity run: it works for WORK_S seconds in all,
saving its progress every second and on SIGTERM to CORRAL_CHECKPOINT_DIR, so a preempted
run resumes where it stopped."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

WORK_S = float(os.environ.get("BEST_EFFORT_WORK_S", "20"))
folder = Path(os.environ["CORRAL_CHECKPOINT_DIR"])
folder.mkdir(parents=True, exist_ok=True)
done_file = folder / "done_s"
done = float(done_file.read_text()) if done_file.exists() else 0.0
stop = False


def on_term(*_: object) -> None:
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
last = time.monotonic()
while done < WORK_S and not stop:
    time.sleep(0.2)
    now = time.monotonic()
    done, last = done + (now - last), now
    done_file.write_text(f"{done}")
sys.exit(0 if done >= WORK_S else 143)
