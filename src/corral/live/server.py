"""The HTTP face of a live cluster (FastAPI): teams submit, list, cancel and read logs of
their own jobs; the admin manages teams and nodes; agents register, heartbeat, take the
attempts to start or stop and report exits. A background thread runs the reconciler, the
one writer of decisions, while it holds the cluster's leader lock.

Every client mistake is a 4xx naming the field: 401 without a known token, 403 for what the
token may not do, 404 for what does not exist (or is another team's), 422 for a bad value.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import Field, field_validator
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from corral.errors import InputError
from corral.fleet import fleet_from_text
from corral.live.api import (
    ADMIN,
    NODE,
    ROW_ID_MAX,
    TEAM,
    Body,
    Caller,
    Count,
    Db,
    Flag,
    RefuseUnstorable,
    RowId,
    invalid_request,
    require,
    unprocessable,
)
from corral.live.db import (
    COMMITTED,
    CORDONED,
    DOWN,
    DRAINING,
    ENDED,
    EXITED,
    JOB_STATES,
    PENDING,
    STARTED,
    STOPPING,
    UP,
    Attempt,
    Job,
    Meta,
    Node,
    Team,
    hash_token,
    new_token,
    team_of,
)
from corral.live.reconciler import Config, Reconciler, job_table
from corral.live.services import replica_port, service_name
from corral.live.services_api import service_routes
from corral.scheduling.registry import make_policy
from corral.state.elastic import elastic_columns

log = logging.getLogger(__name__)

COMMAND_ARGS = 4096
COMMAND_ARG_CHARS = 128 * 1024
COMMAND_BYTES = 1024 * 1024


class JobSpec(Body):
    gpus: Count = Field(ge=1, le=10_000_000)
    queue: str = Field("default", min_length=1, max_length=200)
    priority: Count = Field(0, ge=-(2**31), lt=2**31)
    preemptible: Flag = True
    estimate_s: float | None = Field(None, gt=0, le=1e12, allow_inf_nan=False)
    grace_s: float = Field(30.0, ge=0, le=86_400, allow_inf_nan=False)
    name: str = Field("", max_length=200)
    # (what the kernel takes: an argument of at most 128 KiB, a command line of at most 1 MiB)
    command: list[Annotated[str, Field(min_length=1, max_length=COMMAND_ARG_CHARS)]] = Field(
        min_length=1, max_length=COMMAND_ARGS
    )
    # elastic: resized between these in whole steps (policies with +elastic), throughput
    # (gpus / asked) ** scaling
    min_gpus: Count | None = Field(None, ge=1, le=10_000_000)
    max_gpus: Count | None = Field(None, ge=1, le=10_000_000)
    step_gpus: Count | None = Field(None, ge=1, le=10_000_000)
    scaling: float | None = Field(None, gt=0, le=1, allow_inf_nan=False)

    @field_validator("command")
    @classmethod
    def _command_fits(cls, command: list[str]) -> list[str]:
        size = sum(len(arg.encode("utf-8", "surrogatepass")) + 1 for arg in command)
        if size > COMMAND_BYTES:
            raise ValueError(f"the command is {size:,} bytes; at most {COMMAND_BYTES:,}")
        return command


class TokenSpec(Body):
    expires_s: float | None = Field(None, gt=0, le=1e10, allow_inf_nan=False)  # from now


class TeamSpec(TokenSpec):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$")
    queues: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=1000)

    @field_validator("name")
    @classmethod
    def _not_a_word_of_the_cli(cls, name: str) -> str:
        if name in ("list", "rotate", "revoke"):
            raise ValueError(f"'{name}' is a word of `corral team`: choose another name")
        return name


class NodeSpec(Body):
    name: str = Field(min_length=1, max_length=200)
    gpus: Count = Field(ge=1, le=1024)
    pool: str = Field("default", min_length=1, max_length=200)
    address: str = Field("127.0.0.1", max_length=200)


class ConfigSpec(Body):
    """A fleet TOML (its queues and cohorts apply; hosts come from the agents), a policy, or
    both."""

    fleet_toml: str | None = Field(None, max_length=1_000_000)
    policy: str | None = Field(None, min_length=1, max_length=200)


class Exit(Body):
    exit_code: Count = Field(ge=-255, le=255)
    node: str | None = Field(None, max_length=200)  # the reporting node, for a gang's ranks
    fenced: Flag = False  # stopped by its node, whose lease ran out: not the job's own end


class LogChunk(Body):
    allow_nul = True  # (written to a file, not the database)
    text: str = Field(max_length=1 << 22)


class Running(Body):
    """What an agent has: the attempts it runs now (to re-adopt after a restart)."""

    running: list[Annotated[Count, Field(ge=1, le=ROW_ID_MAX)]] = Field(
        default_factory=list, max_length=100_000
    )


def job_view(
    job: Job,
    attempts: list[Attempt] | None = None,
    now: float | None = None,
    since: float | None = None,
    held: int | None = None,
) -> dict[str, Any]:
    """A job as the API shows it; with `now`, how long it has waited (while pending) and run
    (its ended attempts, and its live one since `since`); `held`: the GPUs its live attempt
    holds (an elastic job's size now)."""
    out = {
        "job_id": job.job_id,
        "name": job.name,
        "team": job.team,
        "queue": job.queue,
        "gpus": job.gpus,
        "priority": job.priority,
        "preemptible": job.preemptible,
        "state": job.state,
        "exit_code": job.exit_code,
        "submit_s": job.submit_s,
        "end_s": job.end_s,
        "command": job.command,
        "run_s": job.run_s,
        "service": None if job.service is None else service_name(job.service),
        "min_gpus": job.min_gpus,
        "max_gpus": job.max_gpus,
        "step_gpus": job.step_gpus,
        "held_gpus": held,
    }
    if now is not None:
        out["ran_s"] = job.run_s + (max(0.0, now - since) if since is not None else 0.0)
        out["waited_s"] = max(0.0, now - job.submit_s) if job.state == PENDING else None
    if attempts is not None:
        out["attempts"] = [attempt_view(a) for a in attempts]
    return out


def team_view(team: Team) -> dict[str, Any]:
    return {"team": team.name, "queues": team.queues, "token_expires_s": team.token_expires_s}


def attempt_view(a: Attempt) -> dict[str, Any]:
    return {
        "attempt": a.id,
        "number": a.number,
        "placement": a.placement,
        "state": a.state,
        "start_s": a.start_s,
        "end_s": a.end_s,
        "exit_code": a.exit_code,
        "ended": a.ended,
        "checkpoint_s": a.checkpoint_s,  # the last completed checkpoint it reported
        "kept_s": a.kept_s,  # of a stopped or lost attempt: the useful seconds it kept
    }


class LeaderLock:
    """One reconciler per cluster: a PostgreSQL advisory lock held on its own connection, or
    a file lock beside a SQLite database."""

    KEY = 0x636F7272  # "corr"

    def __init__(self, engine: Engine, data_dir: Path) -> None:
        self.engine, self.path = engine, data_dir / "leader.lock"
        self.handle: Any = None

    def acquire(self) -> bool:
        if self.engine.dialect.name == "postgresql":
            self.handle = self.engine.connect()
            got = self.handle.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.KEY}).scalar()
            if not got:
                self.handle.close()
                self.handle = None
            return bool(got)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = self.path.open("w")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.close()
            self.handle = None
            return False
        return True

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def create_app(
    engine: Engine,
    config: Config,
    data_dir: Path,
    clock: Callable[[], float] = time.time,
    reconcile_every_s: float | None = 0.2,
) -> FastAPI:
    """The API over `engine`; with `reconcile_every_s`, a thread runs the reconciler that
    often while it holds the leader lock (tests step it themselves)."""
    logs = data_dir / "logs"
    lease = {"fence_s": config.fence_s}  # (how long an agent's lease holds: it fences after)
    state: dict[str, Any] = {"reconciler": None}
    lock = threading.Lock()  # (the reconciler's state is read by the API: one at a time)
    # The largest pool, for refusing jobs no pool can hold: asked at every submission, and
    # the nodes seldom change, so it is read again after a second or a node's registration
    # (a node lost meanwhile only lets a job through that then waits for its return).
    largest: dict[str, float] = {"gpus": 0.0, "until": -math.inf}

    def largest_pool(db: Session) -> int:
        if time.monotonic() >= largest["until"]:
            largest["gpus"], largest["until"] = _largest_pool(db), time.monotonic() + 1.0
        return int(largest["gpus"])

    def reconciler() -> Reconciler:
        if state["reconciler"] is None:
            state["reconciler"] = Reconciler(engine, config, clock)
        return state["reconciler"]

    def step() -> int:
        with lock:
            return reconciler().step()

    stop = threading.Event()

    def loop() -> None:
        leader = LeaderLock(engine, data_dir)
        while not stop.is_set() and not leader.acquire():
            stop.wait(1.0)
        try:
            while not stop.is_set():
                try:
                    step()
                except Exception:  # (a failed step is retried; the database is the truth)
                    log.exception("reconcile step failed; the reconciler is rebuilt from the database")
                    with lock:
                        state["reconciler"] = None
                stop.wait(reconcile_every_s or 0.2)
        finally:
            leader.release()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        thread = None
        if reconcile_every_s is not None:
            thread = threading.Thread(target=loop, name="corral-reconciler", daemon=True)
            thread.start()
        yield
        stop.set()
        if thread is not None:
            thread.join(timeout=5)

    app = FastAPI(title="corral", lifespan=lifespan)
    app.add_middleware(RefuseUnstorable)
    app.exception_handler(RequestValidationError)(invalid_request)
    app.include_router(service_routes(clock, lambda: {q.name for q in config.queues} or {"default"}))
    app.state.engine = engine
    app.state.clock = clock
    app.state.step = step
    app.state.reconciler = reconciler

    def own_job(db: Session, who: Team, job_id: str) -> Job:
        job = db.scalar(select(Job).where(Job.job_id == job_id))
        if job is None or (who.role == TEAM and job.team != who.name):
            raise HTTPException(404, f"no job '{job_id}'")
        if who.role == NODE:
            raise HTTPException(403, "a node token may not read jobs")
        return job

    @app.exception_handler(ValueError)
    async def _value_error(_: Request, err: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=422)

    # --- jobs ----------------------------------------------------------------------------

    @app.post("/v1/jobs", status_code=201)
    async def submit(spec: JobSpec, who: Caller, db: Db) -> dict[str, Any]:
        require(who, TEAM, ADMIN)
        known = {q.name for q in config.queues} or {"default"}
        if spec.queue not in known:
            raise unprocessable("queue", f"unknown queue '{spec.queue}'; known: {', '.join(sorted(known))}")
        if who.role == TEAM and spec.queue not in who.queues and "*" not in who.queues:
            raise HTTPException(403, f"team {who.name} may not submit to queue '{spec.queue}'")
        most = largest_pool(db)
        if most and spec.gpus > most:
            raise unprocessable("gpus", f"{spec.gpus} GPUs is more than any pool has ({most})")
        try:  # (an elastic job's sizes, checked as a job table's are)
            fields = (
                "gpus",
                "queue",
                "priority",
                "preemptible",
                "min_gpus",
                "max_gpus",
                "step_gpus",
                "scaling",
            )
            asked = Job(
                job_id="submitted", team=who.name, submit_s=0.0, **{f: getattr(spec, f) for f in fields}
            )
            elastic_columns(job_table([asked]))
        except InputError as err:
            raise unprocessable(err.field or "gpus", err.message) from None
        # (two plain statements: the ORM's unit of work costs more than they do)
        row = db.execute(
            insert(Job)
            .values(
                job_id=f"new-{uuid.uuid4().hex}",
                name=spec.name,
                team=who.name,
                queue=spec.queue,
                gpus=spec.gpus,
                priority=spec.priority,
                preemptible=spec.preemptible,
                estimate_s=spec.estimate_s,
                grace_s=spec.grace_s,
                command=spec.command,
                min_gpus=spec.min_gpus,
                max_gpus=spec.max_gpus,
                step_gpus=spec.step_gpus,
                scaling=spec.scaling,
                submit_s=clock(),
                state=PENDING,
            )
            .returning(Job.id)
        ).scalar_one()
        db.execute(update(Job).where(Job.id == row).values(job_id=str(row)))
        return {"job_id": str(row), "state": PENDING}

    @app.get("/v1/jobs")
    async def jobs(
        who: Caller, db: Db, state: str | None = None, team: str | None = None
    ) -> list[dict[str, Any]]:
        require(who, TEAM, ADMIN)
        if state is not None and state not in JOB_STATES:
            raise unprocessable("state", f"one of {', '.join(JOB_STATES)}", "query")
        query = select(Job).order_by(Job.id)
        if who.role == TEAM:
            query = query.where(Job.team == who.name)
        elif team is not None:
            query = query.where(Job.team == team)
        if state is not None:
            query = query.where(Job.state == state)
        live = select(Attempt.job, Attempt.start_s, Attempt.state, Attempt.placement).where(
            Attempt.state.in_((COMMITTED, STARTED, STOPPING))
        )
        since, held = {}, {}
        for job_row, start, attempt_state, placement in db.execute(live.order_by(Attempt.id)):
            since[job_row] = start
            if attempt_state != STOPPING:
                held[job_row] = sum(len(ids) for _, ids in placement)
        now = clock()
        return [job_view(j, None, now, since.get(j.id), held.get(j.id)) for j in db.scalars(query)]

    @app.get("/v1/jobs/{job_id}")
    async def job(job_id: str, who: Caller, db: Db) -> dict[str, Any]:
        row = own_job(db, who, job_id)
        attempts = list(db.scalars(select(Attempt).where(Attempt.job == row.id).order_by(Attempt.id)))
        live = [a for a in attempts if a.state in (COMMITTED, STARTED, STOPPING)]
        holding = [a for a in live if a.state != STOPPING]
        held = sum(len(ids) for _, ids in holding[-1].placement) if holding else None
        return job_view(row, attempts, clock(), live[-1].start_s if live else None, held)

    @app.post("/v1/jobs/{job_id}/cancel")
    async def cancel(job_id: str, who: Caller, db: Db) -> dict[str, Any]:
        row = own_job(db, who, job_id)
        if row.state in ENDED:
            raise HTTPException(409, f"job {job_id} has already ended ({row.state})")
        row.cancel_requested = True
        return job_view(row)

    @app.post("/v1/jobs/{job_id}/checkpoint")
    async def job_checkpoint(job_id: str, who: Caller, db: Db) -> dict[str, Any]:
        """The job's running attempt completed a checkpoint (the API form of the marker file)."""
        row = own_job(db, who, job_id)
        live = db.scalars(
            select(Attempt)
            .where(Attempt.job == row.id, Attempt.state.in_((COMMITTED, STARTED, STOPPING)))
            .order_by(Attempt.id.desc())
        ).first()
        if live is None:
            raise HTTPException(409, f"job {job_id} has no attempt running ({row.state})")
        return _report_checkpoint(db, live, clock())

    @app.get("/v1/jobs/{job_id}/logs", response_class=PlainTextResponse)
    async def job_logs(
        job_id: str,
        who: Caller,
        db: Db,
        attempt: Annotated[int | None, Query(ge=1, le=ROW_ID_MAX)] = None,
        offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    ) -> str:
        row = own_job(db, who, job_id)
        numbers = [
            a.id for a in db.scalars(select(Attempt).where(Attempt.job == row.id).order_by(Attempt.id))
        ]
        if not numbers:
            return ""
        chosen = numbers[-1] if attempt is None else attempt
        if chosen not in numbers:
            raise HTTPException(404, f"job {job_id} has no attempt {attempt}")
        path = logs / f"{chosen}.log"
        if not path.exists():
            return ""
        with path.open("rb") as handle:
            handle.seek(max(0, offset))
            return handle.read().decode(errors="replace")

    @app.get("/v1/jobs/{job_id}/reasons")
    async def job_reasons(job_id: str, who: Caller, db: Db) -> list[dict[str, Any]]:
        row = own_job(db, who, job_id)
        with lock:
            history = reconciler().reasons(row.id)
        return [{"time_s": t, "kind": kind, "reason": words} for t, kind, words in history]

    # --- teams, nodes, quota -------------------------------------------------------------

    @app.post("/v1/teams", status_code=201)
    async def add_team(spec: TeamSpec, who: Caller, db: Db) -> dict[str, Any]:
        require(who, ADMIN)
        if db.get(Team, spec.name) is not None:
            raise HTTPException(409, f"team '{spec.name}' exists")
        team = Team(name=spec.name, role=TEAM, queues=spec.queues)
        db.add(team)
        return issue_token(team, spec)

    @app.get("/v1/teams")
    async def teams(who: Caller, db: Db) -> list[dict[str, Any]]:
        require(who, ADMIN)
        return [team_view(t) for t in db.scalars(select(Team).where(Team.role == TEAM).order_by(Team.name))]

    def issue_token(team: Team, spec: TokenSpec) -> dict[str, Any]:
        """A new token for `team` (any old one stops working), shown once in the answer."""
        token = new_token()
        team.token_sha256 = hash_token(token)
        team.token_expires_s = None if spec.expires_s is None else clock() + spec.expires_s
        return team_view(team) | {"token": token}

    def a_team(db: Session, name: str) -> Team:
        team = db.get(Team, name)
        if team is None or team.role != TEAM:
            raise HTTPException(404, f"no team '{name}'")
        return team

    @app.post("/v1/teams/{name}/rotate")
    async def rotate(name: str, who: Caller, db: Db, spec: TokenSpec | None = None) -> dict[str, Any]:
        """A new token for the team, shown once; the old one stops working now."""
        require(who, ADMIN)
        return issue_token(a_team(db, name), spec or TokenSpec())

    @app.post("/v1/teams/{name}/revoke")
    async def revoke(name: str, who: Caller, db: Db) -> dict[str, Any]:
        """The team's token stops working now (its jobs run on); `rotate` gives a new one."""
        require(who, ADMIN)
        team = a_team(db, name)
        team.token_sha256 = hash_token(new_token())  # (a token no one was ever given)
        team.token_expires_s = clock()
        return team_view(team)

    @app.get("/v1/nodes")
    async def nodes(who: Caller, db: Db) -> list[dict[str, Any]]:
        require(who, TEAM, ADMIN)
        busy: dict[str, list[int]] = {}
        for attempt in db.scalars(select(Attempt).where(Attempt.state.in_((COMMITTED, STARTED, STOPPING)))):
            for name, ids in attempt.placement:
                busy.setdefault(name, []).extend(ids)
        return [
            {
                "name": n.name,
                "pool": n.pool,
                "gpus": n.gpus,
                "state": n.state,
                "busy_gpus": sorted(busy.get(n.name, [])),
                "heartbeat_age_s": clock() - n.heartbeat_s,
            }
            for n in db.scalars(select(Node).order_by(Node.name))
        ]

    @app.post("/v1/nodes/{name}/{action}")
    async def node_action(
        name: str, action: str, who: Caller, db: Db, deadline_s: float | None = None
    ) -> dict[str, Any]:
        """cordon: start nothing new there; drain: the same, and stop (gracefully, so they
        save) the jobs still running `deadline_s` from now; uncordon: back to work."""
        require(who, ADMIN)
        node = db.get(Node, name)
        if node is None:
            raise HTTPException(404, f"no node '{name}'")
        states = {"cordon": CORDONED, "drain": DRAINING, "uncordon": UP}
        if action not in states:
            raise HTTPException(404, f"no action '{action}'; known: {', '.join(states)}")
        if node.state == DOWN:
            raise HTTPException(409, f"node '{name}' is down")
        if deadline_s is not None and (action != "drain" or not 0 <= deadline_s < 1e9):
            raise unprocessable("deadline_s", "a drain's seconds, >= 0", "query")
        node.state = states[action]
        node.drain_deadline_s = None if deadline_s is None else clock() + deadline_s
        return {"name": name, "state": node.state, "drain_deadline_s": node.drain_deadline_s}

    @app.get("/v1/quota")
    async def quota(who: Caller, db: Db) -> list[dict[str, Any]]:
        require(who, TEAM, ADMIN)
        used: dict[str, int] = {}  # (what live attempts hold: an elastic job's size now)
        held = select(Job.queue, Attempt.placement).join(Attempt, Attempt.job == Job.id)
        for queue, placement in db.execute(held.where(Attempt.state.in_((COMMITTED, STARTED)))):
            used[queue] = used.get(queue, 0) + sum(len(ids) for _, ids in placement)
        specs = config.queues or ()
        rows = [
            {
                "queue": q.name,
                "nominal_gpus": q.nominal_gpus,
                "used_gpus": used.get(q.name, 0),
                "cohort": q.cohort,
            }
            for q in specs
        ]
        if not specs:
            rows = [
                {
                    "queue": "default",
                    "nominal_gpus": _total_gpus(db),
                    "used_gpus": used.get("default", 0),
                    "cohort": None,
                }
            ]
        return rows

    # --- agents --------------------------------------------------------------------------

    @app.post("/v1/agent/register")
    async def register(spec: NodeSpec, who: Caller, db: Db) -> dict[str, Any]:
        require(who, NODE, ADMIN)
        largest["until"] = -math.inf
        node = db.get(Node, spec.name)
        now = clock()
        if node is not None and node.gpus == spec.gpus and node.pool == spec.pool and node.state != DOWN:
            node.heartbeat_s, node.address = now, spec.address  # (an agent restarted: same node)
            return {"name": spec.name, "state": node.state, **lease}
        others = select(Node.gpus).where(Node.pool == spec.pool, Node.state != DOWN, Node.name != spec.name)
        sizes = set(db.scalars(others))
        if sizes and spec.gpus not in sizes:
            raise unprocessable(
                "gpus", f"pool '{spec.pool}' has nodes of {sizes.pop()} GPUs: give this one its own pool"
            )
        if node is None:
            node = Node(name=spec.name, registered_s=now)
            db.add(node)
        # (a node back from down, or with another shape: the reconciler sees its host gone,
        # with the jobs it held, and a new one joined)
        node.pool, node.gpus, node.address, node.state = spec.pool, spec.gpus, spec.address, UP
        node.heartbeat_s, node.drain_deadline_s = now, None
        return {"name": spec.name, "state": UP, **lease}

    @app.post("/v1/agent/{name}/heartbeat")
    async def heartbeat(name: str, have: Running, who: Caller, db: Db) -> dict[str, Any]:
        """The agent's work: attempts to start on its node, attempts to stop (with the time
        left before SIGKILL). Attempts it runs that the cluster has ended are stopped too."""
        require(who, NODE, ADMIN)
        node = db.get(Node, name)
        if node is None or node.state == DOWN:
            raise HTTPException(404, f"node '{name}' is not registered (register again)")
        now = clock()
        node.heartbeat_s = now
        start, stop_now = [], []
        live = db.scalars(select(Attempt).where(Attempt.state.in_((COMMITTED, STARTED, STOPPING))))
        seen = set()
        for attempt in live:
            ranks = [n for n, _ in attempt.placement]
            if name not in ranks or name in (attempt.exits or {}):  # (its ranks here have ended)
                continue
            seen.add(attempt.id)
            job = db.get(Job, attempt.job)
            if attempt.state == STOPPING:
                stop_now.append(
                    {"attempt": attempt.id, "grace_s": max(0.0, (attempt.stop_deadline_s or now) - now)}
                )
            elif attempt.state == STARTED or not _still_stopping(db, attempt):
                start.append(_launch_spec(db, attempt, job, name))
        for attempt_id in have.running:
            if attempt_id not in seen:  # (ended while the agent was away)
                stop_now.append({"attempt": attempt_id, "grace_s": 0.0})
        return {"start": start, "stop": stop_now, **lease}

    @app.post("/v1/agent/attempts/{attempt_id}/started")
    async def started(attempt_id: RowId, who: Caller, db: Db) -> dict[str, Any]:
        require(who, NODE, ADMIN)
        attempt = _attempt(db, attempt_id)
        if attempt.state == COMMITTED:
            attempt.state = STARTED
        return attempt_view(attempt)

    @app.post("/v1/agent/attempts/{attempt_id}/exited")
    async def exited(attempt_id: RowId, end: Exit, who: Caller, db: Db) -> dict[str, Any]:
        """A node's ranks ended. A gang's attempt ends once every node's have, or at the
        first that failed (the other nodes' ranks are then stopped); its exit code is the
        first non-zero one."""
        require(who, NODE, ADMIN)
        attempt = _attempt(db, attempt_id)
        if attempt.state not in (COMMITTED, STARTED, STOPPING):
            return attempt_view(attempt)
        nodes = {name for name, _ in attempt.placement}
        exits = dict(attempt.exits or {})
        exits[end.node if end.node in nodes else "?"] = end.exit_code
        attempt.exits = exits
        failed = [code for code in exits.values() if code != 0]
        if end.fenced and not attempt.ended:  # (its node was cut off: the job did not end)
            attempt.ended = "failed"
        if failed or nodes <= set(exits) or end.node not in nodes:
            attempt.state, attempt.exit_code, attempt.end_s = EXITED, failed[0] if failed else 0, clock()
        return attempt_view(attempt)

    @app.post("/v1/agent/attempts/{attempt_id}/log")
    async def append_log(attempt_id: RowId, chunk: LogChunk, who: Caller, db: Db) -> dict[str, int]:
        require(who, NODE, ADMIN)
        _attempt(db, attempt_id)
        logs.mkdir(parents=True, exist_ok=True)
        with (logs / f"{attempt_id}.log").open("a") as handle:
            handle.write(chunk.text)
        return {"bytes": len(chunk.text)}

    @app.post("/v1/agent/attempts/{attempt_id}/checkpoint")
    async def checkpoint(attempt_id: RowId, who: Caller, db: Db) -> dict[str, Any]:
        require(who, NODE, ADMIN)
        attempt = _attempt(db, attempt_id)
        if attempt.state not in (COMMITTED, STARTED, STOPPING):
            raise HTTPException(409, f"attempt {attempt_id} has ended")
        return _report_checkpoint(db, attempt, clock())

    @app.get("/v1/history")
    async def history(who: Caller, db: Db) -> dict[str, Any]:
        """Ended jobs as the simulator's job table reads them (duration: the time they held
        GPUs), and those left out because they never ran."""
        require(who, ADMIN)
        rows, never_ran = [], []
        for job in db.scalars(select(Job).where(Job.state.in_(ENDED)).order_by(Job.submit_s, Job.id)):
            if job.run_s <= 0:
                never_ran.append(job.job_id)
                continue
            rows.append(
                {
                    "job_id": job.job_id,
                    "submit_s": job.submit_s,
                    "gpus": job.gpus,
                    "duration_s": job.run_s,
                    "queue": job.queue,
                    "user": job.team,
                    "priority": job.priority,
                    "preemptible": job.preemptible,
                    "estimate_s": job.estimate_s,
                    "state": job.state,
                }
            )
        return {"jobs": rows, "never_ran": never_ran}

    @app.get("/v1/fleet", response_class=PlainTextResponse)
    async def fleet_toml(who: Caller, db: Db) -> str:
        """The live fleet as a fleet TOML the simulator reads: a pool per pool, its hosts
        and their GPUs, and the queues and cohorts of the configuration."""
        require(who, ADMIN)
        pools: dict[str, list[int]] = {}
        for node in db.scalars(select(Node).where(Node.state != DOWN).order_by(Node.name)):
            pools.setdefault(node.pool, []).append(node.gpus)
        return fleet_text(pools, config)

    @app.put("/v1/config")
    async def set_config(spec: ConfigSpec, who: Caller, db: Db) -> dict[str, Any]:
        """Queues, quotas, cohorts and the policy, changed while the cluster runs: the
        reconciler is rebuilt from the database with them at its next step, running jobs
        adopted, waiting ones queued again under the new rules."""
        require(who, ADMIN)
        policy = spec.policy or config.policy
        try:
            # (a change changes only what it names: a policy alone keeps the queues)
            new = Config.from_fleet(fleet_from_text(spec.fleet_toml), policy) if spec.fleet_toml else config
            if getattr(make_policy(policy), "needs_durations", False):
                why = f"policy '{policy}' reads true durations: the simulator's only"
                raise InputError(why, field="policy")
        except InputError as err:
            raise unprocessable("fleet_toml" if err.field != "policy" else "policy", str(err)) from None
        note = db.get(Meta, "decided_s")
        if note is not None:  # (the next reconciler passes every pool under the new rules)
            db.delete(note)
        with lock:
            config.policy, config.queues, config.cohorts = policy, new.queues, new.cohorts
            config.default_cohort = new.default_cohort
            state["reconciler"] = None
        return {"policy": config.policy, "queues": [q.name for q in config.queues]}

    @app.get("/", response_class=HTMLResponse)
    async def dashboard() -> str:
        """The dashboard: one static page over the JSON API (the token is typed into it)."""
        return (Path(__file__).parent / "dashboard.html").read_text()

    @app.get("/v1/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _attempt(db: Session, attempt_id: int) -> Attempt:
    attempt = db.get(Attempt, attempt_id)
    if attempt is None:
        raise HTTPException(404, f"no attempt {attempt_id}")
    return attempt


def _still_stopping(db: Session, attempt: Attempt) -> bool:
    """Whether an earlier attempt of the same job has yet to end and be settled: a new one
    waits for it, so that it resumes from the checkpoint written in the grace period and
    two processes never run one job at once."""
    earlier = select(Attempt.id).where(
        Attempt.job == attempt.job, Attempt.id < attempt.id, Attempt.state.in_((STOPPING, EXITED))
    )
    return db.scalars(earlier.limit(1)).first() is not None


def _report_checkpoint(db: Session, attempt: Attempt, now: float) -> dict[str, Any]:
    """Record a completed checkpoint of a live attempt (the reconciler applies it)."""
    attempt.checkpoint_s = now
    db.get(Job, attempt.job).checkpoint_s = now
    return attempt_view(attempt)


def _launch_spec(db: Session, attempt: Attempt, job: Job, node: str) -> dict[str, Any]:
    """What an agent needs to start its ranks of `attempt`: GPU indices, the command, and the
    torch.distributed rendezvous (rank 0's node and a port of its own per attempt)."""
    names = [n for n, _ in attempt.placement]
    first = db.get(Node, names[0])
    rank = names.index(node)
    return {
        "attempt": attempt.id,
        "job_id": job.job_id,
        "nodes": names,
        "command": job.command,
        "gpu_ids": attempt.placement[rank][1],
        "grace_s": job.grace_s,
        "env": {
            "MASTER_ADDR": first.address if first is not None else "127.0.0.1",
            "MASTER_PORT": str(20000 + attempt.id % 20000),
            "WORLD_SIZE": str(sum(len(ids) for _, ids in attempt.placement)),  # (an elastic job's size now)
            "NODE_RANK": str(rank),
            "NNODES": str(len(names)),
            "RANK": str(sum(len(ids) for _, ids in attempt.placement[:rank])),
            "LOCAL_WORLD_SIZE": str(len(attempt.placement[rank][1])),
            "CORRAL_JOB_ID": job.job_id,
            "CORRAL_ATTEMPT": str(attempt.number),
            "CORRAL_PORT": str(replica_port(attempt.id)),  # (where a service's replica listens)
        },
    }


def _largest_pool(db: Session) -> int:
    """The GPUs of the largest pool of nodes that are not down (one aggregate query)."""
    totals = db.execute(select(func.sum(Node.gpus)).where(Node.state != DOWN).group_by(Node.pool)).scalars()
    return int(max(totals, default=0) or 0)


def _total_gpus(db: Session) -> int:
    return sum(n.gpus for n in db.scalars(select(Node).where(Node.state != DOWN)))


def fleet_text(pools: dict[str, list[int]], config: Config) -> str:
    """A fleet file (see the README's format) for `pools` (name -> GPUs of each host)."""

    def value(v: Any) -> str:
        return json.dumps(v) if isinstance(v, str) else f"{v:g}" if isinstance(v, float) else str(v)

    lines = ['name = "live"']
    for name, sizes in sorted(pools.items()):
        lines += [
            "",
            "[[pools]]",
            f"name = {value(name)}",
            f"hosts = {len(sizes)}",
            f"gpus_per_host = {max(sizes)}",
        ]
        lines += ["hosts_per_rack = 1", "racks_per_pod = 1"]
    for kind, specs in (("cohorts", config.cohorts), ("queues", config.queues)):
        for spec in specs:
            lines += ["", f"[[{kind}]]"]
            lines += [f"{k} = {value(v)}" for k, v in vars(spec).items() if v is not None]
    return "\n".join(lines) + "\n"


def kept_tokens(engine: Engine, path: Path, rotate: bool = False) -> tuple[str, str]:
    """The admin and node tokens kept in `path` (readable by its owner only), while the
    database still knows them: a server restarted keeps its agents and its users' scripts
    working. New ones (the old stop working) where there are none yet, or with `rotate`."""
    if not rotate and path.exists():
        kept = json.loads(path.read_text())
        with Session(engine) as session:
            roles = [team_of(session, kept.get(k, "")) for k in ("admin", "node")]
        if [t.role if t else None for t in roles] == [ADMIN, NODE]:
            return kept["admin"], kept["node"]
    admin, node = bootstrap(engine)
    fresh = path.with_suffix(".tmp")
    fresh.touch(mode=0o600)
    fresh.write_text(json.dumps({"admin": admin, "node": node}))
    fresh.replace(path)
    return admin, node


def bootstrap(engine: Engine) -> tuple[str, str]:
    """New admin and node tokens (the old ones stop working); returned once, stored hashed."""
    admin, node = new_token(), new_token()
    with Session(engine) as session, session.begin():
        for name, role, token in (("admin", ADMIN, admin), ("nodes", NODE, node)):
            row = session.get(Team, name)
            if row is None:
                session.add(Team(name=name, token_sha256=hash_token(token), role=role, queues=["*"]))
            else:
                row.token_sha256 = hash_token(token)
    return admin, node
