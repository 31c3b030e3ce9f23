"""Queues, cohorts and the quota arithmetic of borrowing and lending (Kueue's ClusterQueue and
cohort semantics, hierarchical cohorts included).

Every node of the tree (a queue is a leaf, a cohort an inner node) has a capacity S, a
lending limit L <= S and a borrowing limit B, and carries a demand D:

- a queue's capacity is its nominal quota and its demand is the GPUs its admitted jobs hold;
- a node keeps S - L for itself and draws max(0, D - (S - L)) from its parent;
- a cohort's capacity is its own nominal quota plus what its children lend (sum of L), and
  its demand is what its children draw;
- a node with a parent may hold D <= S + B; a root may hold D <= S.

With no lending limits this is Kueue's flat rule: a queue uses up to nominal + borrowing
limit, and a cohort's members together use at most the sum of their nominal quotas.
Checking or applying an admission walks from the queue to the root: O(depth).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from corral.config import Name, NonNegative
from corral.errors import InputError

INF = math.inf


@dataclass(frozen=True)
class QueueSpec:
    """A team's queue. None limits mean no limit (all of the nominal quota is lendable)."""

    name: Name
    nominal_gpus: NonNegative
    weight: NonNegative = 1.0
    cohort: Name | None = None
    borrowing_limit_gpus: NonNegative | None = None
    lending_limit_gpus: NonNegative | None = None
    pool: Name | None = None  # the pool its jobs run in; None: the pool named like it, or the default


@dataclass(frozen=True)
class CohortSpec:
    """A cohort; `weight` is its fair share against its sibling queues and cohorts."""

    name: Name
    parent: Name | None = None
    nominal_gpus: NonNegative = 0.0
    weight: NonNegative = 1.0
    borrowing_limit_gpus: NonNegative | None = None
    lending_limit_gpus: NonNegative | None = None


class QuotaTree:
    """Quota state for a set of queues; `queue` ids index `specs`."""

    def __init__(self, queues: list[QueueSpec], cohorts: list[CohortSpec] = ()) -> None:  # type: ignore[assignment]
        self.specs = list(queues)
        names = [q.name for q in self.specs]
        cohort_names = [c.name for c in cohorts]
        for kind, listed in (("queue", names), ("cohort", cohort_names)):
            dup = {n for n in listed if listed.count(n) > 1}
            if dup:
                raise InputError(f"{kind} '{sorted(dup)[0]}' defined twice", field=f"{kind}s")
        nq = len(self.specs)
        index = {c.name: nq + i for i, c in enumerate(cohorts)}
        self.names = names + cohort_names
        n = len(self.names)
        self.parent = [-1] * n
        self.nominal = [0.0] * n
        self.borrow = [INF] * n
        lend: list[float | None] = [None] * n
        for i, spec in enumerate([*self.specs, *cohorts]):
            up = spec.cohort if isinstance(spec, QueueSpec) else spec.parent
            if up is not None:
                if up not in index:
                    raise InputError(f"'{spec.name}' names unknown cohort '{up}'", field="cohort")
                self.parent[i] = index[up]
            for field, value in (
                ("nominal_gpus", spec.nominal_gpus),
                ("borrowing_limit_gpus", spec.borrowing_limit_gpus),
                ("lending_limit_gpus", spec.lending_limit_gpus),
            ):
                if value is not None and not value >= 0:
                    raise InputError(f"'{spec.name}': {field} must be >= 0, got {value}", field=field)
            self.nominal[i] = float(spec.nominal_gpus)
            if spec.borrowing_limit_gpus is not None:
                self.borrow[i] = float(spec.borrowing_limit_gpus)
            lend[i] = spec.lending_limit_gpus
        for i in range(n):  # no cycles among cohorts
            seen, j = set(), i
            while j >= 0:
                if j in seen:
                    raise InputError(f"cohort '{self.names[i]}' is its own ancestor", field="parent")
                seen.add(j)
                j = self.parent[j]
        self.children: list[list[int]] = [[] for _ in range(n)]
        for i, p in enumerate(self.parent):
            if p >= 0:
                self.children[p].append(i)
        self.capacity = [0.0] * n
        self.lend = [0.0] * n
        for i in self._bottom_up():
            cap = self.nominal[i] + sum(self.lend[c] for c in self.children[i])
            self.capacity[i] = cap
            limit = lend[i]
            if limit is not None and limit > cap:
                raise InputError(
                    f"'{self.names[i]}': lending limit {limit:g} exceeds its quota {cap:g}",
                    field="lending_limit_gpus",
                )
            self.lend[i] = cap if limit is None else float(limit)
        self.demand = [0.0] * n
        self.changes = 0  # admissions and releases applied to `demand`
        self._room: list[tuple[int, float]] = [(-1, 0.0)] * n  # per queue: (changes, headroom)
        self.weight = [spec.weight for spec in [*self.specs, *cohorts]]  # per node, queues first
        self.is_queue = [i < nq for i in range(n)]
        self.root = [self._root(i) for i in range(n)]
        self.paths = [self.path(q) for q in range(n)]  # root first, per node

    def add_queue(self, name: str, cohort: str | None = None) -> int:
        """A queue that arrives after the tree was built (jobs name it, or an admin adds it):
        no quota of its own (nominal 0), borrowing in `cohort`; no quota at all without one.
        It is appended as the last node, so existing ids stay valid. Returns its id."""
        if name in self.names:
            raise InputError(f"queue '{name}' defined twice", field="queues")
        parent = -1
        if cohort is not None:
            if cohort not in self.names or self.is_queue[self.names.index(cohort)]:
                raise InputError(f"'{name}' names unknown cohort '{cohort}'", field="cohort")
            parent = self.names.index(cohort)
        spec = QueueSpec(name, 0.0 if parent >= 0 else INF, cohort=cohort)
        node = len(self.names)
        self.specs.append(spec)
        self.names.append(name)
        self.parent.append(parent)
        self.nominal.append(spec.nominal_gpus)
        self.borrow.append(INF)
        self.children.append([])
        self.capacity.append(spec.nominal_gpus)
        self.lend.append(spec.nominal_gpus)  # (nothing to lend either way)
        self.demand.append(0.0)
        self._room.append((-1, 0.0))
        self.weight.append(spec.weight)
        self.is_queue.append(True)
        if parent >= 0:
            self.children[parent].append(node)
        self.root.append(self._root(node))
        self.paths.append(self.path(node))
        return node

    @classmethod
    def for_queues(
        cls,
        names: list[str],
        queues: dict[str, QueueSpec],
        cohorts: list[CohortSpec],
        default_cohort: str | None = None,
    ) -> tuple[QuotaTree, list[int]]:
        """The tree of every configured queue plus those jobs name, and the id of each name.

        A queue jobs name but no configuration lists borrows only (nominal 0) in
        `default_cohort`, or has no quota at all when there is none."""
        tree = cls(list(queues.values()), cohorts)
        ids = [
            tree.names.index(name) if name in queues else tree.add_queue(name, default_cohort)
            for name in names
        ]
        return tree, ids

    def _bottom_up(self) -> list[int]:
        depth = []
        for i in range(len(self.names)):
            d, j = 0, i
            while self.parent[j] >= 0:
                j = self.parent[j]
                d += 1
            depth.append(d)
        return sorted(range(len(self.names)), key=lambda i: -depth[i])

    def _root(self, i: int) -> int:
        while self.parent[i] >= 0:
            i = self.parent[i]
        return i

    def _limit(self, node: int) -> float:
        return self.capacity[node] + (self.borrow[node] if self.parent[node] >= 0 else 0.0)

    # --- queries -------------------------------------------------------------------------

    def usage(self, queue: int) -> float:
        return self.demand[queue]

    def nominal_of(self, queue: int) -> float:
        return self.capacity[queue]

    def borrowing(self, queue: int) -> bool:
        return self.demand[queue] > self.capacity[queue]

    def path(self, node: int) -> list[int]:
        """The nodes from `node`'s root down to `node`."""
        nodes = [node]
        while self.parent[nodes[-1]] >= 0:
            nodes.append(self.parent[nodes[-1]])
        return nodes[::-1]

    def same_tree(self, a: int, b: int) -> bool:
        return self.root[a] == self.root[b]

    def blocked(self, queue: int, gpus: float, demand: list[float] | None = None) -> str | None:
        """Why admitting `gpus` more to `queue` would break a limit, or None if it fits."""
        d = self.demand if demand is None else demand
        node = self._breaks(queue, gpus, d)
        return None if node < 0 else self._why(node, queue, d)

    def fits(self, queue: int, gpus: float, demand: list[float] | None = None) -> bool:
        return self._breaks(queue, gpus, self.demand if demand is None else demand) < 0

    def headroom(self, queue: int, demand: list[float] | None = None) -> float:
        """The most GPUs `queue` could be admitted now: `fits(queue, g)` is `g <= headroom`
        (within 1e-6), so a pass tests many sizes with one walk of the tree."""
        if demand is None:
            changes, room = self._room[queue]
            if changes == self.changes:  # a pass asks again and again between starts and stops
                return room
        d = self.demand if demand is None else demand
        capacity, lend, parent, borrow = self.capacity, self.lend, self.parent, self.borrow
        room = INF
        for node in self.paths[queue]:  # root first: what each node may take, given its parent's room
            cap, used = capacity[node], d[node]
            limit = cap + borrow[node] if parent[node] >= 0 else cap
            # up to keep - used comes from the node's own quota; the rest is drawn from the parent
            own = cap - lend[node] - used
            drawn = (own if own > 0.0 else 0.0) + (room if room > 0.0 else 0.0)
            room = limit - used if limit - used < drawn else drawn
        if demand is None:
            self._room[queue] = (self.changes, room)
        return room

    def _breaks(self, queue: int, gpus: float, d: list[float]) -> int:
        """The first node on the path to the root whose limit `gpus` more would break, or -1."""
        node, delta = queue, float(gpus)
        capacity, lend, parent, borrow = self.capacity, self.lend, self.parent, self.borrow
        while node >= 0 and delta > 0:
            old = d[node]
            new = old + delta
            up = parent[node]
            if new > capacity[node] + (borrow[node] if up >= 0 else 0.0) + 1e-9:
                return node
            keep = capacity[node] - lend[node]
            delta = max(0.0, new - keep) - max(0.0, old - keep)
            node = up
        return -1

    def _why(self, node: int, queue: int, d: list[float]) -> str:
        name = self.names[node]
        if node == queue:
            cap, borrow = self.capacity[node], self.borrow[node]
            if self.parent[node] < 0:
                return f"over quota: queue {name} uses {d[node]:g} of its {cap:g} GPUs and has no cohort"
            limit = "no borrowing limit" if math.isinf(borrow) else f"borrowing limit {borrow:g}"
            return f"over quota: queue {name} uses {d[node]:g} of nominal {cap:g} GPUs ({limit})"
        free = max(0.0, self._limit(node) - d[node])
        used = f"{d[node]:g} of {self.capacity[node]:g} in use"
        return f"over quota: cohort {name} has {free:g} GPUs left to lend ({used})"

    def ceiling(self, queue: int) -> float:
        """The most GPUs `queue` could ever hold with every other queue idle."""
        idle = [0.0] * len(self.names)
        hi = sum(self.nominal)  # every GPU of every quota in the tree
        if math.isinf(hi) or self.blocked(queue, hi, idle) is None:
            return hi
        lo = 0.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if self.blocked(queue, mid, idle) is None else (lo, mid)
        return math.floor(lo + 1e-6)

    # --- updates -------------------------------------------------------------------------

    def add(self, queue: int, gpus: float, demand: list[float] | None = None) -> None:
        """Apply an admission (positive `gpus`) or a release (negative) along the path."""
        d = self.demand if demand is None else demand
        if demand is None:
            self.changes += 1
        node, delta = queue, float(gpus)
        capacity, lend, parent = self.capacity, self.lend, self.parent
        while node >= 0 and delta != 0:
            old = d[node]
            new = d[node] = old + delta
            keep = capacity[node] - lend[node]
            delta = max(0.0, new - keep) - max(0.0, old - keep)
            node = parent[node]

    def what_if(self) -> WhatIf:
        """A copy of the current demand to try admissions and releases on, leaving this tree
        as it is."""
        return WhatIf(self, list(self.demand))


class WhatIf:
    """Hypothetical quota demand over a tree: what preemption and backfill try before they
    act (take these jobs' GPUs back, admit that one beside a reservation)."""

    __slots__ = ("tree", "demand")

    def __init__(self, tree: QuotaTree, demand: list[float]) -> None:
        self.tree, self.demand = tree, demand

    def add(self, queue: int, gpus: float) -> None:
        self.tree.add(queue, gpus, self.demand)

    def fits(self, queue: int, gpus: float) -> bool:
        return self.tree.fits(queue, gpus, self.demand)

    def headroom(self, queue: int) -> float:
        return self.tree.headroom(queue, self.demand)
