"""Choosing what to preempt so that a job can actually be placed, not just counted in.

Freeing enough GPUs by count is not enough for a gang that needs whole hosts in one rack or
pod: stopping jobs whose GPUs the gang cannot use loses their work for nothing, and a job
that preempts without starting is back next pass to preempt again. So candidates are added
in the caller's order (cheapest first) to a hypothetical free-GPU vector until a placement
exists on it, and only the candidates on the hosts of that placement are stopped.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from corral.scheduling.policy import View


def victims_for_placement(view: View, job: int, candidates: Iterable[int]) -> list[int] | None:
    """The victims among `candidates` (taken in order) whose GPUs, with the free ones, place
    `job`; [] if it fits already; None if even all of them would not do."""
    free = view.free_vector()
    pool = view.pool[job]
    gpus = view.gpus[job]
    total = view.free_gpus(pool)
    added: list[int] = []
    placement = view.place_on(job, free) if total >= gpus else None
    if placement is not None:
        return []
    next_try = gpus
    for victim in candidates:
        if not view.preemptible[victim]:
            continue
        _release(free, view.placement_of(victim))
        added.append(victim)
        total += view.gpus[victim]
        if total >= next_try:
            placement = view.place_on(job, free)
            if placement is not None:
                break
            # Topology, not count, is short: try again after a few more candidates.
            next_try = total + max(view.gpus[victim], total // 8)
    else:
        if added and total >= gpus:
            placement = view.place_on(job, free)
    if placement is None:
        return None
    hosts = {h for h, _ in placement}
    return [v for v in added if any(h in hosts for h, _ in view.placement_of(v) or ())]


def _release(free: np.ndarray, placement: tuple | None) -> None:
    for host, k in placement or ():
        free[host] += k
