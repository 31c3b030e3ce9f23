"""One fungible fleet stepped through time: services get the replicas a broker asks for,
an elastic pre-training job and preemptible research take what serving leaves, and GPUs
lent at night are reclaimed, at a notice, when serving wants them back.

Mechanism only; the broker (capacity/broker.py) is the policy. The elastic job is an
ordinary engine job (capacity/training.py): its runs, checkpoints, restarts and lost work are
the shared cluster state's ledger. Time advances in steps of
`step_s` (5 minutes by default): serving demand changes on that scale, and start-up times
and notices are charged in whole steps. Order of GPU claims: the research teams' fixed quota,
then serving (services in the order given), then the elastic job, then best-effort
(preemptible) research on whatever is left. Reclaim takes from best-effort first, then
shrinks the elastic job by whole data-parallel replicas: lending prefers what loses least.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from corral.capacity.broker import Broker
from corral.capacity.training import ElasticJob, Ledger
from corral.errors import InputError

HOUR_S = 3600.0


@dataclass(frozen=True)
class Service:
    """An inference or ranking service: GPUs its demand needs per step, replica size and
    start-up time (load weights, warm up), a floor of replicas, and its SLO target."""

    name: str
    demand_gpus: np.ndarray
    gpus_per_replica: int
    startup_s: float
    min_replicas: int = 1
    slo: float = 0.999
    history_gpus: np.ndarray | None = None  # demand before the simulation: what forecasts learn from


@dataclass(frozen=True)
class CapacityFleet:
    gpus: int
    research_gpus: int  # the research teams' own quota, never lent in this model
    services: tuple[Service, ...]
    training: ElasticJob
    step_s: float = 300.0
    notice_s: float = 120.0  # how long a borrower has to hand GPUs back
    best_effort_checkpoint_s: float = 1800.0
    lend_horizon_s: float = 3 * 3600.0  # training grows only into GPUs serving will not want back sooner

    def __post_init__(self) -> None:
        steps = {len(s.demand_gpus) for s in self.services}
        if len(steps) != 1:
            raise InputError("every service needs a demand for the same steps", field="demand_gpus")
        if len({0 if s.history_gpus is None else len(s.history_gpus) for s in self.services}) != 1:
            raise InputError("every service needs a history of the same length", field="history_gpus")
        floor = sum(s.min_replicas * s.gpus_per_replica for s in self.services)
        if self.research_gpus + floor + self.training.min_gpus > self.gpus:
            raise InputError(
                f"research {self.research_gpus} + serving floor {floor} + training minimum "
                f"{self.training.min_gpus} GPUs exceed the fleet's {self.gpus}",
                field="gpus",
            )

    @property
    def steps(self) -> int:
        return len(self.services[0].demand_gpus)


@dataclass
class CapacityResult:
    broker: str
    step_s: float
    demand: np.ndarray  # services x steps, GPUs
    capacity: np.ndarray  # GPUs of ready replicas
    provisioned: np.ndarray  # GPUs held by replicas, ready or starting
    training_gpus: np.ndarray
    best_effort_gpus: np.ndarray
    research_gpus: int
    fleet_gpus: int
    service_names: tuple[str, ...]
    slo_targets: tuple[float, ...]
    training: Ledger
    dedicated_useful: float
    replica_starts: int = 0
    replica_stops: int = 0
    reclaims: int = 0
    gpus_reclaimed: int = 0
    best_effort_lost: float = 0.0
    lent: np.ndarray = field(default_factory=lambda: np.zeros(0))
    targets: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))  # replicas asked

    def metrics(self) -> dict[str, object]:
        step_h = self.step_s / HOUR_S
        short = np.maximum(self.demand - self.capacity, 0.0)
        met = self.capacity >= self.demand - 1e-9
        per_service = {
            name: {
                "slo_attainment": float(met[i].mean()),
                "slo_target": self.slo_targets[i],
                "unserved_gpu_hours": float(short[i].sum() * step_h),
                "peak_shortfall_gpus": float(short[i].max()),
                "served_fraction": float(1 - short[i].sum() / max(self.demand[i].sum(), 1e-12)),
            }
            for i, name in enumerate(self.service_names)
        }
        served = np.minimum(self.demand, self.capacity).sum(axis=0)
        busy = served + self.research_gpus + self.training_gpus + self.best_effort_gpus
        tr = self.training
        return {
            "broker": self.broker,
            "slo_attainment": float(met.all(axis=0).mean()),
            "unserved_gpu_hours": float(short.sum() * step_h),
            "peak_shortfall_gpus": float(short.sum(axis=0).max()),
            "replica_churn": self.replica_starts + self.replica_stops,
            "services": per_service,
            "training_goodput_gpu_hours": tr.useful / HOUR_S,
            "training_allocated_gpu_hours": tr.allocated / HOUR_S,
            "training_lost_gpu_hours": tr.lost / HOUR_S,
            "training_overhead_gpu_hours": tr.overhead / HOUR_S,
            "training_resizes": tr.resizes,
            "training_slowdown": self.dedicated_useful / tr.useful if tr.useful > 0 else math.inf,
            "best_effort_goodput_gpu_hours": float(self.best_effort_gpus.sum() * step_h)
            - self.best_effort_lost / HOUR_S,
            "gpu_utilization": float(busy.mean() / self.fleet_gpus),
            "serving_provisioned_gpu_hours": float(self.provisioned.sum() * step_h),
            "gpu_hours_lent": float(self.lent.sum() * step_h),
            "reclaims": self.reclaims,
            "gpus_reclaimed": self.gpus_reclaimed,
        }


def simulate_capacity(fleet: CapacityFleet, broker: Broker) -> CapacityResult:
    """Step the fleet through its demand under `broker`."""
    services, step_s, steps = fleet.services, fleet.step_s, fleet.steps
    demand = np.vstack([s.demand_gpus for s in services]).astype(float)
    history = services[0].history_gpus
    past = 0 if history is None else len(history)
    # What brokers see: the history, then the demand as it happens (index t + past).
    seen = demand if not past else np.hstack([np.vstack([s.history_gpus for s in services]), demand])
    horizon = math.ceil(fleet.lend_horizon_s / step_s)
    per_replica = np.array([s.gpus_per_replica for s in services], dtype=np.int64)
    floor = np.array([s.min_replicas for s in services], dtype=np.int64)
    lead = np.array([math.ceil((s.startup_s + fleet.notice_s) / step_s) + 1 for s in services])
    pool = fleet.gpus - fleet.research_gpus  # what serving, training and best-effort share
    # The static partition: serving's nominal share, what it lends when it holds less.
    nominal = sum(
        int(per_replica[i]) * broker.replicas_for(float(seen[i].max()), int(per_replica[i]), int(floor[i]))
        for i in range(len(services))
    )
    if nominal + fleet.training.min_gpus > pool:
        raise InputError(
            f"serving's peak ({nominal} GPUs) and the training minimum do not fit beside research",
            field="gpus",
        )
    capacity = np.zeros_like(demand)
    provisioned = np.zeros_like(demand)
    training_gpus = np.zeros(steps)
    best_effort = np.zeros(steps)
    lent = np.zeros(steps)
    asked = np.zeros((len(services), steps), dtype=np.int64)
    pending: list[list[tuple[int, int]]] = [[] for _ in services]  # (ready step, replicas)
    ready = np.zeros(len(services), dtype=np.int64)
    tr = fleet.training.run()
    result = CapacityResult(
        broker.kind,
        step_s,
        demand,
        capacity,
        provisioned,
        training_gpus,
        best_effort,
        fleet.research_gpus,
        fleet.gpus,
        tuple(s.name for s in services),
        tuple(s.slo for s in services),
        Ledger(0.0, 0.0, 0.0, 0.0, 0),
        0.0,
    )
    job = fleet.training
    graceful = fleet.notice_s >= job.write_s
    broker.reset()
    # A warm start: the first step's replicas are up and the job is running.
    ready[:] = broker.targets(past, seen, per_replica, floor, lead, step_s)
    for i in reversed(range(len(services))):  # no more than the pool, the floors kept
        excess = int((ready * per_replica).sum()) - pool
        if excess > 0:
            ready[i] -= min(ready[i] - floor[i], math.ceil(excess / per_replica[i]))
    tr.resize(job.fit(pool - int((ready * per_replica).sum())), 0.0, True)
    be = pool - int((ready * per_replica).sum()) - tr.gpus
    for t in range(steps):
        now = t * step_s

        def ceiling(held_gpus: int, t: int = t) -> int:
            return broker.lendable_ceiling(t + past, seen, per_replica, floor, held_gpus, horizon, step_s)

        target = broker.targets(t + past, seen, per_replica, floor, lead, step_s)
        asked[:, t] = target
        held = ready + np.array([sum(n for _, n in p) for p in pending])
        # Shrink first (pending replicas go before ready ones), then grow.
        for i in range(len(services)):
            drop = int(held[i] - target[i])
            while drop > 0 and pending[i]:
                at, n = pending[i].pop()
                take = min(n, drop)
                if n > take:
                    pending[i].append((at, n - take))
                drop -= take
                result.replica_stops += take
            if drop > 0:
                ready[i] -= drop
                result.replica_stops += drop
        held = np.minimum(held, target)
        serving = int((held * per_replica).sum())
        grow = min(int(((target - held).clip(min=0) * per_replica).sum()), pool - serving)
        idle = pool - serving - tr.gpus - be
        reclaimed = grow > idle
        if reclaimed:  # best-effort first, then whole training replicas
            from_be = min(be, grow - idle)
            be -= from_be
            result.best_effort_lost += from_be * fleet.best_effort_checkpoint_s / 2
            if grow - idle - from_be > 0:  # shrink once for the whole lending horizon
                tr.resize(job.fit(pool - ceiling(serving + grow)), now, graceful)
                be = pool - serving - grow - tr.gpus
            result.reclaims += 1
            result.gpus_reclaimed += grow - idle
        # Start the replicas the GPUs allow, in service order.
        budget = grow
        for i in range(len(services)):
            add = int(min(target[i] - held[i], budget // per_replica[i]))
            if add <= 0:
                continue
            wait = services[i].startup_s + (fleet.notice_s if reclaimed else 0.0)
            pending[i].append((t + math.ceil(wait / step_s), add))
            budget -= add * per_replica[i]
            held[i] += add
            result.replica_starts += add
        serving = int((held * per_replica).sum())
        # Replicas whose start-up is over serve from this step on.
        for i in range(len(services)):
            done = sum(n for at, n in pending[i] if at <= t)
            pending[i] = [(at, n) for at, n in pending[i] if at > t]
            ready[i] += done
        # The elastic job grows into what serving left and will not want back within the
        # lending horizon, at most once per min_hold_s.
        if job.fit(pool - serving) < tr.gpus:
            tr.resize(job.fit(pool - ceiling(serving)), now, graceful)
        elif job.fit(pool - serving) > tr.gpus and now - tr.last_resize_s >= job.min_hold_s:
            fit = job.fit(pool - ceiling(serving))
            if fit > tr.gpus:
                tr.resize(fit, now, True)
        be = pool - serving - tr.gpus
        capacity[:, t] = ready * per_replica
        provisioned[:, t] = held * per_replica
        training_gpus[t] = tr.gpus
        best_effort[t] = be
        lent[t] = max(0, nominal - serving)
    result.lent, result.targets = lent, asked
    result.training = tr.ledger(steps * step_s)
    dedicated = job.run()
    dedicated.resize(job.max_gpus, 0.0, True)  # the same job alone on max_gpus
    result.dedicated_useful = dedicated.ledger(steps * step_s).useful
    return result
