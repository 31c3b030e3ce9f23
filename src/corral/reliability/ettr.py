"""Effective training time ratio (ETTR) in closed form, and the checkpoint intervals that
maximise it. These are the formulas simulation is checked against (REFERENCE.md section 4).

Kokolis et al. 2024 ("Revisiting Reliability in Large-Scale Machine Learning Research
Clusters"), with job failure rate lambda = nodes x r_f, restart overhead u0, checkpoint
interval dt and blocking checkpoint write w:

    E[ETTR] ~= (1 - lambda (u0 + dt/2)) / (1 + w/dt)

Young (1974): tau = sqrt(2 delta M). Daly (2006): tau = sqrt(2 delta M) [1 + (1/3)
sqrt(delta / 2M) + (1/9)(delta / 2M)] - delta, for checkpoint cost delta and MTBF M
(Daly's formula holds for delta < 2M; beyond it the interval is M).
"""

from __future__ import annotations

import math

DAY_S = 86400.0


def mtbf_s(nodes: float, rate_per_1000_node_days: float) -> float:
    """Mean time between failures of a job spanning `nodes` hosts."""
    if nodes <= 0 or rate_per_1000_node_days <= 0:
        return math.inf
    return DAY_S * 1000.0 / (nodes * rate_per_1000_node_days)


def expected_ettr(
    nodes: float, rate_per_1000_node_days: float, checkpoint_s: float, restart_s: float, write_s: float
) -> float:
    """Kokolis et al.'s expected ETTR, clipped at 0 (the formula goes negative when failures
    come faster than a restart plus half an interval). Its limits: an interval of 0, free
    checkpoints taken continuously (`write_s` 0), loses only restarts; an infinite one, never
    checkpointing, keeps everything of a job that never fails and nothing of one that does."""
    if not checkpoint_s >= 0 or (checkpoint_s == 0 and write_s > 0):
        raise ValueError("checkpoint_s must be > 0 (or 0 with free checkpoints)")
    lam = 1.0 / mtbf_s(nodes, rate_per_1000_node_days)
    if checkpoint_s == 0:
        return max(0.0, 1.0 - lam * restart_s)
    if math.isinf(checkpoint_s):
        return 1.0 if lam == 0 else 0.0
    return max(0.0, (1.0 - lam * (restart_s + checkpoint_s / 2.0)) / (1.0 + write_s / checkpoint_s))


def best_interval_s(write_s: float, mtbf: float) -> float:
    """Daly's interval with its limits: a job that never fails never checkpoints (inf), and
    free checkpoints are taken continuously (0)."""
    if math.isinf(mtbf):
        return math.inf
    if write_s == 0:
        return 0.0
    return daly_interval_s(write_s, mtbf)


def young_interval_s(write_s: float, mtbf: float) -> float:
    return math.sqrt(2.0 * write_s * mtbf)


def daly_interval_s(write_s: float, mtbf: float) -> float:
    if write_s >= 2.0 * mtbf:
        return mtbf
    x = write_s / (2.0 * mtbf)
    return math.sqrt(2.0 * write_s * mtbf) * (1.0 + math.sqrt(x) / 3.0 + x / 9.0) - write_s
