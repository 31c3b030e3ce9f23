"""A short evaluation job: it works for a few seconds and prints a score.

python examples/eval.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    time.sleep(args.seconds)
    print(f"eval on GPUs {os.environ.get('CUDA_VISIBLE_DEVICES', '')}: score 0.73", flush=True)


if __name__ == "__main__":
    main()
