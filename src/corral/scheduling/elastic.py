"""Elasticity: a part that wraps any policy (`fifo-backfill+elastic`, `fair+elastic`).

The inner policy decides who starts and who is preempted, at the sizes jobs ask for. Around
it, in the same pass (growth first, so that work of lower priority does not take what was
freed before an elastic job of higher priority can grow into it, and again at the end):

- shrink: while jobs the inner policy could not start wait in the pool, running elastic jobs
  of no higher priority, above their minimum, give back whole data-parallel steps (those
  resized most recently first) until the GPUs the waiting jobs of the highest priority ask
  for are free (or as many as they can give), and the inner policy decides again: what an
  elastic job took beyond its ask was lent, and waiting work takes it back;
- grow: when no job of its priority or higher waits in the pool, a running elastic job
  (oldest first) grows to the largest size that the free GPUs, less those a broker holds for
  services (`view.reserved_gpus`), allow, if the restart pays for itself before the job
  would end at its present size (by its estimate) and it has held its size for `hold_s`.

A resize is the job's checkpoint and restart (state/cluster.py `resize`). The inner policy
sees it as the job leaving and being adopted again at its new size, so its own accounts
(usage, attained service, reservations) follow the size the job holds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from corral.scheduling.policy import (
    Decision,
    JobIndex,
    JobKey,
    Policy,
    Preempt,
    Resize,
    Start,
    Traits,
    View,
    Wake,
    same,
)
from corral.state.allocation import Placement

HOLD_S = 1800.0


def shrunk(placement: Placement, gpus: int) -> Placement:
    """The first `gpus` GPUs of `placement`, host by host: a shrink keeps the job where it
    is and frees GPUs where the others were."""
    out, left = [], gpus
    for host, g in placement:
        if left <= 0:
            break
        out.append((host, min(g, left)))
        left -= g
    return tuple(out)


class Elastic(Traits):
    def __init__(self, inner: Policy, hold_s: float = HOLD_S) -> None:
        self.inner = inner
        self.hold_s = hold_s
        self.name = f"{inner.name}+elastic"
        self.enforces_quota = inner.enforces_quota
        self.gives_reasons = inner.gives_reasons
        self.needs_durations = inner.needs_durations

    # --- what happened -------------------------------------------------------------------

    def bind(self, view: View, pools: int) -> None:
        self.view = view
        self.waiting: list[dict[int, None]] = [{} for _ in range(pools)]  # in arrival order
        self.running: list[dict[int, None]] = [{} for _ in range(pools)]  # elastic ones
        self.resized_s: dict[int, float] = {}
        self.inner.bind(view, pools)

    def submitted(self, job: int) -> None:
        self.waiting[self.view.pool[job]][job] = None
        self.inner.submitted(job)

    def adopt(self, job: int) -> None:
        self._running(job)
        self.inner.adopt(job)

    def finished(self, job: int) -> None:
        self.running[self.view.pool[job]].pop(job, None)
        self.inner.finished(job)

    def interrupted(self, job: int) -> None:
        pool = self.view.pool[job]
        self.running[pool].pop(job, None)
        self.waiting[pool][job] = None
        self.inner.interrupted(job)

    def withdrawn(self, job: int) -> None:
        pool = self.view.pool[job]
        self.running[pool].pop(job, None)
        self.waiting[pool].pop(job, None)
        self.inner.withdrawn(job)

    def _running(self, job: int) -> None:
        if self.view.elastic(job) is not None:
            self.running[self.view.pool[job]][job] = None

    def export(self, key: JobKey = same) -> Any:
        resized = {str(key(j)): t for j, t in self.resized_s.items()}
        return {"inner": self.inner.export(key), "resized_s": resized}

    def restore(self, data: Any, index: JobIndex = same) -> None:
        self.inner.restore(data["inner"], index)
        resized = ((index(int(name)), t) for name, t in data["resized_s"].items())
        self.resized_s = {j: t for j, t in resized if j is not None}

    # --- deciding ------------------------------------------------------------------------

    def decide(self, pool: int) -> Iterator[Decision]:
        if self.running[pool]:  # (before lower-priority work takes what was freed)
            yield from self._grow(pool)
        yield from self._inner(pool)
        if not self.running[pool]:
            return
        if self.waiting[pool]:
            freed = False
            for decision in self._shrink(pool):
                freed = True
                yield decision
            if freed:
                yield from self._inner(pool)
        yield from self._grow(pool)

    def _inner(self, pool: int) -> Iterator[Decision]:
        """The inner policy's pass, keeping track of whom it starts and stops."""
        for decision in self.inner.decide(pool):
            yield decision
            if type(decision) is Start:
                self.waiting[pool].pop(decision.job, None)
                self._running(decision.job)
            elif type(decision) is Preempt:
                self.running[pool].pop(decision.job, None)
                self.waiting[pool][decision.job] = None

    def _resize(self, job: int, placement: Placement) -> Iterator[Decision]:
        self.inner.withdrawn(job)
        yield Resize(job, placement)
        self.resized_s[job] = self.view.now_s
        self.inner.adopt(job)

    def _shrink(self, pool: int) -> Iterator[Decision]:
        view = self.view
        prio = view.priority
        head = min(self.waiting[pool], key=lambda j: -prio[j])  # (the first of the highest priority)
        short = sum(view.gpus[j] for j in self.waiting[pool] if prio[j] == prio[head]) - view.free_gpus(pool)
        donors = sorted(
            (j for j in self.running[pool] if prio[j] <= prio[head]),
            key=lambda j: (-self.resized_s.get(j, -math.inf), j),
        )
        spare = sum(view.gpus[j] - view.elastic(j)[0] for j in donors)  # type: ignore[index]
        if short <= 0 or not spare:  # (placement, not count, holds them back; or nothing to give)
            return
        for job in donors:
            if short <= 0:
                break
            lo, _, step = view.elastic(job)  # type: ignore[misc]
            gpus = view.gpus[job]
            give = min(gpus - lo, math.ceil(short / step) * step)
            if give <= 0:
                continue
            short -= give
            yield from self._resize(job, shrunk(view.placement_of(job), gpus - give))  # type: ignore[arg-type]

    def _grow(self, pool: int) -> Iterator[Decision]:
        view = self.view
        now, wake = view.now_s, math.inf
        waits = max((view.priority[j] for j in self.waiting[pool]), default=-math.inf)
        for job in list(self.running[pool]):
            free = view.free_gpus(pool) - view.reserved_gpus(pool)
            if free <= 0:
                return
            if view.priority[job] <= waits:  # (waiting work of its priority or more comes first)
                continue
            lo, hi, step = view.elastic(job)  # type: ignore[misc]
            gpus = view.gpus[job]
            ready_s = self.resized_s.get(job, -math.inf) + self.hold_s
            if gpus >= hi:
                continue
            if now < ready_s:
                wake = min(wake, ready_s)
                continue
            room = free
            if self.enforces_quota:
                headroom = view.quota.headroom(view.queue[job]) + 1e-6
                room = min(room, int(headroom)) if math.isfinite(headroom) else room
            target = min(hi, (gpus + room) // step * step)
            if target <= gpus or not self._pays(job, target):
                continue
            others = view.free_with([job])
            for size in range(target, gpus, -step):
                placement = view.place_size(job, size, others)
                if placement is not None:
                    yield from self._resize(job, placement)
                    break
        if wake < math.inf:
            yield Wake(pool, wake)

    def _pays(self, job: int, gpus: int) -> bool:
        """Whether `job` would end sooner on `gpus` after its checkpoint and restart, by the
        time its estimate leaves it at its present size."""
        view = self.view
        left_s = view.expected_end_s(job) - view.now_s
        if not left_s > 0:
            return False
        faster = view.speedup(job, gpus)
        return left_s / faster + view.resize_cost_s(job) < left_s
