"""Waiting jobs grouped by size (GPUs, topology level), so a pass can jump to the next job
that could start instead of walking a long queue job by job.

When a pool is nearly full, most waiting jobs cannot start: too many GPUs for what is free,
or a size already found unplaceable since GPUs were last released (placement failures are
monotone in size, engine.View.place). A queue holds only a few distinct sizes, so finding
the first job in order of a size that passes such a test costs O(sizes log n), not O(n).
"""

from __future__ import annotations

from collections.abc import Callable

from sortedcontainers import SortedList

from corral.scheduling.policy import View

Size = tuple[int, "int | None"]


class BySize:
    def __init__(self) -> None:
        self.groups: dict[Size, SortedList] = {}

    def add(self, size: Size, entry: tuple) -> None:
        group = self.groups.get(size)
        if group is None:
            group = self.groups[size] = SortedList()
        group.add(entry)

    def remove(self, size: Size, entry: tuple) -> None:
        group = self.groups[size]
        group.remove(entry)
        if not group:
            del self.groups[size]

    def first_after(self, entry: tuple | None, allowed: Callable[[int, int | None], bool]) -> tuple | None:
        """The first entry after `entry` (None: from the start) whose size is `allowed`.
        Groups with nothing after `entry`, or nothing before the best so far, are passed
        over before `allowed` is asked."""
        best = None
        for (gpus, level), group in self.groups.items():
            if (entry is not None and group[-1] <= entry) or (best is not None and group[0] >= best):
                continue
            if not allowed(gpus, level):
                continue
            at = 0 if entry is None else group.bisect_right(entry)
            if at < len(group) and (best is None or group[at] < best):
                best = group[at]
        return best


def startable(view: View, pool: int) -> Callable[[int, int | None], bool]:
    """Whether a job of a size could start now in `pool`: it fits the free GPUs and has not
    been found unplaceable since GPUs were last released."""
    free = view.free_gpus(pool)
    return lambda gpus, level: gpus <= free and gpus < view.unplaceable_from(pool, level)
