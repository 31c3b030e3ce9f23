"""The contract between a scheduling policy and the mechanism that runs it (version 2).

A policy decides; it never mutates the cluster, never reads a clock, never sleeps. It is told
what happened, keeps its own ordering indexes, and on `decide` yields decisions over a
read-only `View` (state/view.py). The mechanism (the simulator's event loop, or a live
reconciler) applies each decision as it is yielded, so the view a policy reads always
reflects the decisions it has already made in this pass.

What a policy is told:

    bind(view, pools)   once, before anything else; jobs, queues and hosts may be added later
    submitted(job)      a job arrived (or, after a restart, waits)
    adopt(job)          a job already running handed to a fresh policy (after a restart)
    finished(job)       a running job completed
    interrupted(job)    a running job lost its GPUs to a failure, a drain or a lost host; it
                        keeps its last checkpoint and waits to be placed again
    withdrawn(job)      a waiting job was cancelled, or a running one killed (its GPUs are free)
                        or, just before a Resize it decided, leaves to be adopted at its new size
    decide(pool)        what to do now in `pool`

and what it gives back: `export()` is the state it cannot derive from the cluster state
(attained service, decayed usage, leases...) as plain data; `restore(data)`, called after
`bind` and the `submitted`/`adopt` calls that rebuild it, puts that state back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from corral.quota import QuotaTree
from corral.state.allocation import Placement
from corral.state.reasons import Reason


@dataclass(frozen=True, slots=True)
class Start:
    job: int
    placement: Placement


@dataclass(frozen=True, slots=True)
class Preempt:
    """Stop `job`; it keeps the work up to its last checkpoint. `by` is the job it makes
    room for (-1: none in particular)."""

    job: int
    why: Reason
    by: int = -1


@dataclass(frozen=True, slots=True)
class Resize:
    """Restart running elastic `job` on `placement` (another whole number of its steps):
    it checkpoints, then pays its restart before working at the new size."""

    job: int
    placement: Placement
    graceful: bool = True  # False: too short a notice to write; it keeps its last checkpoint

    @property
    def gpus(self) -> int:
        return sum(g for _, g in self.placement)


@dataclass(frozen=True, slots=True)
class Hold:
    """`job` stays pending for `reason` (read only when the mechanism records reasons)."""

    job: int
    reason: Reason


@dataclass(frozen=True, slots=True)
class Wake:
    """Ask to decide again for `pool` at `at_s` even if nothing else happens (e.g. LAS demotion)."""

    pool: int
    at_s: float


Decision = Start | Preempt | Resize | Wake | Hold


class View(Protocol):
    """What a policy may read. Job attributes are lists indexed by job number, growing as
    jobs are registered. `run_s` and `expected_end_s` come from what the user says a job
    needs (its duration in a simulation); `duration_s` is the truth, read only by policies
    marked `needs_durations` (and by LAS, for the service a job has attained)."""

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

    @property
    def host_gpus(self) -> np.ndarray: ...
    def pool_hosts(self, pool: int) -> np.ndarray: ...
    def pool_gpus(self, pool: int) -> int: ...
    def free_gpus(self, pool: int) -> int: ...
    def max_host_gpus(self, pool: int) -> int: ...
    def remaining_s(self, job: int) -> float: ...
    def run_s(self, job: int) -> float: ...
    def revisions(self) -> int: ...
    def expected_end_s(self, job: int) -> float: ...
    def run_start(self, job: int) -> tuple[float, float]: ...
    def executed_s(self, job: int) -> float: ...
    def last_stop_s(self, job: int) -> float: ...
    def contenders(self, job: int) -> int: ...
    def place(self, job: int) -> Placement | None: ...
    def place_on(self, job: int, free: np.ndarray) -> Placement | None: ...
    def place_capped(self, job: int, hosts: np.ndarray, most: np.ndarray) -> Placement | None: ...
    def unmoved_by(self, job: int, free: np.ndarray, hosts: list[int]) -> bool: ...
    def place_size(self, job: int, gpus: int, free: np.ndarray) -> Placement | None: ...
    def elastic(self, job: int) -> tuple[int, int, int] | None: ...
    def speedup(self, job: int, gpus: int) -> float: ...
    def reserved_gpus(self, pool: int) -> int: ...
    def resize_cost_s(self, job: int) -> float: ...
    def generation(self, pool: int) -> int | None: ...
    def unplaceable_from(self, pool: int, level: int | None) -> float: ...
    def cheapest_first(self, jobs: Sequence[int] | np.ndarray) -> np.ndarray: ...
    def placement_of(self, job: int) -> Placement | None: ...
    def free_vector(self) -> np.ndarray: ...
    def free_with(self, jobs: Sequence[int] | np.ndarray) -> np.ndarray: ...


JobKey = Callable[[int], int]
JobIndex = Callable[[int], int | None]


def same(job: int) -> int:
    """Jobs named by their index (the simulator's, whose indices never change)."""
    return job


class Traits:
    """What a policy declares of itself to the mechanism that drives it (the base of every
    policy: all False unless the policy says otherwise).

    `enforces_quota`: the mechanism checks every Start against the queue quotas.
    `gives_reasons`: it says why each job waits (Hold), so the view need not record why a
    placement failed. `needs_durations`: it reads true durations (an oracle; simulation
    only)."""

    enforces_quota: bool = False
    gives_reasons: bool = False
    needs_durations: bool = False


class Policy(Protocol):
    """See the module's docstring; the traits are `Traits`'."""

    name: str
    enforces_quota: bool
    gives_reasons: bool
    needs_durations: bool

    def bind(self, view: View, pools: int) -> None: ...
    def submitted(self, job: int) -> None: ...
    def adopt(self, job: int) -> None: ...
    def finished(self, job: int) -> None: ...
    def interrupted(self, job: int) -> None: ...
    def withdrawn(self, job: int) -> None: ...
    def decide(self, pool: int) -> Iterator[Decision]: ...
    def export(self, key: JobKey = same) -> Any:
        """What the policy knows beyond the cluster state, JSON-able, each job named by
        `key(job)` (the live face names them by database row, which outlives an index)."""
        ...

    def restore(self, data: Any, index: JobIndex = same) -> None:
        """Put back what `export` gave, once bound with every job submitted or adopted:
        `index(name)` is the job now, None for one that is gone."""
        ...
