"""Services on the live cluster: the capacity broker (capacity/broker.py, the simulation's
own code) run by the reconciler.

Every `step_s` the broker reads each service's demand (requests per second pushed to the API
or counted by its proxy, averaged per step, the last value carried over a step with none)
as GPUs (requests/s / `replica_rps` x `gpus_per_replica`), sets its target replicas and the
GPUs elastic training may grow into, and the reconciler makes it so: a replica is an
ordinary job (non-preemptible, of `REPLICA_PRIORITY`, run by the agents or by Ray) that is
submitted or cancelled to meet the target. GPUs a broker expects services to want within its
lending horizon are held out of elastic growth (`ClusterState.reserved`); preemptible work
may still use them and is preempted, with its grace as the notice, when replicas need them.
Every change of a target or of what is lent is a `Move` row, with its reason.

The broker's own state (its hysteresis) is a function of the demand history: a reconciler
rebuilt after a crash replays the steps already decided, without acting on them, and goes on.
`day_s` lets a day of demand be replayed faster than real time: the broker's seasonal
forecast counts days of `day_s` seconds.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from corral.capacity.broker import DAY_S, Broker
from corral.live.db import ATTEMPT_RUNNING, PENDING, RUNNING, Attempt, Demand, Job, Meta, Move, Node, Service

REPLICA_PRIORITY = 1_000_000  # replicas go before any job a team submits
REPLICA_PORT_BASE = 30000  # a replica listens on CORRAL_PORT = base + attempt id % 20000


def replica_port(attempt_id: int) -> int:
    return REPLICA_PORT_BASE + attempt_id % 20000


def service_key(team: str, name: str) -> str:
    """Services are named within their team, as Kubernetes names within a namespace: one
    team's name neither clashes with nor reveals another's. Stored as 'team:name' (':' is
    in neither a team's nor a service's name)."""
    return f"{team}:{name}"


def service_name(key: str) -> str:
    """The name its team gave a service, from its stored key."""
    return key.split(":", 1)[-1]


def endpoints(db: Session, service: str) -> list[dict[str, Any]]:
    """The replicas of `service` that run now: where each listens and since when."""
    rows = db.execute(
        select(Attempt, Job.job_id)
        .join(Job, Attempt.job == Job.id)
        .where(Job.service == service, Attempt.state == ATTEMPT_RUNNING)
        .order_by(Attempt.id)
    ).all()
    out = []
    for attempt, job_id in rows:
        node = db.get(Node, attempt.placement[0][0])
        address = node.address if node is not None else "127.0.0.1"
        out.append(
            {
                "url": f"http://{address}:{replica_port(attempt.id)}",
                "job_id": job_id,
                "since_s": attempt.start_s,
            }
        )
    return out


@dataclass
class BrokerConfig:
    """How the live broker decides: its kind, how often (wall seconds), the length of the
    demand's day, the headroom, the notice reclaimed GPUs take (part of a replica's lead),
    and how far ahead lending looks."""

    kind: str = "predictive"
    step_s: float = 300.0
    day_s: float = DAY_S
    headroom: float = 0.1
    notice_s: float = 120.0
    lend_horizon_s: float = 3 * 3600.0

    @property
    def model_step_s(self) -> float:
        """A step as the broker's forecast counts it (in days of 86,400 s)."""
        return self.step_s * DAY_S / self.day_s


class LiveBroker:
    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.broker = Broker(config.kind, headroom=config.headroom)
        self.names: tuple[str, ...] = ()
        self.origin: float | None = None  # when step 0 began: the first demand sample
        self.sums: dict[str, dict[int, list[float]]] = {}  # per service: step -> samples
        self.gpus: list[list[float]] = []  # per service: demand in GPUs of each step so far
        self.dirty = 0  # the first step whose demand must be computed again
        self.decided = -1  # the last step the broker decided
        self.first = -1  # the first (earlier steps' demand is history it learns from)
        self.loaded_id = 0  # demand rows read so far
        self.lendable: int | None = None
        self.capped: dict[str, int | None] = {}  # per service: the target its last cap cut

    def due(self, now: float) -> bool:
        """Whether a step has begun since the last decision (or no demand was seen yet)."""
        return self.origin is None or self._step_at(now) > self.decided

    def _step_at(self, now: float) -> int:
        assert self.origin is not None
        return int(math.floor((now - self.origin) / self.config.step_s + 1e-9))

    def step(self, session: Session, now: float, pool_gpus: int) -> int | None:
        """Decide every step up to now; apply the last (targets, replicas, moves). Returns
        the GPUs to hold out of elastic growth, or None when no service has demand yet."""
        services = list(session.scalars(select(Service).order_by(Service.created_s, Service.name)))
        if tuple(s.name for s in services) != self.names:
            self._restart(session, services)
        self._load(session, now)
        if self.origin is None:
            self._hold_minimum(session, services, now, pool_gpus)
        if self.origin is None or not services:
            return None
        t = self._step_at(now)
        if t <= self.decided:
            return None
        cfg, model_step = self.config, self.config.model_step_s
        per = np.array([s.gpus_per_replica for s in services], dtype=np.int64)
        floor = np.array([s.min_replicas for s in services], dtype=np.int64)
        lead = np.array([math.ceil((s.startup_s + cfg.notice_s) / cfg.step_s) + 1 for s in services])
        horizon = math.ceil(cfg.lend_horizon_s / cfg.step_s)
        demand = self._demand_gpus(services, t)
        note = session.get(Meta, "broker_step")
        if self.first < 0:  # (the first step decided; the demand before it is history)
            self.first = t if note is None else int(note.value["first"])
        targets = np.zeros(len(services), dtype=np.int64)
        for k in range(max(self.decided + 1, self.first), t + 1):
            targets = self.broker.targets(k, demand[:, : k + 1], per, floor, lead, model_step)
            targets = np.minimum(targets, [s.max_replicas for s in services])
        wanted = targets
        targets = np.minimum(targets, pool_gpus // per)  # (no more than the pool can ever hold)
        self.decided = t
        last = -1 if note is None else int(note.value["step"])
        if t <= last:  # (a rebuilt reconciler: applied by the one before it)
            return self._hold(demand, t, per, floor, horizon, targets, pool_gpus, None, now)
        for i, service in enumerate(services):
            target = int(targets[i])
            # (a cap is said when the target it cut changes, even if the capped one does not)
            capped = int(wanted[i]) if target < wanted[i] else None
            if target != service.target_replicas or capped != self.capped.get(service.name):
                why = self._why(services, demand, i, t, int(lead[i]), int(wanted[i]))
                self._retarget(session, service, target, int(wanted[i]), why, now, t, pool_gpus)
                self.capped[service.name] = capped
            self._replicas(session, service, now)
        if note is None:
            session.add(Meta(key="broker_step", value={"first": self.first, "step": t}))
        else:
            note.value = {"first": self.first, "step": t}
        return self._hold(demand, t, per, floor, horizon, targets, pool_gpus, session, now)

    def _hold_minimum(self, session: Session, services: list[Service], now: float, pool_gpus: int) -> None:
        """Before any demand is seen, each service runs its minimum of replicas (no more
        than the pool can hold), so a service is up from its creation."""
        for service in services:
            most = pool_gpus // service.gpus_per_replica
            target = min(service.min_replicas, most)
            if service.target_replicas >= target:
                continue
            why = f"no demand seen yet: min_replicas = {service.min_replicas}"
            self._retarget(session, service, target, service.min_replicas, why, now, -1, pool_gpus)
            self._replicas(session, service, now)

    @staticmethod
    def _retarget(
        session: Session,
        service: Service,
        target: int,
        wanted: int,
        why: str,
        now: float,
        step: int,
        pool_gpus: int,
    ) -> None:
        """Set a service's target replicas, logged as a move with `why` (and the cap, where
        the pool holds fewer than `wanted`)."""
        if target < wanted:
            why += f"; capped at {target}: the pool has {pool_gpus} GPUs"
        before = service.target_replicas
        session.add(
            Move(
                t_s=now,
                step=step,
                service=service.name,
                kind="replicas",
                before=before,
                after=target,
                reason=why,
            )
        )
        service.target_replicas = target

    def _hold(
        self,
        demand: np.ndarray,
        t: int,
        per: np.ndarray,
        floor: np.ndarray,
        horizon: int,
        targets: np.ndarray,
        pool_gpus: int,
        session: Session | None,
        now: float,
    ) -> int:
        """GPUs that elastic jobs may not grow into beyond the replicas' own: what services
        are expected to want within the lending horizon more than their targets now. Logs
        a change of what is lent (the pool less that ceiling)."""
        held = int((targets * per).sum())
        ceiling = self.broker.lendable_ceiling(t, demand, per, floor, held, horizon, self.config.model_step_s)
        lendable = max(0, pool_gpus - ceiling)
        if session is not None and lendable != self.lendable:
            why = (
                f"{self.config.kind}: services hold {held} GPUs and may want up to {ceiling} within "
                f"{self.config.lend_horizon_s:,.0f} s; {lendable} of {pool_gpus} may go to elastic training"
            )
            before = -1 if self.lendable is None else self.lendable
            session.add(
                Move(t_s=now, step=t, service="", kind="lend", before=before, after=lendable, reason=why)
            )
        self.lendable = lendable
        return max(0, ceiling - held)

    def _why(
        self, services: list[Service], demand: np.ndarray, i: int, t: int, lead: int, target: int
    ) -> str:
        s = services[i]
        want = self.broker.wanted(t, demand[i, : t + 1], lead, self.config.model_step_s)
        now_gpus = float(demand[i, t])
        basis = {
            "static": f"the peak seen, {want:.1f} GPUs",
            "reactive": f"demand now, {now_gpus:.1f} GPUs",
            "predictive": f"max(now {now_gpus:.1f}, forecast over the next {lead} steps) = {want:.1f} GPUs",
        }[self.config.kind]
        return (
            f"{self.config.kind}: {basis} x {1 + self.config.headroom:g} headroom / {s.gpus_per_replica} "
            f"GPUs per replica -> {target} replicas (min {s.min_replicas}, max {s.max_replicas})"
        )

    def _restart(self, session: Session, services: list[Service]) -> None:
        """The set of services changed: the broker starts over on the whole history."""
        self.names = tuple(s.name for s in services)
        self.broker.reset()
        self.decided, self.first, self.loaded_id, self.lendable = -1, -1, 0, None
        self.sums = {s.name: {} for s in services}
        self.gpus = [[] for _ in services]
        self.dirty = 0
        self.origin = session.scalar(select(func.min(Demand.t_s)))

    def _load(self, session: Session, now: float) -> None:
        """Demand rows that arrived since the last step, binned per step."""
        rows = session.execute(
            select(Demand.id, Demand.service, Demand.t_s, Demand.requests_per_s)
            .where(Demand.id > self.loaded_id)
            .order_by(Demand.id)
        ).all()
        for row_id, service, t_s, rps in rows:
            self.loaded_id = max(self.loaded_id, row_id)
            if service not in self.sums:
                continue
            if self.origin is None:
                self.origin = t_s
            k = max(0, self._step_at(t_s))  # (older than the first sample seen: step 0)
            self.sums[service].setdefault(k, []).append(rps)
            self.dirty = min(self.dirty, k)

    def _demand_gpus(self, services: list[Service], t: int) -> np.ndarray:
        """Services x steps 0..t: mean requests/s of each step as GPUs, carried over a step
        with no sample (steps before `dirty` are kept from the last call)."""
        for i, s in enumerate(services):
            series, sums = self.gpus[i], self.sums[s.name]
            del series[self.dirty :]
            last = series[-1] * s.replica_rps / s.gpus_per_replica if series else 0.0
            for k in range(len(series), t + 1):
                if k in sums:
                    last = sum(sums[k]) / len(sums[k])
                series.append(last / s.replica_rps * s.gpus_per_replica)
        self.dirty = t + 1
        return np.array(self.gpus, dtype=float).reshape(len(services), t + 1)

    def _replicas(self, session: Session, service: Service, now: float) -> None:
        """Submit or cancel replica jobs to meet the target: pending ones go first, then the
        newest running."""
        live = list(
            session.scalars(
                select(Job)
                .where(Job.service == service.name, Job.state.in_((PENDING, RUNNING)), ~Job.cancel_requested)
                .order_by(Job.id)
            )
        )
        missing = service.target_replicas - len(live)
        for _ in range(missing):
            row = Job(
                job_id=f"new-{uuid.uuid4().hex}",
                name=f"{service_name(service.name)} replica",
                team=service.team,
                queue=service.queue,
                gpus=service.gpus_per_replica,
                priority=REPLICA_PRIORITY,
                preemptible=False,
                grace_s=30.0,
                command=service.command,
                submit_s=now,
                state=PENDING,
                service=service.name,
            )
            session.add(row)
            session.flush()
            row.job_id = str(row.id)
        if missing < 0:
            extra = sorted(live, key=lambda j: (j.state == RUNNING, j.id))[:-missing]
            for job in extra:
                job.cancel_requested = True
