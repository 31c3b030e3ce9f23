"""A training job as corral runs it: it counts steps, saves its step to
$CORRAL_CHECKPOINT_DIR every few steps and when it is stopped (SIGTERM), says so with the
marker file corral's agent watches, and resumes from its last checkpoint when started again.

    python examples/train.py [--steps 100] [--step-s 0.1] [--every 10]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path


def save(folder: Path, step: int) -> None:
    """The step, written whole, then the marker that tells corral a checkpoint is complete."""
    tmp = folder / "step.tmp"
    tmp.write_text(str(step))
    tmp.replace(folder / "step")
    (folder / ".checkpoint-done").touch()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--step-s", type=float, default=0.1)
    parser.add_argument("--every", type=int, default=10, help="steps between checkpoints")
    args = parser.parse_args()
    folder = Path(os.environ.get("CORRAL_CHECKPOINT_DIR", "checkpoints"))
    folder.mkdir(parents=True, exist_ok=True)
    saved = folder / "step"
    step = int(saved.read_text()) if saved.exists() else 0
    print(f"attempt {os.environ.get('CORRAL_ATTEMPT', '?')}: from step {step}, "
          f"on GPUs {os.environ.get('CUDA_VISIBLE_DEVICES', '')}", flush=True)  # fmt: skip
    stopped = False

    def stop(*_: object) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGTERM, stop)
    while step < args.steps:
        if stopped:
            save(folder, step)
            print(f"stopped at step {step}: saved", flush=True)
            return 143
        time.sleep(args.step_s)
        step += 1
        if step % args.every == 0:
            save(folder, step)
    save(folder, step)
    print(f"done: {step} steps", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
