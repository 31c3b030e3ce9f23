"""The checkpoint model: what a run has done, saved and spent writing after running some time.

A job saves its state every `interval_s` of useful work, each save blocking it for
`write_s`; with no interval it saves only when stopped gracefully, so it keeps everything
then (and nothing when a host fails under it). The same arithmetic, scalar for one job and
vectorised for many (ranking preemption victims), so both agree to the bit.
"""

from __future__ import annotations

import math

import numpy as np

EPS = 1e-9  # a run that ends on a checkpoint boundary has completed it


def run_parts(elapsed_s: float, interval_s: float, write_s: float) -> tuple[float, float, float]:
    """Of `elapsed_s` seconds of a run (after its restart cost): the useful seconds, the
    useful seconds the last completed checkpoint holds (all of them with no interval), and
    the seconds spent writing checkpoints."""
    if interval_s <= 0.0:
        return elapsed_s, elapsed_s, 0.0
    done = math.floor(elapsed_s / (interval_s + write_s) + EPS)
    into = elapsed_s - done * (interval_s + write_s)
    return (
        done * interval_s + min(into, interval_s),
        done * interval_s,
        done * write_s + max(0.0, into - interval_s),
    )


def run_parts_many(
    elapsed_s: np.ndarray, interval_s: np.ndarray, write_s: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`run_parts`' useful and saved seconds for many runs at once."""
    cycle = np.where(interval_s > 0, interval_s + write_s, 1.0)
    done = np.floor(elapsed_s / cycle + EPS)
    useful = np.where(
        interval_s > 0, done * interval_s + np.minimum(elapsed_s - done * cycle, interval_s), elapsed_s
    )
    saved = np.where(interval_s > 0, done * interval_s, useful)
    return useful, saved


def wall_s(useful_s: float, interval_s: float, write_s: float) -> float:
    """Running time that `useful_s` seconds of work take, with a checkpoint write every
    interval (none after the last useful second)."""
    if interval_s <= 0.0 or write_s <= 0.0 or useful_s <= 0.0:
        return useful_s
    return useful_s + (math.ceil(useful_s / interval_s - EPS) - 1) * write_s
