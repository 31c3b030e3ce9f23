"""A live cluster without real time or processes: a fake clock, nodes written straight to the
database, and a fake executor that runs each attempt for its job's remaining work."""

from __future__ import annotations

import math
import socket
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from corral.live.db import (
    ATTEMPT_RUNNING,
    COMMITTED,
    EXITED,
    STOPPING,
    Attempt,
    Job,
    Node,
    Window,
    connect,
    migrate,
)
from corral.live.reconciler import Config, Reconciler
from corral.workload import JobTable


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Clock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def database(url: str):
    engine = connect(url)
    migrate(engine)
    return engine


def add_nodes(engine, gpus_per_node: list[int], pool: str = "default", at_s: float = 0.0) -> None:
    with Session(engine) as session, session.begin():
        for k, gpus in enumerate(gpus_per_node):
            session.add(
                Node(name=f"n{k}", pool=pool, gpus=gpus, registered_s=at_s + k * 1e-6, heartbeat_s=at_s)
            )


def add_job(session: Session, jobs: JobTable, i: int) -> None:
    """Job `i` of `jobs` as a row (its array, if any, numbered as the table numbers it)."""
    after, array, limit = (
        jobs.extra.get(c, [""] * len(jobs))[i] for c in ("after", "array_job", "array_limit")
    )
    session.add(
        Job(
            job_id=jobs.job_id[i],
            team="t",
            queue=jobs.queue[i],
            gpus=int(jobs.gpus[i]),
            priority=int(jobs.priority[i]),
            preemptible=bool(jobs.preemptible[i]),
            estimate_s=float(jobs.duration_s[i]),  # (the simulator's estimate is its duration)
            command=["true"],
            submit_s=float(jobs.submit_s[i]),
            after=after.split() or None,
            array_job=int(array) if array else None,
            array_limit=int(limit) if array and limit else None,
        )
    )


class FakeExecutor:
    """Runs each committed attempt for the work its job has left; a stopped attempt exits at
    once and keeps its work (a checkpoint on stop, as `checkpoint_interval_s` 0 models)."""

    def __init__(self, engine, jobs: JobTable) -> None:
        self.engine = engine
        self.left = {job_id: float(d) for job_id, d in zip(jobs.job_id, jobs.duration_s, strict=True)}
        self.ends: dict[int, float] = {}  # attempt -> when it exits
        self.began: dict[int, tuple[str, float]] = {}

    def take(self, now: float) -> None:
        """Stop what is stopping, then start what was committed (at `now`)."""
        with Session(self.engine) as session, session.begin():
            for attempt in session.scalars(select(Attempt).where(Attempt.state == STOPPING)):
                job_id, since = self.began[attempt.id]
                self.left[job_id] -= now - since
                del self.ends[attempt.id]
                attempt.state, attempt.exit_code, attempt.end_s = EXITED, -15, now
            for attempt in session.scalars(select(Attempt).where(Attempt.state == COMMITTED)):
                job = session.get(Job, attempt.job)
                attempt.state = ATTEMPT_RUNNING
                self.began[attempt.id] = (job.job_id, now)
                self.ends[attempt.id] = now + self.left[job.job_id]

    def next_exit_s(self) -> float:
        return min(self.ends.values(), default=math.inf)

    def exit_due(self, now: float) -> None:
        with Session(self.engine) as session, session.begin():
            for attempt_id in sorted(a for a, t in self.ends.items() if t <= now):
                attempt = session.get(Attempt, attempt_id)
                attempt.state, attempt.exit_code, attempt.end_s = EXITED, 0, now
                del self.ends[attempt_id]


def replay(
    url: str,
    node_gpus: list[int],
    jobs: JobTable,
    policy: str,
    config: Config | None = None,
    crash: bool | Callable[[], bool] = False,
    windows: tuple = (),
):
    """The workload through the reconciler: each instant, exits, then arrivals, then a step.
    `windows`: reservations (ReservationSpecs, hosts by number). With `crash`, the reconciler
    is thrown away after every step (or after those where
    `crash()` says so), after its commit and before the executor launches anything, and a
    new one is built from the database.
    Returns ({job_id: [start of each attempt]}, the last reconciler, the database)."""
    engine = database(url)
    add_nodes(engine, node_gpus)
    with Session(engine) as session, session.begin():
        for spec in windows:  # (ReservationSpecs, their hosts as node numbers)
            nodes = [f"n{h}" for h in spec.hosts]
            times = dict(start_s=spec.start_s, end_s=spec.end_s, notice_s=spec.notice_s, created_s=0.0)
            session.add(
                Window(name=spec.name, pool=spec.pool, nodes=nodes, gpus=spec.gpus, queue=spec.queue, **times)
            )
    clock = Clock()
    cfg = config or Config(policy)
    cfg.heartbeat_timeout_s = math.inf
    reconciler = Reconciler(engine, cfg, clock)
    executor = FakeExecutor(engine, jobs)
    order = sorted(range(len(jobs)), key=lambda i: (jobs.submit_s[i], i))
    k = 0
    for _ in range(100_000):
        nxt = min(
            jobs.submit_s[order[k]] if k < len(order) else math.inf,
            executor.next_exit_s(),
            reconciler.next_wake_s(),
        )
        if math.isinf(nxt):
            break
        clock.t = float(nxt)
        executor.exit_due(clock.t)
        with Session(engine) as session, session.begin():
            while k < len(order) and jobs.submit_s[order[k]] == clock.t:
                add_job(session, jobs, order[k])
                k += 1
        reconciler.step()
        if crash is True or (callable(crash) and crash()):
            reconciler = Reconciler(engine, cfg, clock)
        executor.take(clock.t)
        while True:  # preempted attempts exit at once: apply their ends in the same instant
            with Session(engine) as session:
                pending_exits = session.scalar(select(Attempt.id).where(Attempt.state == EXITED))
            if pending_exits is None:
                break
            reconciler.step()
            executor.take(clock.t)
    starts: dict[str, list[float]] = {}  # (attempts the reconciler committed, launched or not)
    with Session(engine) as session:
        for attempt in session.scalars(select(Attempt).order_by(Attempt.start_s, Attempt.id)):
            starts.setdefault(session.get(Job, attempt.job).job_id, []).append(attempt.start_s)
    return starts, reconciler, engine
