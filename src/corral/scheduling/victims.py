"""Choosing what to preempt so that a job can actually be placed, not just counted in.

Freeing enough GPUs by count is not enough for a gang that needs whole hosts in one rack or
pod: stopping jobs whose GPUs the gang cannot use loses their work for nothing, and a job
that preempts without starting is back next pass to preempt again. So candidates are added
in the caller's order (cheapest first) to a hypothetical free-GPU vector until a placement
exists on it; then every candidate the job can be placed without is given back, costliest
first, so no job is stopped whose GPUs the placement does not use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from corral.scheduling.policy import View
from corral.state.allocation import FreeTally, Placement


def victims_for_placement(view: View, job: int, candidates: Iterable[int]) -> list[int] | None:
    """The victims among `candidates` (taken in order) whose GPUs, with the free ones, place
    `job`; [] if it fits already; None if even all of them would not do."""
    free = view.free_vector()
    if view.free_gpus(view.pool[job]) >= view.gpus[job] and view.place_on(job, free) is not None:
        return []
    added, placement = grow_until_placed(view, job, candidates, lambda v: bool(view.preemptible[v]))
    if placement is None:
        return None
    return needed(view, job, added)


def needed(view: View, job: int, chosen: list[int], still: Callable[[int], bool] | None = None) -> list[int]:
    """`chosen` (cheapest first, all together placing `job`) less those the job does without:
    each, costliest first, is given back if `job` still has a placement, and `still(victim)`
    (say, the quota still admits it; it undoes what it tried if not) allows."""
    free = view.free_with(chosen)
    pool, gpus = view.pool[job], int(view.gpus[job])
    # A job on one host has a placement while some host of its pool has room for it: kept
    # as a count of such hosts rather than asked of the placer for every victim.
    roomy = int(np.count_nonzero(free[view.pool_hosts(pool)] >= gpus))
    one_host = gpus <= view.max_host_gpus(pool)
    keep = []
    for victim in reversed(chosen):
        placement = view.placement_of(victim) or ()
        for host, k in placement:
            roomy -= int(free[host] >= gpus > free[host] - k)
            free[host] -= k
        placed = roomy > 0 if one_host else view.place_on(job, free) is not None
        if placed and (still is None or still(victim)):
            continue
        for host, k in placement:
            roomy += int(free[host] < gpus <= free[host] + k)
            free[host] += k
        keep.append(victim)
    return keep[::-1]


def grow_until_placed(
    view: View,
    job: int,
    candidates: Iterable[int],
    take: Callable[[int], bool],
    ready: Callable[[], bool] = lambda: True,
) -> tuple[list[int], Placement | None]:
    """Free `candidates` in order on a hypothetical free-GPU vector (those `take` accepts)
    until `job` has a placement there, trying only once `ready()` holds. Returns the
    candidates freed and the placement, or None if even all of them would not do."""
    tally = FreeTally(view.free_vector())
    gpus = int(view.gpus[job])
    total = view.free_gpus(view.pool[job])
    one_host = gpus <= view.max_host_gpus(view.pool[job])
    # A job on one host is placed once some host has room, and only freed hosts gain it.
    host_found = one_host and view.place_on(job, tally.vector()) is not None
    added: list[int] = []
    next_try = gpus
    for victim in candidates:
        if not take(victim):
            continue
        added.append(victim)
        total += view.gpus[victim]
        touched = tally.release(view.placement_of(victim))
        if one_host:
            host_found = host_found or any(left >= gpus for _, left in touched)
            if host_found and ready():
                return added, view.place_on(job, tally.vector())
        elif total >= next_try and ready():
            found = view.place_on(job, tally.vector())
            if found is not None:
                return added, found
            # Topology, not count, is short: try again after a few more candidates.
            next_try = total + max(view.gpus[victim], total // 8)
    if added and total >= gpus and ready():
        return added, view.place_on(job, tally.vector())
    return added, None


def places_with(view: View, job: int, freed: Sequence[int] | np.ndarray) -> bool:
    """Whether `job` has a placement once all of `freed` release their GPUs."""
    return view.place_on(job, view.free_with(freed)) is not None
