"""The one writer of a live cluster: each step reads what arrived (submissions, cancellations,
exits, nodes that joined or went silent), applies it to the shared cluster state, asks the
policy to decide, and commits every start as an attempt row before any agent can see it.

The policy objects are the simulator's, driven as the engine drives them: within a step,
exits first (in the order their attempts started), then arrivals in submission order, then a
pass over each pool something happened in. With a fake clock and a fake executor, a workload
starts at the times the simulator gives it (tests/test_live_reconciler.py).

A job's checkpoints are its own to report (a marker file the agent watches, or an API call).
A job that has never reported is taken as the simulator takes a job with no checkpoint
interval: a graceful stop keeps its work, a lost node loses it. Once it reports, a stop keeps
exactly the work its last report holds, reports written in its grace period included
(`kept_s`), and preempting it costs the work since that report.

The cluster state lives in memory and is rebuilt from the database when the reconciler
starts (after a crash too) and when a node of a new pool joins: the database is the truth.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from corral.errors import InputError
from corral.fleet import Fleet, Segment
from corral.live.db import (
    ATTEMPT_ENDED,
    ATTEMPT_RUNNING,
    CANCELLED,
    COMMITTED,
    CORDONED,
    DOWN,
    DRAINING,
    EXITED,
    FAILED,
    PENDING,
    RUNNING,
    STOPPING,
    SUCCEEDED,
    Attempt,
    Demand,
    Job,
    Meta,
    Node,
    Service,
    Window,
)
from corral.live.services import BrokerConfig, LiveBroker, endpoints
from corral.live.transitions import set_state
from corral.mechanism.driver import Driver, NoEffects
from corral.quota import CohortSpec, QueueSpec
from corral.scheduling.policy import Policy
from corral.scheduling.registry import make_policy
from corral.state.cluster import ClusterState
from corral.state.elastic import ELASTIC_COLUMNS, speed
from corral.state.reservations import Reservations
from corral.windows import ReservationSpec
from corral.workload import JobTable

if TYPE_CHECKING:
    from corral.live.scrape import Scraper

log = logging.getLogger(__name__)

# What the state assumes of a job with no estimate. Live, a job's estimate is its duration as
# the policies read it: `srtf`, `sjf` and `ftf` rank jobs by what their users say they need.
UNKNOWN_DURATION_S = 365 * 86400.0
LOOK_BACK_IDS = 1000  # submissions a step looks back for jobs committed out of id order
FULL_SCAN_EVERY = 50  # steps between looks at every pending job


def kept_s(attempt: Attempt, job: Job) -> float:
    """The useful seconds an attempt that was stopped or lost left its job: up to its last
    reported checkpoint (no further than the stop); with no report, by a job that never
    reports, everything on a graceful stop and nothing on a failure."""
    stop_s = attempt.stop_s if attempt.stop_s is not None else attempt.end_s
    if stop_s is None:
        stop_s = attempt.start_s
    if attempt.checkpoint_s is not None:
        return max(0.0, min(attempt.checkpoint_s, stop_s) - attempt.start_s)
    if job.checkpoint_s is not None or attempt.ended == "failed":
        return 0.0
    return max(0.0, stop_s - attempt.start_s)


def job_table(jobs: list[Job]) -> JobTable:
    """Job rows as the cluster state registers them (an elastic job's sizes as the elastic
    columns; a job with no estimate as one that runs a year)."""
    estimate = [UNKNOWN_DURATION_S if j.estimate_s is None else j.estimate_s for j in jobs]

    def text(value: float | None) -> str:
        return "" if value is None else repr(value)

    def array(j: Job) -> str:
        return "" if j.array_job is None else str(j.array_job)

    return JobTable(
        job_id=[j.job_id for j in jobs],
        submit_s=np.array([j.submit_s for j in jobs], dtype=float),
        gpus=np.array([j.gpus for j in jobs], dtype=np.int64),
        duration_s=np.array(estimate, dtype=float),
        queue=[j.queue for j in jobs],
        user=[j.team for j in jobs],
        kind=["experiment"] * len(jobs),
        priority=np.array([j.priority for j in jobs], dtype=np.int64),
        preemptible=np.array([j.preemptible for j in jobs], dtype=bool),
        source="<live>",
        extra={
            **{name: [text(getattr(j, name)) for j in jobs] for name in ELASTIC_COLUMNS},
            "after": [" ".join(j.after or ()) for j in jobs],
            "array_job": [array(j) for j in jobs],
            "array_limit": [str(j.array_limit or 0) if j.array_job is not None else "" for j in jobs],
        },
    )


@dataclass
class Config:
    """What the fleet file gives a live cluster: queues, cohorts, pools and the policy."""

    policy: str = "fifo"
    queues: tuple[QueueSpec, ...] = ()
    cohorts: tuple[CohortSpec, ...] = ()
    default_cohort: str | None = None
    heartbeat_timeout_s: float = 30.0  # a node silent this long is down (if it runs nothing)
    # An agent stops its jobs once it has not renewed its lease for `fence_s`; a node that
    # runs jobs is down only after that, their grace and `fence_margin_s` more, so that no
    # job is started elsewhere while a copy may still run there.
    fence_s: float = 60.0
    fence_margin_s: float = 5.0
    broker: BrokerConfig | None = None  # services' replicas and lending (live/services.py)

    @classmethod
    def from_fleet(cls, fleet: Fleet | None, policy: str) -> Config:
        if fleet is None:
            return cls(policy)
        return cls(policy, tuple(fleet.queues.values()), tuple(fleet.cohorts), fleet.default_cohort)


class Reconciler(NoEffects):
    """The live face around the shared driver, whose effects it is: a start commits an
    attempt, a stop marks the live attempt stopping, in the step's transaction."""

    def __init__(
        self, engine: Engine, config: Config, clock: Callable[[], float], cause: str = "the server started"
    ) -> None:
        self.db = engine
        self.config = config
        self.clock = clock
        self.began_s = clock()
        self.cluster: ClusterState | None = None
        self.policy: Policy = make_policy(config.policy)
        self.driver: Driver | None = None
        self.session: Session | None = None  # the step's transaction, for the driver's effects
        self.row_of: list[int] = []  # cluster job -> Job.id
        self.last_row = 0  # the largest Job.id registered
        self.job_of: dict[int, int] = {}  # Job.id -> cluster job
        self.node_of: list[str] = []  # host -> node name
        self.nodes_touched: set[int] = set()  # pools where nodes joined or were lost
        self.reports: dict[int, float] = {}  # attempt -> the checkpoint report applied
        self.saved_policy: dict[str, Any] | None = None  # the policy's export, as last committed
        self.steps = 0
        self.fresh: set[int] = set()  # attempts committed in this step's transaction
        self.first_waits: list[float] = []  # submit-to-start of the jobs first started (the loop takes them)
        self.broker: LiveBroker | None = None
        self.scraper: Scraper | None = None  # (of services whose demand is their replicas' metrics)
        self.unplaceable: dict[int, str] = {}  # Job.id -> why no pool of the fleet now can hold it
        self.fleet_grew = False  # (hosts joined: the unplaceable are tried again)
        self.windows_seen: tuple[Any, ...] | None = None  # (last id, count) of the reservations loaded
        self.reserved_until_s = -math.inf  # reservation windows applied up to then
        self.rebuild(cause)

    # --- the state from the database -----------------------------------------------------

    def rebuild(self, cause: str) -> None:
        """The cluster state and a fresh policy from the database alone; `cause` says why,
        in the log."""
        now = self.clock()
        log.info("reconciler rebuilt from the database at %.3f: %s", now, cause)
        with Session(self.db) as session, session.begin():
            nodes = session.scalars(
                select(Node).where(Node.state != DOWN).order_by(Node.registered_s, Node.name)
            )
            nodes = list(nodes)
            for node in session.scalars(select(Node).where(Node.state == DOWN)):
                node.host = -1
            self.cluster, self.node_of, self.row_of, self.job_of = None, [], [], {}
            self.reports = {}
            self.last_row = 0  # the largest Job.id registered
            self.rebuilt = True
            self.nodes_touched = set()
            self.policy = make_policy(self.config.policy)
            self.driver = None
            self.broker = LiveBroker(self.config.broker) if self.config.broker is not None else None
            if not nodes:
                return
            segments = [Segment(node.pool, 1, node.gpus, 1, 1) for node in nodes]
            pools = {s.pool for s in segments}
            queues = [q for q in self.config.queues if (q.pool or q.name) in pools or q.pool is None]
            fleet = Fleet(
                "live",
                segments,
                "default" if "default" in pools else None,
                queues,
                list(self.config.cohorts),
                self.config.default_cohort,
            )
            self.cluster = cluster = ClusterState(fleet, None, self.policy.enforces_quota, explain=True)
            for host, node in enumerate(nodes):
                node.host = host
            self.node_of = [node.name for node in nodes]
            live = list(
                session.scalars(
                    select(Job).where(Job.state.in_((PENDING, RUNNING))).order_by(Job.submit_s, Job.id)
                )
            )
            self.unplaceable = {}
            self.fleet_grew = False
            self._register(live)
            live_rows = {job.id for job in live}
            running: dict[int, Attempt] = {}
            for attempt in session.scalars(select(Attempt).order_by(Attempt.id)):
                if attempt.job not in live_rows:
                    continue
                if attempt.state in (COMMITTED, ATTEMPT_RUNNING) or (
                    attempt.state == EXITED and not attempt.ended
                ):
                    # (an exit reported but not yet applied holds its GPUs until the next
                    # step applies it: the job must never start again)
                    running[attempt.job] = attempt
                    continue
                i = self.job_of.get(attempt.job)
                if i is not None:  # (a run that was stopped)
                    self._resume(i, attempt, session.get(Job, attempt.job))
            index = {name: host for host, name in enumerate(self.node_of)}
            cluster.view.now_s = now
            for job in live:
                i = self.job_of.get(job.id)
                if i is None:  # (no pool can hold it now: it waits, or has ended)
                    attempt = running.get(job.id)
                    if attempt is not None:
                        self._lost_on_rebuild(job, attempt, now)
                    if job.state == RUNNING:
                        set_state(job, PENDING)
                    continue
                if job.checkpoint_s is not None:
                    cluster.report_checkpoint(i, job.checkpoint_s)
                attempt = running.get(job.id)
                if attempt is not None and self._fits(attempt, nodes, index):
                    placement = tuple((index[name], len(taken)) for name, taken in attempt.placement)
                    ids = tuple((index[name], tuple(taken)) for name, taken in attempt.placement)
                    cluster.adopt(i, placement, attempt.start_s, ids)
                    if attempt.checkpoint_s is not None:
                        cluster.report_checkpoint(i, attempt.checkpoint_s)
                        self.reports[attempt.id] = attempt.checkpoint_s
            order: list[int] = []  # the live jobs, in arrival order, for the policy
            for job in live:
                i = self.job_of.get(job.id)
                if i is None:
                    continue
                attempt = running.get(job.id)
                if not cluster.is_running(i):
                    if attempt is not None and self._lost_on_rebuild(job, attempt, now):
                        continue
                    if attempt is not None:  # (its run, lost at this rebuild)
                        self._resume(i, attempt, job)
                    if job.state == RUNNING:
                        set_state(job, PENDING)
                order.append(i)
            self.driver = driver = Driver(cluster, self.policy, self)
            self.windows_seen = None
            self._load_windows(session)
            note = session.get(Meta, "decided_s")
            if note is not None and tuple(note.value.get("windows", ())) == self.windows_seen:
                self.reserved_until_s = note.value["t"]  # (the last step applied the windows up to then)
            self._known_outcomes(session, live)
            self.session = session
            try:
                driver.take_over(order, now)
            finally:
                self.session = None
            saved = session.get(Meta, "policy")
            self.saved_policy = saved.value if saved is not None else None
            if self.saved_policy is not None and self.saved_policy["policy"] == self.config.policy:
                driver.restore(json.loads(self.saved_policy["state"]), self.job_of.get)
                for name, at_s in self.saved_policy.get("wakes", {}).items():
                    if name in fleet.pools:
                        driver.wakes[fleet.pools.index(name)] = at_s

    def _resume(self, i: int, attempt: Attempt, row: Job) -> None:
        """Job `i` ran `attempt`, which was stopped: it keeps the work its checkpoints kept, at
        the attempt's size, and was last stopped when the attempt was told to stop (or ended)."""
        assert self.cluster is not None
        kept = attempt.kept_s if attempt.kept_s is not None else kept_s(attempt, row)
        size = sum(len(ids) for _, ids in attempt.placement)
        stopped_s = attempt.stop_s if attempt.stop_s is not None else attempt.end_s
        worked = kept * speed(size, row.gpus, self.cluster.scaling[i])
        self.cluster.resume(i, worked, 1, math.nan if stopped_s is None else stopped_s)

    @staticmethod
    def _fits(attempt: Attempt, nodes: list[Node], index: dict[str, int]) -> bool:
        """Whether a live attempt's ranks can be held again on the nodes there are now: every
        node up, with the GPU indices it was given (a node that came back smaller cannot)."""
        for name, taken in attempt.placement:
            host = index.get(name)
            if host is None or any(not 0 <= g < nodes[host].gpus for g in taken):
                return False
        return len(attempt.placement) == len({name for name, _ in attempt.placement})

    def _lost_on_rebuild(self, row: Job, attempt: Attempt, now: float) -> bool:
        """A live attempt a rebuild cannot hold again (its node gone, changed, or its job
        fits no pool now): an exit already reported ends the job (True); otherwise the
        attempt ends as failed, keeping what its reports hold, and the job waits (False)."""
        if attempt.state == EXITED:
            self._finish(row, attempt, now)
            return True
        set_state(attempt, ATTEMPT_ENDED)
        attempt.ended, attempt.end_s = "failed", now
        attempt.kept_s = kept_s(attempt, row)
        return False

    def _close(self, row: Job, attempt: Attempt, now: float) -> None:
        """An attempt whose end was reported is done: its time counts to its job's."""
        set_state(attempt, ATTEMPT_ENDED)
        self.reports.pop(attempt.id, None)
        row.run_s += (attempt.end_s or now) - attempt.start_s

    def _finish(self, row: Job, attempt: Attempt, now: float) -> None:
        """Apply an attempt's reported exit to its job: it has ended, for good."""
        self._close(row, attempt, now)
        attempt.ended = "completed" if attempt.exit_code == 0 else "failed"
        set_state(row, SUCCEEDED if attempt.exit_code == 0 else FAILED)
        row.exit_code, row.end_s = attempt.exit_code, now

    def _known_outcomes(self, session: Session, rows: list[Job]) -> None:
        """Tell the gates how the jobs that `rows` depend on ended, where they have (before
        a rebuild, or before `rows` were registered)."""
        assert self.driver is not None
        named = {dep.partition(":")[0] for row in rows for dep in row.after or ()}
        named -= self.driver.gates.outcome.keys()
        if not named:
            return
        ended = select(Job.job_id, Job.state).where(
            Job.job_id.in_(named), Job.state.in_((SUCCEEDED, FAILED, CANCELLED))
        )
        for job_id, state in session.execute(ended):
            self.driver.gates.known(job_id, state == SUCCEEDED)

    def _register(self, jobs: list[Job]) -> list[Job]:
        """Register `jobs` (rows) with the cluster state, not yet arrived; those the fleet as
        it is now can never hold (more GPUs than their pool has, a queue with no pool) are
        kept aside with the reason, to be tried again when hosts join. Returns the rows
        registered."""
        if not jobs:
            return []
        assert self.cluster is not None
        self.last_row = max(self.last_row, max(job.id for job in jobs))
        try:
            added = list(zip(jobs, self.cluster.add_jobs(job_table(jobs), whole=False), strict=True))
        except InputError:  # (one at a time, to know which)
            added = []
            for job in jobs:
                try:
                    (i,) = self.cluster.add_jobs(job_table([job]), whole=False)
                except InputError as err:
                    self.unplaceable[job.id] = err.message
                    continue
                added.append((job, i))
        for job, i in added:
            if job.released_s is not None:
                self.cluster.released_s[i], self.cluster.released_rank[i] = (
                    job.released_s,
                    job.released_rank or 0,
                )
            self.unplaceable.pop(job.id, None)
            self.row_of.append(job.id)
            self.job_of[job.id] = i
        return [job for job, _ in added]

    # --- one step ------------------------------------------------------------------------

    def step(self) -> int:
        """Apply what arrived and decide; the number of attempts committed."""
        now = self.clock()
        if self._nodes_changed(now):
            self.rebuild("a node joined from a new pool, or came back with other GPUs")
        cluster, driver = self.cluster, self.driver
        if cluster is None or driver is None:
            return 0
        cluster.view.now_s = now
        self.fresh = set()
        with Session(self.db) as session, session.begin():
            self.session = session
            # After a rebuild every pool is passed, so that jobs found waiting may start, unless
            # the reconciler before this one passed them at this very instant, knowing every
            # job this one found.
            note = session.get(Meta, "decided_s")
            touched: set[int] = set()
            if self.rebuilt and (
                note is None or note.value["t"] < now or note.value.get("jobs", 0) < self.last_row
            ):
                touched = set(range(len(cluster.fleet.pools)))
            self.rebuilt = False
            touched |= self.nodes_touched
            self.nodes_touched = set()
            self._checkpoints(session)
            touched |= self._exits(session, now)
            touched |= self._services(session, now)
            touched |= self._arrivals(session, now)
            touched |= self._cancellations(session, now)
            touched |= self._windows(session, now)
            touched |= driver.due(now)
            started = driver.decide(touched, now)
            seen = {"t": now, "jobs": self.last_row, "windows": list(self.windows_seen or ())}
            if note is None:
                session.add(Meta(key="decided_s", value=seen))
            else:
                note.value = seen
            self._save_policy(session)
            self.session = None
        return started

    def _windows(self, session: Session, now: float) -> set[int]:
        """Reservations as the database has them (read again when one was made or deleted),
        and the windows that began or ended since the last step applied."""
        cluster, driver = self.cluster, self.driver
        assert cluster is not None and driver is not None
        touched: set[int] = set()
        if self._load_windows(session):
            touched = set(range(len(cluster.fleet.pools)))
            for pool in touched:
                cluster.alloc.widened(pool)
        touched |= driver.reservations_due(self.reserved_until_s, now)
        self.reserved_until_s = now
        return touched

    def _load_windows(self, session: Session) -> bool:
        """Read the reservations again if one was made or deleted since they were read;
        whether they were. Windows under way then apply again from their start (which
        stops only jobs that may not be on their nodes)."""
        assert self.cluster is not None
        seen = tuple(session.execute(select(func.max(Window.id), func.count(Window.id))).one())
        if seen == self.windows_seen:
            return False
        self.windows_seen = seen
        self.cluster.reservations = Reservations()
        for row in session.scalars(select(Window).order_by(Window.start_s, Window.id)):
            self._hold(row)
        self.reserved_until_s = -math.inf
        return True

    def _hold(self, row: Window) -> None:
        """Reservation `row` on the nodes up now (those down are left out, and it is left
        out where none of its nodes is up or its pool is gone: logged)."""
        assert self.cluster is not None
        nodes = tuple(name for name in row.nodes if name in self.node_of)
        if row.nodes and not nodes:
            log.warning("reservation %s: none of its nodes %s is up; it holds nothing", row.name, row.nodes)
            return
        spec = ReservationSpec(
            row.name, row.start_s, row.end_s - row.start_s, row.pool, nodes, row.gpus, row.queue, row.notice_s
        )
        try:
            self.cluster.add_reservation(spec, self.node_of)
        except InputError as err:
            log.warning("reservation %s holds nothing now: %s", row.name, err.message)

    @staticmethod
    def typical_run_s(session: Session) -> dict[str, float]:
        """Per queue, the median time its succeeded jobs held GPUs (what a job of it with no
        estimate is forecast to run)."""
        runs: dict[str, list[float]] = {}
        for queue, run_s in session.execute(select(Job.queue, Job.run_s).where(Job.state == SUCCEEDED)):
            runs.setdefault(queue, []).append(run_s)
        return {queue: float(np.median(values)) for queue, values in runs.items()}

    def held_nodes(self, name: str) -> list[str] | None:
        """The nodes reservation `name` holds now (None: it holds none)."""
        if self.cluster is None:
            return None
        for r in self.cluster.reservations.items:
            if r.spec.name == name:
                return [self.node_of[h] for h in r.hosts.tolist()]
        return None

    def _services(self, session: Session, now: float) -> set[int]:
        """The broker's step, when one is due: replicas submitted or cancelled to meet its
        targets (arrivals and cancellations of this same step apply them), and the GPUs
        held out of elastic growth in the services' pool."""
        cluster = self.cluster
        if self.broker is None or cluster is None or not self.broker.due(now):
            return set()
        first = session.scalar(select(Service.queue).order_by(Service.created_s, Service.name).limit(1))
        pool = cluster.fleet.pool_of_queue(first) if first is not None else None
        if pool is None:
            return set()
        for service in session.scalars(select(Service).where(Service.metrics_path.is_not(None))):
            if self.scraper is None:
                from corral.live.scrape import Scraper

                self.scraper = Scraper()
            urls = [e["url"] for e in endpoints(session, service.name)]
            rate = self.scraper.rate(urls, service.metrics_path, service.metrics_counter, now)  # type: ignore[arg-type]
            if rate is not None:
                session.add(Demand(service=service.name, t_s=now, requests_per_s=rate))
        session.flush()
        reserve = self.broker.step(session, now, cluster.fleet.pool_gpus[pool])
        if reserve is None or reserve == cluster.reserved[pool]:
            return set()
        cluster.reserved[pool] = reserve
        return {pool}

    def _save_policy(self, session: Session) -> None:
        """Commit what the policy knows beyond the cluster state (LAS's queues, FTF's leases,
        FIFO's order after a requeue, decayed usage), its jobs named by row, and when it
        asked to decide again, with this step's attempts: a rebuilt reconciler restores it
        and carries on as if it had not been rebuilt. (JSON text: a rank may hold an
        infinity, which JSON columns refuse.)"""
        assert self.cluster is not None and self.driver is not None
        if not self.driver.changed:
            return
        self.driver.changed = False
        pools = self.cluster.fleet.pools
        state = {
            "policy": self.config.policy,
            "state": json.dumps(self.driver.export(self.row_of.__getitem__)),
            "wakes": {pools[pool]: at_s for pool, at_s in sorted(self.driver.wakes.items())},
        }
        if state == self.saved_policy:
            return
        self.saved_policy = state
        saved = session.get(Meta, "policy")
        if saved is None:
            session.add(Meta(key="policy", value=state))
        else:
            saved.value = state

    def _nodes_changed(self, now: float) -> bool:
        """Nodes that joined (hosts added to their pool) or went silent (taken out, their
        jobs interrupted); whether the state must be rebuilt (a node of a new pool)."""
        timeout = self.config.heartbeat_timeout_s
        reshaped = False
        with Session(self.db) as session, session.begin():
            for node in session.scalars(
                select(Node).where(Node.state != DOWN, Node.heartbeat_s < now - timeout)
            ):
                # (silence counts from when this reconciler began, too: a server that was
                # down heard nobody, and its agents' leases outlive a short restart)
                if now - max(node.heartbeat_s, self.began_s) < self._down_after_s(session, node):
                    continue
                node.state = DOWN
                self._lose_node(session, node, now)
            if self.cluster is not None:  # cordoned and draining nodes start nothing new
                alloc = self.cluster.alloc
                fleet = self.cluster.fleet
                for node in session.scalars(select(Node).where(Node.state != DOWN, Node.host >= 0)):
                    pool = int(fleet.host_pool[node.host])
                    if int(fleet.host_gpus[node.host]) != node.gpus or fleet.pools[pool] != node.pool:
                        # (it came back with other GPUs or in another pool: the host it was
                        # is gone, its jobs lost, and it joins again as a new one below)
                        self._lose_node(session, node, now)
                        reshaped = True
                        continue
                    closing = node.state in (CORDONED, DRAINING)
                    if closing != alloc.closed[node.host]:
                        (alloc.close if closing else alloc.reopen)(node.host)
                        self.nodes_touched.add(int(self.cluster.fleet.host_pool[node.host]))
                    if (
                        node.state == DRAINING
                        and node.drain_deadline_s is not None
                        and node.drain_deadline_s <= now
                    ):
                        self._drain(session, node, now)
            for node in session.scalars(select(Node).where(Node.state != DOWN, Node.host < 0)):
                if self.cluster is None or node.pool not in self.cluster.fleet.pools:
                    return True
                fleet = self.cluster.fleet
                sizes = fleet.host_gpus[fleet.pool_hosts[fleet.pools.index(node.pool)]]
                if reshaped or node.gpus not in sizes:
                    return True  # (a pool's hosts are of one size: it is made anew, of the nodes up)
                (host,) = self.cluster.add_hosts(Segment(node.pool, 1, node.gpus, 1, 1))
                self.fleet_grew = True
                node.host = host
                self.node_of.append(node.name)
                self.nodes_touched.add(self.cluster.fleet.pools.index(node.pool))
        return False

    def _down_after_s(self, session: Session, node: Node) -> float:
        """How long `node` must be silent before it is down: the heartbeat timeout, or, while
        it has attempts, until its agent has surely fenced them (lease, grace, margin)."""
        live = select(Attempt.placement, Job.grace_s).join(Job, Job.id == Attempt.job)
        graces = [
            grace_s
            for placement, grace_s in session.execute(
                live.where(Attempt.state.in_((COMMITTED, ATTEMPT_RUNNING, STOPPING)))
            )
            if any(name == node.name for name, _ in placement)
        ]
        if not graces:
            return self.config.heartbeat_timeout_s
        fenced = self.config.fence_s + max(graces) + self.config.fence_margin_s
        return max(self.config.heartbeat_timeout_s, fenced)

    def _drain(self, session: Session, node: Node, now: float) -> None:
        """A drain's deadline passed: the jobs still on the node are stopped as the
        simulator's maintenance stops them (they save first) and wait again."""
        assert self.cluster is not None and self.driver is not None
        for job in sorted(self.cluster.on_host.get(node.host, ())):
            self.driver.interrupt(job, now, graceful=True)
            row = session.get(Job, self.row_of[job])
            set_state(row, PENDING)
            self._stop(session, row, now, "drained")
            self.nodes_touched.add(self.cluster.pool[job])
        node.drain_deadline_s = None

    def _lose_node(self, session: Session, node: Node, now: float) -> None:
        """A node that stopped answering: its attempts end as failed, their jobs wait again
        with their last checkpoint, as the simulator's host failures leave them."""
        if self.cluster is None or self.driver is None or node.host < 0:
            return
        self.nodes_touched.add(int(self.cluster.fleet.host_pool[node.host]))
        for job in self.driver.remove_host(node.host, now):
            row = session.get(Job, self.row_of[job])
            set_state(row, PENDING)
            for attempt in session.scalars(
                select(Attempt).where(
                    Attempt.job == row.id, Attempt.state.in_((COMMITTED, ATTEMPT_RUNNING, STOPPING))
                )
            ):
                set_state(attempt, ATTEMPT_ENDED)
                attempt.ended, attempt.end_s = "failed", now
                attempt.kept_s = kept_s(attempt, row)
                self.cluster.settle(job, attempt.kept_s)
        node.host = -1

    def _checkpoints(self, session: Session) -> None:
        """Checkpoints that running attempts reported since the last step."""
        cluster = self.cluster
        assert cluster is not None
        for attempt in session.scalars(
            select(Attempt).where(
                Attempt.state.in_((COMMITTED, ATTEMPT_RUNNING)), Attempt.checkpoint_s.is_not(None)
            )
        ):
            at = attempt.checkpoint_s
            i = self.job_of.get(attempt.job)
            if i is None or self.reports.get(attempt.id) == at:
                continue
            self.reports[attempt.id] = at
            if cluster.is_running(i) and cluster.run_since[i] == attempt.start_s:
                cluster.report_checkpoint(i, at)

    def _exits(self, session: Session, now: float) -> set[int]:
        """Attempts whose end an agent reported, in the order they started."""
        cluster, driver = self.cluster, self.driver
        assert cluster is not None and driver is not None
        touched: set[int] = set()
        for attempt in session.scalars(select(Attempt).where(Attempt.state == EXITED).order_by(Attempt.id)):
            row = session.get(Job, attempt.job)
            i = self.job_of.get(row.id)
            if not attempt.ended:
                self._finish(row, attempt, now)
                if i is None:
                    continue
                if cluster.is_running(i):
                    touched.add(driver.complete(i, now, attempt.exit_code == 0))
                elif not cluster.has_ended(i):  # (waiting, or not yet arrived: never again, it has ended)
                    driver.withdraw(i, now)
                    touched.add(cluster.pool[i])
                continue
            self._close(row, attempt, now)
            if row.cancel_requested and row.state != CANCELLED:
                set_state(row, CANCELLED)
                row.end_s = now
            elif attempt.ended == "failed":
                # (its agent lost the server and stopped it, fencing it off: a lost node, as
                # the job sees it; it waits again with what its checkpoints kept)
                attempt.kept_s = kept_s(attempt, row)
                current = i is not None and cluster.is_running(i)
                if current and cluster.run_since[i] == attempt.start_s:
                    driver.interrupt(i, now, graceful=False)
                    cluster.settle(i, attempt.kept_s)
                    set_state(row, PENDING)
                    touched.add(cluster.pool[i])
            elif attempt.ended != "cancelled":  # (stopped on purpose: what it kept is known now)
                attempt.kept_s = kept_s(attempt, row)
                if i is not None:
                    if row.checkpoint_s is not None:
                        cluster.report_checkpoint(i, row.checkpoint_s)
                    cluster.settle(i, attempt.kept_s)
        return touched

    def _arrivals(self, session: Session, now: float) -> set[int]:
        cluster, driver = self.cluster, self.driver
        assert cluster is not None and driver is not None
        # Ids grow with submissions, but a transaction may commit after a later one: look
        # back a window of ids at every step, and at every id now and then.
        self.steps += 1
        query = select(Job.id).where(Job.state == PENDING)
        if self.steps % FULL_SCAN_EVERY:
            query = query.where(Job.id > self.last_row - LOOK_BACK_IDS)
        if self.fleet_grew:  # (jobs no pool could hold may fit now)
            query = select(Job.id).where(Job.state == PENDING)
            self.fleet_grew = False
            self.unplaceable.clear()
        unknown = [i for i in session.scalars(query) if i not in self.job_of and i not in self.unplaceable]
        new = (
            list(session.scalars(select(Job).where(Job.id.in_(unknown)).order_by(Job.submit_s, Job.id)))
            if unknown
            else []
        )
        registered = self._register(new)
        self._known_outcomes(session, registered)
        return {driver.submit(self.job_of[row.id], now) for row in registered}

    def _cancellations(self, session: Session, now: float) -> set[int]:
        cluster, driver = self.cluster, self.driver
        assert cluster is not None and driver is not None
        touched: set[int] = set()
        rows = session.scalars(select(Job).where(Job.cancel_requested, Job.state.in_((PENDING, RUNNING))))
        for row in rows:
            i = self.job_of.get(row.id)
            if i is None:  # (never registered: no pool could hold it)
                self.unplaceable.pop(row.id, None)
                set_state(row, CANCELLED)
                row.end_s = now
                continue
            was_running = driver.withdraw(i, now)
            touched.add(cluster.pool[i])
            if was_running:
                self._stop(session, row, now, "cancelled")
            set_state(row, CANCELLED)
            row.end_s = now
        return touched

    def _stop(self, session: Session, row: Job, now: float, why: str) -> None:
        """Ask the agents to stop the job's live attempt: SIGTERM, then SIGKILL after its grace."""
        for attempt in session.scalars(
            select(Attempt).where(Attempt.job == row.id, Attempt.state.in_((COMMITTED, ATTEMPT_RUNNING)))
        ):
            attempt.ended, attempt.stop_s = why, now
            if attempt.id in self.fresh:  # (committed in this transaction: no agent has seen it)
                set_state(attempt, ATTEMPT_ENDED)
                attempt.end_s, attempt.kept_s = now, 0.0
                continue
            set_state(attempt, STOPPING)
            attempt.stop_deadline_s = now + row.grace_s

    # --- the driver's effects, in the step's transaction --------------------------------------

    def started(self, job: int, end_s: float, now_s: float) -> None:
        assert self.session is not None
        self._commit(self.session, job, now_s)

    def resized(self, job: int, end_s: float, now_s: float) -> None:
        """The gang stops (SIGTERM: it checkpoints) and starts again at its new size from the
        same checkpoint folder, once the old one has ended."""
        assert self.session is not None
        self._stop(self.session, self.session.get(Job, self.row_of[job]), now_s, "resized")
        self._commit(self.session, job, now_s)

    def cancelled(self, job: int, why: str, now_s: float) -> None:
        """A dependency of `job` can no longer be met: it ends, cancelled, saying which."""
        assert self.session is not None
        row = self.session.get(Job, self.row_of[job])
        set_state(row, CANCELLED)
        row.end_s, row.reason = now_s, why[:400]

    def reserved(self, job: int, now_s: float) -> None:
        """A window began under the job, which may not be on its nodes: it stops (SIGTERM, it
        checkpoints) and waits again, as a drain stops it."""
        assert self.session is not None
        row = self.session.get(Job, self.row_of[job])
        set_state(row, PENDING)
        self._stop(self.session, row, now_s, "reserved")

    def released(self, job: int, now_s: float, rank: int) -> None:
        assert self.session is not None
        row = self.session.get(Job, self.row_of[job])
        row.released_s, row.released_rank = now_s, rank

    def preempted(self, job: int, now_s: float) -> None:
        assert self.session is not None
        row = self.session.get(Job, self.row_of[job])
        set_state(row, PENDING)
        self._stop(self.session, row, now_s, "preempted")

    def _commit(self, session: Session, i: int, now: float) -> None:
        """An attempt row for the run job `i` has just been given, in the transaction before
        anything can launch it."""
        cluster = self.cluster
        assert cluster is not None
        row = session.get(Job, self.row_of[i])
        placement = [[self.node_of[host], list(taken)] for host, taken in cluster.gpu_ids[i]]  # type: ignore[union-attr]
        attempt = Attempt(
            job=row.id, number=cluster.attempts[i], placement=placement, state=COMMITTED, start_s=now
        )
        session.add(attempt)
        if attempt.number == 1:
            self.first_waits.append(now - row.submit_s)
        set_state(row, RUNNING)
        session.flush()
        self.fresh.add(attempt.id)

    def next_wake_s(self) -> float:
        """When the policy asked to decide again, or a reservation window begins or ends, with
        nothing else happening (inf if never)."""
        if self.driver is None or self.cluster is None:
            return math.inf
        now = self.clock()  # (a boundary passed while no reconciler ran is applied at the next step)
        windows = (
            t for t in self.cluster.reservations.boundaries() if t > self.reserved_until_s and t >= now
        )
        return min(min(self.driver.wakes.values(), default=math.inf), min(windows, default=math.inf))

    def reasons(self, job_row: int) -> list[tuple[float, str, str]]:
        """A job's history as (time, kind, words), in the simulator's words."""
        cluster = self.cluster
        if job_row in self.unplaceable:
            return [(self.clock(), "unplaceable", self.unplaceable[job_row])]
        if cluster is None:
            return [(self.clock(), "waiting_gpus", "no node has joined the cluster yet")]
        i = self.job_of.get(job_row)
        if i is None:
            return [(self.clock(), "submitted", "the scheduler takes it up at its next step")]
        if cluster.reasons is None:
            return []
        return [(t, r.kind, r.render(cluster.job_id)) for t, r in cluster.reasons.get(i, [])]
