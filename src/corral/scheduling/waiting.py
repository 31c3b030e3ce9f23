"""Waiting jobs grouped by size (GPUs, topology level), so a pass can jump to the next job
that could start instead of walking a long queue job by job.

When a pool is nearly full, most waiting jobs cannot start: too many GPUs for what is free,
or a size already found unplaceable since GPUs were last released (placement failures are
monotone in size, engine.View.place). A queue holds only a few distinct sizes, so finding
the first job in order of a size that passes such a test costs O(sizes log n), not O(n).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from sortedcontainers import SortedList

from corral.scheduling.policy import View

Size = tuple[int, "int | None"]


class BySize:
    """Entries are (key, job) pairs, grouped by the job's size. They are sorted into their
    groups only when the index is first read after they came: an entry removed before that
    (a job that starts on arrival) costs a dict entry, not two sorted insertions and
    removals, and its size is never looked up.

    With `runs`, each group also keeps its entries sorted by how long each job would run
    (`View.run_s`, fixed while it waits unless the view's `revisions` move), to find those
    that end by a time without looking at the others."""

    def __init__(self, view: View, runs: bool = False) -> None:
        self.view = view
        self.groups: dict[Size, SortedList] = {}
        self.pending: dict[int, tuple] = {}  # job -> entry, not yet in `groups`
        self.runs: dict[Size, SortedList] | None = {} if runs else None  # of (run_s, entry)
        self.run_of: dict[int, float] = {}  # job -> its run_s as sorted in
        self.revisions = view.revisions()

    def _size(self, job: int) -> Size:
        return (self.view.gpus[job], self.view.level[job])

    def add(self, entry: tuple) -> None:
        self.pending[entry[1]] = entry

    def remove(self, entry: tuple) -> bool:
        """Drop `entry`; whether it had been sorted in."""
        if self.pending.pop(entry[1], None) is not None:
            return False
        size = self._size(entry[1])
        group = self.groups[size]
        group.remove(entry)
        if not group:
            del self.groups[size]
        if self.runs is not None:
            self.runs[size].remove((self.run_of.pop(entry[1]), entry))
            if not group:
                del self.runs[size]
        return True

    def sort_in(self) -> list[tuple]:
        """Sort the pending entries into their groups; the entries sorted in."""
        added = list(self.pending.values())
        for entry in added:
            size = self._size(entry[1])
            group = self.groups.get(size)
            if group is None:
                group = self.groups[size] = SortedList()
            group.add(entry)
        self.pending.clear()
        if self.runs is not None:
            runs_to_sort = added
            if self.revisions != self.view.revisions():  # (some waiting job's work changed)
                self.revisions = self.view.revisions()
                self.runs.clear()
                self.run_of.clear()
                runs_to_sort = [entry for group in self.groups.values() for entry in group]
            for entry in runs_to_sort:
                run = self.run_of[entry[1]] = self.view.run_s(entry[1])
                size = self._size(entry[1])
                runs = self.runs.get(size)
                if runs is None:
                    runs = self.runs[size] = SortedList()
                runs.add((run, entry))
        return added

    def ending_by(self, size: Size, ends: Callable[[float], bool], after: tuple) -> list[tuple]:
        """The entries of `size` after `after`, in order, whose run `ends` (true for every
        run up to some length, false beyond: the runs sorted are searched for that length)."""
        assert self.runs is not None
        runs = self.runs[size]
        lo, hi = 0, len(runs)
        while lo < hi:
            mid = (lo + hi) // 2
            if ends(runs[mid][0]):
                lo = mid + 1
            else:
                hi = mid
        return sorted(entry for _, entry in runs.islice(0, lo) if entry > after)

    def first_after(self, entry: tuple | None, allowed: Callable[[int, int | None], bool]) -> tuple | None:
        """The first entry after `entry` (None: from the start) whose size is `allowed`.
        Groups with nothing after `entry`, or nothing before the best so far, are passed
        over before `allowed` is asked."""
        if self.pending:
            self.sort_in()
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


class Cursor:
    """Entries in order, read forward: the first after a point that only moves on."""

    def __init__(self, entries: Iterator[tuple]) -> None:
        self.entries = entries
        self.next: tuple | None = next(entries, None)

    def after(self, at: tuple) -> tuple | None:
        while self.next is not None and self.next <= at:
            self.next = next(self.entries, None)
        return self.next


def startable(view: View, pool: int) -> Callable[[int, int | None], bool]:
    """Whether a job of a size could start now in `pool`: it fits the free GPUs and has not
    been found unplaceable since GPUs were last released."""
    free = view.free_gpus(pool)
    return lambda gpus, level: gpus <= free and gpus < view.unplaceable_from(pool, level)
