"""Pipeline schedules and what each costs: the bubble, the point-to-point messages on the
critical path, and the micro-batches whose activations a rank holds at its peak.

1F1B (PipeDream-Flush; Narayanan et al. 2021, section 2.2.1): p stages, m micro-batches.
A rank idles (p - 1) stage-times while the pipeline fills and drains, and holds p - r
micro-batches' activations at its peak (rank r, counted from 0).

Interleaved 1F1B (Narayanan et al. 2021, section 2.2.2; Megatron-LM's schedule): each rank
holds v chunks of its layers. The bubble shrinks to (p - 1) / v stage-times, but every
micro-batch crosses v times as many stage boundaries, so the messages grow v-fold. Megatron
warms up with 2 (p - r - 1) + (v - 1) p chunks before its first backward, so the peak is one
more chunk than that (capped at all m v chunks), each 1/v of the rank's layers.

Messages: Megatron's schedules exchange activations and gradients in blocking batched sends
between compute steps, so each of a rank's 2 m v exchanges per step sits on its critical
path, and the fill and drain add the p v - 1 boundaries each way that a micro-batch crosses
while this rank waits.
"""

from __future__ import annotations


def bubble_stages(p: int, v: int) -> float:
    """Idle time per step, in units of one micro-batch's forward and backward on a rank."""
    return (p - 1) / v


def p2p_messages(p: int, v: int, m: int) -> int:
    """Point-to-point transfers (one micro-batch's activations or their gradients across
    one stage boundary) on a rank's critical path per step; none without a pipeline."""
    if p == 1:
        return 0
    return 2 * m * v + 2 * (p * v - 1)


def in_flight(p: int, v: int, m: int, rank: int) -> float:
    """Micro-batches' worth of a rank's layers whose activations are alive at its peak."""
    if v == 1:
        return float(min(m, p - rank))
    chunks = min(m * v, 2 * (p - rank - 1) + (v - 1) * p + 1)
    return chunks / v
