"""The one loop that drives a policy, shared by the simulator and the live reconciler.

A face keeps what is its own (the simulator its clock, event heap and failure generators;
the live reconciler its database and executors) and leaves the rest here: every cluster
transition paired with the policy call that tells it, the gates that hold an arrived job
from its policy until its dependencies have ended and its array has room (and cancel it
when a dependency can no longer be met), the scheduling pass with its
decisions applied as they are yielded, the widening of a pass to pools where quota waiters
may now fit, handing a fresh policy the live jobs in arrival order, and the policy's state
exported and restored with its jobs named by a key. What a decision does beyond the
cluster state (an event pushed, an attempt committed, an agent told to stop) is the face's,
through the effects it gives the driver.

`policy.decide` is called here only, so both faces apply a decision the same way and refuse
one they do not know alike.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Protocol

from corral.scheduling.policy import Hold, JobIndex, JobKey, Policy, Preempt, Resize, Start, Wake, same
from corral.state.allocation import Placement
from corral.state.cluster import FUTURE, PENDING, RUNNING_, ClusterState
from corral.state.gates import Gates, dependency_reason, parse_after
from corral.state.reasons import STOPPED_FOR_RESERVATION

log = logging.getLogger(__name__)


class Effects(Protocol):
    """What a face does beyond the cluster state when the driver applies a transition."""

    def starting(self, job: int, placement: Placement, now_s: float) -> None:
        """Just before `job` starts on `placement` (the simulator sets its checkpoint interval)."""

    def started(self, job: int, end_s: float, now_s: float) -> None:
        """`job` started (or restarted at a new size, see `resized`); it ends at `end_s` if
        nothing stops it."""

    def resized(self, job: int, end_s: float, now_s: float) -> None:
        """`job`'s run was stopped and started again at a new size."""

    def preempted(self, job: int, now_s: float) -> None:
        """The policy stopped `job`: it waits again."""

    def woken(self, pool: int, at_s: float) -> None:
        """The policy asked to decide again for `pool` at `at_s` (earlier than it had)."""

    def passed(self, pool: int, now_s: float) -> None:
        """A scheduling pass over `pool` ended."""

    def cancelled(self, job: int, why: str, now_s: float) -> None:
        """`job`, not yet seen by the policy, ended as cancelled: a dependency of it cannot
        be met (`why` says which)."""

    def released(self, job: int, now_s: float, rank: int) -> None:
        """A gate let `job`, held since it arrived, through: the `rank`th so let through."""

    def reserved(self, job: int, now_s: float) -> None:
        """A reservation's window began under running `job`, which may not be there: it was
        stopped (it saves first) and waits again."""


class NoEffects:
    """A face that needs nothing beyond the cluster state (the base of the others)."""

    def starting(self, job: int, placement: Placement, now_s: float) -> None:
        pass

    def started(self, job: int, end_s: float, now_s: float) -> None:
        pass

    def resized(self, job: int, end_s: float, now_s: float) -> None:
        pass

    def preempted(self, job: int, now_s: float) -> None:
        pass

    def woken(self, pool: int, at_s: float) -> None:
        pass

    def passed(self, pool: int, now_s: float) -> None:
        pass

    def cancelled(self, job: int, why: str, now_s: float) -> None:
        pass

    def released(self, job: int, now_s: float, rank: int) -> None:
        pass

    def reserved(self, job: int, now_s: float) -> None:
        pass


class Driver:
    """A policy driven over a cluster state. `changed` is set by anything that may have
    changed what the policy exports (a face that persists the export saves it only then)."""

    def __init__(self, cluster: ClusterState, policy: Policy, effects: Effects) -> None:
        self.effects = effects
        self.wakes: dict[int, float] = {}  # pool -> when the policy asked to decide again
        self.gates = Gates()
        self.arrived: set[int] = set()  # pools where a gate let a job through since the last pass
        self.bind(cluster, policy)

    def bind(self, cluster: ClusterState, policy: Policy) -> None:
        """Drive `policy` over `cluster` from now on; where reasons are recorded and the
        policy gives none of its own, the view records why a job it tried could not be
        placed."""
        self.cluster, self.policy = cluster, policy
        self.releases: int | None = None  # the last rank of a held job let through (None: read the state)
        view = cluster.view
        view.explains_placement = view.explain and not policy.gives_reasons
        policy.bind(view, len(cluster.fleet.pools))
        self.changed = True

    # --- transitions, each told to the policy ----------------------------------------------

    def submit(self, job: int, now_s: float) -> int:
        """`job` arrives; it waits, seen by the policy unless a gate holds it; its pool."""
        cluster = self.cluster
        if cluster.after[job] or cluster.array_limit[job]:
            self._gate(job, now_s)
        else:
            cluster.submit(job)
            self.policy.submitted(job)
            self.changed = True
        return cluster.pool[job]

    def _gate(self, job: int, now_s: float) -> None:
        cluster, gates = self.cluster, self.gates
        deps = parse_after(cluster.after[job])
        gates.register(job, deps, cluster.array_job[job], cluster.array_limit[job])
        through, unmet = gates.arrive(job, cluster.submit_s[job])
        if unmet is not None:
            self._cancel(job, *unmet, now_s)
        elif through:
            self._let_through(job, now_s, held=False)
        else:
            reason = gates.why(job)
            assert reason is not None
            cluster.hold(job, now_s, reason)

    def _let_through(self, job: int, now_s: float, held: bool = True) -> None:
        cluster = self.cluster
        rank = 0
        if held:
            rank = max(cluster.released_rank, default=0) + 1 if self.releases is None else self.releases + 1
            self.releases = rank
        cluster.released_s[job], cluster.released_rank[job] = now_s, rank
        self.effects.released(job, now_s, rank)
        cluster.submit(job, now_s)
        self.policy.submitted(job)
        self.arrived.add(self.cluster.pool[job])
        self.changed = True

    def _cancel(self, job: int, dep: str, kind: str, now_s: float) -> None:
        """Held `job`'s dependency `dep` (`kind`) can no longer be met: it ends, cancelled."""
        reason = dependency_reason(dep, kind, False)
        self.cluster.withdraw(job, now_s)
        self.cluster.hold(job, now_s, reason)
        self.effects.cancelled(job, reason.text, now_s)
        self._ended(job, False, now_s)

    def _ended(self, job: int, succeeded: bool, now_s: float) -> None:
        """`job` ended: held jobs that wait on it go through or are cancelled."""
        cluster = self.cluster
        if not cluster.depended and not self.gates:
            return
        released, doomed = self.gates.ended(job, cluster.job_id[job], succeeded)
        for waiter in released:
            self._let_through(waiter, now_s)
        for waiter, dep, kind in doomed:
            if not cluster.has_ended(waiter):  # (a cancellation before it may have ended it)
                self._cancel(waiter, dep, kind, now_s)

    def complete(self, job: int, now_s: float, succeeded: bool = True) -> int:
        """Running `job` finished (`succeeded`: with exit code 0, where that is known); its
        pool."""
        self.cluster.complete(job, now_s)
        self.policy.finished(job)
        self.changed = True
        self._ended(job, succeeded, now_s)
        return self.cluster.pool[job]

    def interrupt(self, job: int, now_s: float, graceful: bool, requeue: bool = True) -> float:
        """Running `job` lost its GPUs (a failure, a drain, a reclaim); the work lost. With
        `requeue` False the face restarts it at once elsewhere (on spares) and the policy,
        which still counts it as running, is not told (see `restart`)."""
        lost = self.cluster.interrupt(job, now_s, graceful)
        if requeue:
            self.requeue(job)
        return lost

    def requeue(self, job: int) -> None:
        """Tell the policy that `job`, interrupted, waits again (it could not be restarted)."""
        self.policy.interrupted(job)
        self.changed = True

    def withdraw(self, job: int, now_s: float) -> bool:
        """Cancel `job` (waiting, running, or not yet arrived); whether it was running."""
        arrived = self.cluster.status[job] != FUTURE
        was_running = self.cluster.withdraw(job, now_s)
        if arrived:
            self.policy.withdrawn(job)
            self.changed = True
        self._ended(job, False, now_s)
        return was_running

    def remove_host(self, host: int, now_s: float) -> list[int]:
        """A host leaves for good; the jobs it interrupted, each told to the policy."""
        jobs = self.cluster.remove_host(host, now_s)
        for job in jobs:
            self.requeue(job)
        return jobs

    def restart(self, job: int, placement: Placement, now_s: float) -> None:
        """Start `job` on `placement` now, with its face's effects (a decision's start, or
        the simulator's restart on spares, which the policy does not see)."""
        self.effects.starting(job, placement, now_s)
        end_s = self.cluster.start(job, placement, now_s)
        self.effects.started(job, end_s, now_s)

    def take_over(self, jobs: list[int], now_s: float) -> None:
        """Hand the bound policy the live `jobs` in the order it was first told of them
        (`ClusterState.seen_order`): `adopt` each one running, `submitted` each one waiting
        (a registered job not yet arrived arrives now, through its gates, which count the
        running tasks of its array first)."""
        cluster, policy, gates = self.cluster, self.policy, self.gates
        jobs = sorted(jobs, key=cluster.seen_order)
        through = [not math.isnan(cluster.released_s[job]) or cluster.status[job] == RUNNING_ for job in jobs]
        for job, went in zip(jobs, through, strict=True):
            if went and cluster.array_limit[job]:
                gates.register(job, [], cluster.array_job[job], cluster.array_limit[job])
                gates.adopt(job)
        for job, went in zip(jobs, through, strict=True):
            if cluster.status[job] == RUNNING_:
                policy.adopt(job)
                continue
            if cluster.status[job] == FUTURE:
                if not went:
                    self.submit(job, now_s)
                    continue
                cluster.submit(job, cluster.released_s[job])  # (a gate let it through before)
            assert cluster.status[job] == PENDING, f"job {job} is neither running nor waiting"
            policy.submitted(job)
        self.changed = True

    def reservations_due(self, since_s: float, now_s: float) -> set[int]:
        """Apply the reservation windows that began or ended in (`since_s`, `now_s`]: at a
        start, the jobs on its hosts that may not be there are stopped (they save first)
        and wait again; the pools whose hosts' use changed."""
        cluster = self.cluster
        touched: set[int] = set()
        for r in cluster.reservations.items:
            pool = cluster.fleet.pools.index(r.spec.pool)
            if since_s < r.start_s <= now_s < r.end_s:
                on = sorted({j for host in r.hosts.tolist() for j in cluster.on_host.get(host, ())})
                for job in on:
                    if r.spec.queue is None or cluster.queue_name[job] != r.spec.queue:
                        self.interrupt(job, now_s, graceful=True)
                        cluster.hold(job, now_s, STOPPED_FOR_RESERVATION)
                        self.effects.reserved(job, now_s)
                touched.add(pool)
            if since_s < r.end_s <= now_s:
                touched.add(pool)
        for pool in touched:
            cluster.alloc.widened(pool)
        return touched

    # --- the pass ----------------------------------------------------------------------------

    def due(self, now_s: float) -> set[int]:
        """The pools whose wake has come (forgotten: the pass that follows handles them)."""
        pools = {pool for pool, at_s in self.wakes.items() if at_s <= now_s}
        for pool in pools:
            del self.wakes[pool]
        return pools

    def quota_waiters(self, touched: set[int]) -> set[int]:
        """`touched` widened, when quota spans pools, to the pools where jobs wait: GPUs of a
        queue's quota returned in one pool may admit a job of its cohort waiting in another,
        which no event there would otherwise wake."""
        cluster = self.cluster
        if not touched or not cluster.enforce_quota or len(cluster.fleet.pools) == 1:
            return touched
        return touched | {p for p, sizes in enumerate(cluster.waiting_sizes) if sizes}

    def decide(self, touched: set[int], now_s: float, widen: bool = True) -> int:
        """A scheduling pass over each pool of `touched` (widened to quota waiters unless
        `widen` is False), its decisions applied as they come; the jobs started."""
        if self.arrived:
            touched = touched | self.arrived
            self.arrived = set()
        if widen:
            touched = self.quota_waiters(touched)
        started = 0
        for pool in sorted(touched):
            started += self._pass(pool, now_s)
            self.effects.passed(pool, now_s)
        return started

    def _pass(self, pool: int, now_s: float) -> int:
        cluster, effects = self.cluster, self.effects
        started = 0
        debug = log.isEnabledFor(logging.DEBUG)
        for decision in self.policy.decide(pool):
            self.changed = True
            kind = type(decision)
            if kind is Start:
                self.restart(decision.job, decision.placement, now_s)
                started += 1
            elif kind is Preempt:
                cluster.preempt(decision.job, now_s, decision.why, decision.by)
                effects.preempted(decision.job, now_s)
            elif kind is Resize:
                end_s = cluster.resize(decision.job, decision.placement, now_s, decision.graceful)
                effects.resized(decision.job, end_s, now_s)
                started += 1
            elif kind is Hold:
                cluster.hold(decision.job, now_s, decision.reason)
            elif kind is Wake:
                if now_s < decision.at_s < self.wakes.get(decision.pool, math.inf):
                    self.wakes[decision.pool] = decision.at_s
                    effects.woken(decision.pool, decision.at_s)
            else:
                raise TypeError(f"policy {self.policy.name} decided {decision!r}, which is no decision")
            if debug:
                named = "" if kind is Wake else f" job {cluster.job_id[decision.job]}:"
                log.debug("pool %d at %.3f:%s %r", pool, now_s, named, decision)
        return started

    # --- the policy's own state ----------------------------------------------------------------

    def export(self, key: JobKey = same) -> Any:
        """What the policy knows beyond the cluster state, its jobs named by `key`."""
        return self.policy.export(key)

    def restore(self, data: Any, index: JobIndex = same) -> None:
        """Put back what `export` gave (after `bind` and `take_over`)."""
        self.policy.restore(data, index)
        self.changed = True
