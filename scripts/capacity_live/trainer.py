"""An elastic training job for the live capacity run: it works WORLD_SIZE GPU-seconds per
second once it has loaded its checkpoint (RESTART_S), saves its progress every SAVE_S and
on SIGTERM to CORRAL_CHECKPOINT_DIR/progress.json, and resumes from it at whatever size it
is started with next. The saved `gpu_s` is its goodput."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

RESTART_S = float(os.environ.get("TRAIN_RESTART_S", "1.5"))
SAVE_S = 1.0

folder = Path(os.environ["CORRAL_CHECKPOINT_DIR"])
folder.mkdir(parents=True, exist_ok=True)
progress = folder / "progress.json"
state = json.loads(progress.read_text()) if progress.exists() else {"gpu_s": 0.0, "restarts": 0}
world = int(os.environ["WORLD_SIZE"])
stopping = False


def save() -> None:
    tmp = folder / "progress.tmp"
    tmp.write_text(json.dumps(state))
    tmp.replace(progress)


def on_term(*_: object) -> None:
    global stopping
    stopping = True


signal.signal(signal.SIGTERM, on_term)
state["restarts"] += 1
time.sleep(RESTART_S)  # (loading the checkpoint, building the model at this size)
last = saved = time.monotonic()
while not stopping:
    time.sleep(0.2)
    now = time.monotonic()
    state["gpu_s"] += world * (now - last)
    last = now
    if now - saved >= SAVE_S:
        save()
        saved = now
save()
sys.exit(143)
