"""The server's own Prometheus metrics (`GET /metrics`), through prometheus-client.

Gauges and counters are read from the database at each scrape, so every server of a
cluster answers alike and a restart loses nothing: the counters are counts of rows that
are never deleted (jobs submitted, attempts started, attempts preempted or failed). The
histograms are this server's own observations: the time of each reconcile step it ran, and
the wait of each job it started for the first time.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from corral.live.db import (
    ATTEMPT_RUNNING,
    COMMITTED,
    CORDONED,
    DOWN,
    DRAINING,
    PENDING,
    RUNNING,
    STOPPING,
    Attempt,
    Job,
    Node,
)

if TYPE_CHECKING:
    from corral.live.reconciler import Config

NODE_STATES = ("up", CORDONED, DRAINING, DOWN)
# a reconcile step takes milliseconds; a wait for GPUs seconds to days
STEP_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
WAIT_BUCKETS_S = (1, 10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400)


class ClusterCollector:
    """What the database says now, at each scrape."""

    def __init__(self, engine: Engine, config: Config, leading: object) -> None:
        self.engine, self.config, self.leading = engine, config, leading
        self.server = f"{socket.gethostname()}:{os.getpid()}"

    def collect(self) -> Iterator[Metric]:
        with Session(self.engine) as session:
            yield from self._jobs(session)
            yield from self._gpus_and_nodes(session)
            yield from self._counters(session)
        leader = GaugeMetricFamily(
            "corral_leader", "1 on the server whose reconciler runs", labels=["server"]
        )
        leader.add_metric([self.server], 1.0 if getattr(self.leading, "is_set", lambda: False)() else 0.0)
        yield leader

    def _jobs(self, session: Session) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "corral_jobs", "Jobs pending or running, per queue", labels=["state", "queue"]
        )
        counts = session.execute(
            select(Job.state, Job.queue, func.count())
            .where(Job.state.in_((PENDING, RUNNING)))
            .group_by(Job.state, Job.queue)
        )
        seen = {(state, queue): n for state, queue, n in counts}
        queues = sorted({q.name for q in self.config.queues} | {q for _, q in seen})
        for queue in queues:
            for state in (PENDING, RUNNING):
                jobs.add_metric([state, queue], seen.get((state, queue), 0))
        yield jobs
        used = GaugeMetricFamily(
            "corral_quota_used_gpus", "GPUs a queue's running attempts hold", labels=["queue"]
        )
        borrowed = GaugeMetricFamily(
            "corral_quota_borrowed_gpus", "GPUs a queue holds beyond its nominal quota", labels=["queue"]
        )
        held: dict[str, int] = {}
        live = select(Job.queue, Attempt.placement).join(Attempt, Attempt.job == Job.id)
        for queue, placement in session.execute(live.where(Attempt.state.in_((COMMITTED, ATTEMPT_RUNNING)))):
            held[queue] = held.get(queue, 0) + sum(len(ids) for _, ids in placement)
        nominal = {q.name: q.nominal_gpus for q in self.config.queues}
        for queue in queues:
            used.add_metric([queue], held.get(queue, 0))
            borrowed.add_metric([queue], max(0.0, held.get(queue, 0) - nominal.get(queue, 0)))
        yield used
        yield borrowed

    def _gpus_and_nodes(self, session: Session) -> Iterator[Metric]:
        gpus = GaugeMetricFamily("corral_gpus", "GPUs of the nodes up, per pool", labels=["state", "pool"])
        nodes = GaugeMetricFamily("corral_nodes", "Nodes by state", labels=["state"])
        busy: dict[str, int] = {}
        live = select(Attempt.placement).where(Attempt.state.in_((COMMITTED, ATTEMPT_RUNNING, STOPPING)))
        for (placement,) in session.execute(live):
            for name, ids in placement:
                busy[name] = busy.get(name, 0) + len(ids)
        per_pool: dict[str, dict[str, int]] = {}
        by_state = dict.fromkeys(NODE_STATES, 0)
        for node in session.scalars(select(Node)):
            by_state[node.state] = by_state.get(node.state, 0) + 1
            if node.state == DOWN:
                continue
            counts = per_pool.setdefault(node.pool, {"busy": 0, "free": 0, "cordoned": 0})
            taken = min(node.gpus, busy.get(node.name, 0))
            counts["busy"] += taken
            counts["cordoned" if node.state in (CORDONED, DRAINING) else "free"] += node.gpus - taken
        for pool, counts in sorted(per_pool.items()):
            for state, n in counts.items():
                gpus.add_metric([state, pool], n)
        for state, n in by_state.items():
            nodes.add_metric([state], n)
        yield gpus
        yield nodes

    def _counters(self, session: Session) -> Iterator[Metric]:
        attempts = select(func.count(Attempt.id))
        counted = (
            ("corral_submissions", "Jobs submitted", select(func.count(Job.id))),
            ("corral_starts", "Attempts started", attempts),
            ("corral_preemptions", "Attempts preempted", attempts.where(Attempt.ended == "preempted")),
            (
                "corral_failures",
                "Attempts failed (an exit not 0, or a lost node)",
                attempts.where(Attempt.ended == "failed"),
            ),
        )
        for name, words, query in counted:
            counter = CounterMetricFamily(name, words)
            counter.add_metric([], session.scalar(query) or 0)
            yield counter


class ServerMetrics:
    """A registry of its own per server (several run in one test process), with the
    cluster's gauges and this server's histograms."""

    def __init__(self, engine: Engine, config: Config, leading: object) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(ClusterCollector(engine, config, leading))  # type: ignore[arg-type]
        self.step_s = Histogram(
            "corral_reconcile_step_seconds",
            "Time of one reconcile step",
            buckets=STEP_BUCKETS_S,
            registry=self.registry,
        )
        self.wait_s = Histogram(
            "corral_submit_to_start_seconds",
            "From a job's submission to its first start",
            buckets=WAIT_BUCKETS_S,
            registry=self.registry,
        )

    def stepped(self, began: float, waits: list[float]) -> None:
        """A step that began at `began` (perf_counter) ended; it started jobs after `waits`."""
        self.step_s.observe(time.perf_counter() - began)
        for wait in waits:
            self.wait_s.observe(wait)
