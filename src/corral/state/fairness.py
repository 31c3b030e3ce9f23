"""Themis' time alone: the finish-time fairness that the `ftf` policy ranks jobs by and the
simulator's metrics report (rho = time in the cluster / time alone), written once for both.
"""

from __future__ import annotations

import numpy as np

Num = float | np.ndarray


def alone_s(duration_s: Num, gpus: Num, pool_gpus: Num, contenders: Num) -> Num:
    """Themis' time alone: a job's run time on a 1/N share of its pool, N the queues with
    live jobs there when it arrived; a gang larger than the share runs proportionally slower."""
    top = np.maximum if isinstance(duration_s, np.ndarray) else max  # (one job: plain floats)
    share = pool_gpus / top(contenders, 1)
    return duration_s * top(1.0, gpus / share)
