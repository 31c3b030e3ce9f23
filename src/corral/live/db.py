"""The live cluster's records, in SQLAlchemy 2: teams and their tokens, nodes, jobs, and the
attempts that run them. The database is the truth a restarted server rebuilds its cluster
state from; the schema is made and moved by Alembic (live/migrations).

An attempt row is committed before anything is launched: a crash between the commit and the
launch leaves an attempt the agent has not seen, which it then starts exactly once (agents
start attempts by id, idempotently).
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

# job states (the CLI contract's words)
PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED = "pending", "running", "succeeded", "failed", "cancelled"
JOB_STATES = (PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED)
ENDED = (SUCCEEDED, FAILED, CANCELLED)
# attempt states: committed (not yet seen by its agent), running, stopping (the agent is to
# signal it), exited (its agent reported the end), ended (the reconciler applied it)
COMMITTED, ATTEMPT_RUNNING, STOPPING, EXITED, ATTEMPT_ENDED = (
    "committed",
    "running",
    "stopping",
    "exited",
    "ended",
)
# node states
UP, DOWN, CORDONED, DRAINING = "up", "down", "cordoned", "draining"


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Team(Base):
    """A team (or the admin, or a node): who a bearer token speaks for."""

    __tablename__ = "teams"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(20))  # "team", "admin" or "node"
    queues: Mapped[list[Any]] = mapped_column(default=list)  # the queues a team may submit to
    token_expires_s: Mapped[float | None] = mapped_column(Float, nullable=True)  # then it is refused


class Node(Base):
    __tablename__ = "nodes"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    pool: Mapped[str] = mapped_column(String(200))
    gpus: Mapped[int] = mapped_column(Integer)
    address: Mapped[str] = mapped_column(String(200), default="127.0.0.1")
    state: Mapped[str] = mapped_column(String(20), default=UP)
    registered_s: Mapped[float] = mapped_column(Float)
    heartbeat_s: Mapped[float] = mapped_column(Float)
    host: Mapped[int] = mapped_column(Integer, default=-1)  # its host number in the cluster state
    drain_deadline_s: Mapped[float | None] = mapped_column(Float, nullable=True)  # then its jobs stop


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    team: Mapped[str] = mapped_column(String(200))
    queue: Mapped[str] = mapped_column(String(200))
    gpus: Mapped[int] = mapped_column(Integer)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    preemptible: Mapped[bool] = mapped_column(Boolean, default=True)
    estimate_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    grace_s: Mapped[float] = mapped_column(Float, default=30.0)
    command: Mapped[list[Any]] = mapped_column()
    submit_s: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(20), default=PENDING, index=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    end_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    checkpoint_s: Mapped[float | None] = mapped_column(Float, nullable=True)  # last completed one
    run_s: Mapped[float] = mapped_column(Float, default=0.0)  # time it held GPUs, all attempts
    # elastic: the sizes it may be resized to (state/elastic.py); None for a rigid job
    min_gpus: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_gpus: Mapped[int | None] = mapped_column(Integer, nullable=True)
    step_gpus: Mapped[int | None] = mapped_column(Integer, nullable=True)
    scaling: Mapped[float | None] = mapped_column(Float, nullable=True)
    service: Mapped[str | None] = mapped_column(String(200), nullable=True)  # a replica of this service
    # where its processes start (the submitter's folder); None: the agent's own
    workdir: Mapped[str | None] = mapped_column(String(4096), nullable=True)
    user: Mapped[str] = mapped_column(String(200), default="")  # who submitted it (their login)
    # a container image to run each rank in, the mounts it asks (SRC:DST[:ro]) and the
    # runtime (None: the node's podman, else Docker)
    image: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    mounts: Mapped[list[Any] | None] = mapped_column(nullable=True)
    runtime: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # dependencies, each "JOB:ok", "JOB:any" or "JOB:notok" (state/gates.py); None: none
    after: Mapped[list[Any] | None] = mapped_column(nullable=True)
    # an array's task: the array's id (its first task's row), its index, and how many of its
    # tasks may be live at once (None: no limit)
    array_job: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    array_task: Mapped[int | None] = mapped_column(Integer, nullable=True)
    array_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # why it ended as it did, where its exit does not say (cancelled for a dependency)
    reason: Mapped[str | None] = mapped_column(String(400), nullable=True)
    # held by its dependencies or its array's limit: when the scheduler let it through, the
    # how-manieth so let through (the order a rebuilt policy is told of it)
    released_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    released_rank: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Attempt(Base):
    __tablename__ = "attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    # [[node, [gpu indices]], ...]: rank 0 on the first node
    placement: Mapped[list[Any]] = mapped_column()
    state: Mapped[str] = mapped_column(String(20), default=COMMITTED, index=True)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ended: Mapped[str] = mapped_column(String(20), default="")  # completed, preempted, failed, ...
    stop_s: Mapped[float | None] = mapped_column(Float, nullable=True)  # when it was asked to stop
    stop_deadline_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    exits: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)  # node -> its exit code
    checkpoint_s: Mapped[float | None] = mapped_column(Float, nullable=True)  # last one reported
    kept_s: Mapped[float | None] = mapped_column(Float, nullable=True)  # useful work kept, once ended


class Service(Base):
    """An inference service: replicas of `gpus_per_replica` GPUs running `command`, between
    `min_replicas` and `max_replicas`, each serving `replica_rps` requests per second within
    its SLO (`slo_latency_s` at percentile `slo_percentile`), ready `startup_s` after it
    starts. The broker sets `target_replicas` from the demand it has seen."""

    __tablename__ = "services"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    team: Mapped[str] = mapped_column(String(200))
    queue: Mapped[str] = mapped_column(String(200))
    gpus_per_replica: Mapped[int] = mapped_column(Integer)
    min_replicas: Mapped[int] = mapped_column(Integer)
    max_replicas: Mapped[int] = mapped_column(Integer)
    replica_rps: Mapped[float] = mapped_column(Float)
    startup_s: Mapped[float] = mapped_column(Float)
    slo_latency_s: Mapped[float] = mapped_column(Float)
    slo_percentile: Mapped[float] = mapped_column(Float)
    command: Mapped[list[Any]] = mapped_column()
    target_replicas: Mapped[int] = mapped_column(Integer)
    created_s: Mapped[float] = mapped_column(Float)
    # demand read from the replicas' Prometheus metrics (the rate of this counter at this
    # path, summed over replicas), rather than pushed
    metrics_path: Mapped[str | None] = mapped_column(String(200), nullable=True)
    metrics_counter: Mapped[str] = mapped_column(String(200), default="requests_total")


class Demand(Base):
    """Requests per second a service was asked for at `t_s` (pushed, or counted by its proxy)."""

    __tablename__ = "demand"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    service: Mapped[str] = mapped_column(ForeignKey("services.name", ondelete="CASCADE"), index=True)
    t_s: Mapped[float] = mapped_column(Float)
    requests_per_s: Mapped[float] = mapped_column(Float)


class Move(Base):
    """A broker decision: a service's target replicas, or the GPUs lent to elastic training,
    changed from `before` to `after` at `t_s`, and why."""

    __tablename__ = "moves"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    t_s: Mapped[float] = mapped_column(Float)
    step: Mapped[int] = mapped_column(Integer)
    service: Mapped[str] = mapped_column(String(200))  # "" for lending
    kind: Mapped[str] = mapped_column(String(20))  # "replicas" or "lend"
    before: Mapped[int] = mapped_column(Integer)
    after: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(500))


class Window(Base):
    """A reservation or maintenance window (state/reservations.py): nodes held for a queue,
    or emptied for maintenance (`queue` None), from `start_s` to `end_s`."""

    __tablename__ = "reservations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    pool: Mapped[str] = mapped_column(String(200))
    nodes: Mapped[list[Any]] = mapped_column()  # node names; empty: `gpus` of the pool's last nodes
    gpus: Mapped[int] = mapped_column(Integer, default=0)
    queue: Mapped[str | None] = mapped_column(String(200), nullable=True)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    notice_s: Mapped[float] = mapped_column(Float)
    created_s: Mapped[float] = mapped_column(Float)


class Meta(Base):
    """The reconciler's own notes: `decided_s`, when it last passed the pools."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(24)


def connect(url: str) -> Engine:
    """An engine for `url`: SQLite in WAL mode with foreign keys, or PostgreSQL (psycopg 3)."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(connection: Any, _: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # (in WAL, NORMAL loses no commit to a crash of the process, only to power loss)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.close()

    return engine


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to an Alembic revision (the newest unless told)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def team_of(session: Session, token: str) -> Team | None:
    return session.scalar(select(Team).where(Team.token_sha256 == hash_token(token)))
