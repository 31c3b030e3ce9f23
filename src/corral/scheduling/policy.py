"""The contract between a scheduling policy and the mechanism that runs it.

A policy decides; it never mutates the fleet, never reads a clock, never sleeps. It is told
what happened (`submitted`, `finished`), keeps its own ordering indexes, and on `decide`
yields decisions over a read-only `View`. The mechanism (the simulator's event loop now, the
live control plane's reconciler later) applies each decision as it is yielded, so the view a
policy reads always reflects the decisions it has already made in this pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from corral.scheduling.quota import QuotaTree
from corral.sim.allocation import Placement


@dataclass(frozen=True, slots=True)
class Start:
    job: int
    placement: Placement


@dataclass(frozen=True, slots=True)
class Preempt:
    """Stop `job`; it keeps the work up to its last checkpoint. `by` is the job it makes
    room for (-1: none in particular)."""

    job: int
    why: str
    by: int = -1


@dataclass(frozen=True, slots=True)
class Hold:
    """`job` stays pending for `reason` (read only when the mechanism records reasons)."""

    job: int
    reason: str


@dataclass(frozen=True, slots=True)
class Wake:
    """Ask to decide again for `pool` at `at_s` even if nothing else happens (e.g. LAS demotion)."""

    pool: int
    at_s: float


Decision = Start | Preempt | Wake | Hold


class View(Protocol):
    """What a policy may read. Job attributes are lists indexed by job number."""

    now_s: float
    gpus: list[int]
    duration_s: list[float]
    submit_s: list[float]
    preemptible: list[bool]
    pool: list[int]
    priority: list[int]
    queue: list[int]
    level: list[int | None]
    quota: QuotaTree
    explain: bool
    host_gpus: np.ndarray  # per host of the fleet: how many GPUs it has

    def pool_hosts(self, pool: int) -> np.ndarray: ...

    def pool_gpus(self, pool: int) -> int: ...
    def free_gpus(self, pool: int) -> int: ...
    def max_host_gpus(self, pool: int) -> int: ...
    def is_running(self, job: int) -> bool: ...
    def remaining_s(self, job: int) -> float: ...
    def run_s(self, job: int) -> float: ...
    def executed_s(self, job: int) -> float: ...
    def last_stop_s(self, job: int) -> float: ...
    def contenders(self, job: int) -> int: ...
    def place(self, job: int) -> Placement | None: ...
    def unplaceable_from(self, pool: int, level: int | None) -> float: ...
    def release_epoch(self, pool: int) -> int | None: ...
    def cheapest_first(self, jobs: Sequence[int] | np.ndarray) -> np.ndarray: ...
    def placement_of(self, job: int) -> Placement | None: ...
    def free_vector(self) -> np.ndarray: ...
    def free_with(self, jobs: Sequence[int] | np.ndarray) -> np.ndarray: ...
    def place_on(self, job: int, free: np.ndarray) -> Placement | None: ...


class Policy(Protocol):
    """`enforces_quota`: the mechanism checks every Start against the queue quotas."""

    name: str

    def bind(self, view: View, pools: int) -> None: ...
    def submitted(self, job: int) -> None: ...
    def finished(self, job: int) -> None: ...
    def interrupted(self, job: int) -> None:
        """`job` was stopped by a failure or maintenance (the mechanism has released its GPUs
        and kept its last checkpoint); it waits to be placed again."""

    def decide(self, pool: int) -> Iterator[Decision]: ...
