"""Jobs: a team submits, lists, cancels and reads the logs and reasons of its own."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import PlainTextResponse
from pydantic import Field, field_validator
from sqlalchemy import String, cast, func, insert, select, update
from sqlalchemy.orm import Session

from corral.errors import InputError
from corral.live.api import ADMIN, ROW_ID_MAX, TEAM, Body, Caller, Count, Db, Flag, require, unprocessable
from corral.live.db import (
    ATTEMPT_RUNNING,
    COMMITTED,
    ENDED,
    JOB_STATES,
    PENDING,
    STOPPING,
    Attempt,
    Job,
    Team,
)
from corral.live.reconciler import job_table
from corral.live.routes.common import Context, job_view, own_job, report_checkpoint
from corral.state.elastic import elastic_columns
from corral.state.gates import parse_array

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
    # where its processes start, an absolute path on the nodes (None: the agent's folder)
    workdir: str | None = Field(None, min_length=1, max_length=4096, pattern=r"^/")
    # dependencies: JOB (JOB:ok), JOB:any or JOB:notok; an array's id stands for all its
    # tasks, ARRAY_TASK for one of them
    after: list[Annotated[str, Field(pattern=r"^[0-9]{1,18}(_[0-9]{1,9})?(:(ok|any|notok))?$")]] = Field(
        [], max_length=1000
    )
    user: str = Field("", max_length=200)  # who submits it (their login), to list by
    # a container: each rank runs in this image, with these mounts (absolute SRC:DST[:ro]),
    # through this runtime (None: the node's podman, else Docker)
    image: str | None = Field(None, min_length=1, max_length=1000, pattern=r"^[^\s]+$")
    mounts: list[Annotated[str, Field(pattern=r"^/[^:]*:/[^:]*(:(ro|rw))?$", max_length=4096)]] = Field(
        [], max_length=100
    )
    runtime: str | None = Field(None, pattern=r"^(podman|docker|/[^\s]+)$", max_length=200)
    # one job per index (Slurm's syntax: 0-99%8 runs at most 8 at once)
    array: str | None = Field(None, min_length=1, max_length=1000)

    @field_validator("array")
    @classmethod
    def _array_reads(cls, array: str | None) -> str | None:
        if array is not None:
            parse_array(array)
        return array

    @field_validator("command")
    @classmethod
    def _command_fits(cls, command: list[str]) -> list[str]:
        size = sum(len(arg.encode("utf-8", "surrogatepass")) + 1 for arg in command)
        if size > COMMAND_BYTES:
            raise ValueError(f"the command is {size:,} bytes; at most {COMMAND_BYTES:,}")
        return command


def _dependencies(db: Session, who: Team, asked: list[str]) -> list[str]:
    """`asked` (JOB, ARRAY_TASK, each with :kind) as the rows they name, "ROW:kind"; an
    array stands for each of its tasks. A job the caller may not see is refused (422)."""
    out: list[str] = []
    for text in asked:
        name, _, kind = text.partition(":")
        job_text, _, task = name.partition("_")
        row = db.get(Job, int(job_text)) if int(job_text) <= ROW_ID_MAX else None
        if row is None or (who.role == TEAM and row.team != who.name):
            raise unprocessable("after", f"no job {job_text} to depend on")
        rows = [row.id]
        if task:
            if row.array_job != row.id:
                raise unprocessable("after", f"job {job_text} is not an array")
            found = db.scalar(select(Job.id).where(Job.array_job == row.id, Job.array_task == int(task)))
            if found is None:
                raise unprocessable("after", f"array {job_text} has no task {task}")
            rows = [found]
        elif row.array_job == row.id:
            rows = list(db.scalars(select(Job.id).where(Job.array_job == row.id).order_by(Job.id)))
        out += [f"{r}:{kind or 'ok'}" for r in rows if f"{r}:{kind or 'ok'}" not in out]
    return out


def job_routes(ctx: Context) -> APIRouter:
    router = APIRouter()
    config, clock = ctx.config, ctx.clock

    @router.post("/v1/jobs", status_code=201)
    async def submit(spec: JobSpec, who: Caller, db: Db) -> dict[str, Any]:
        require(who, TEAM, ADMIN)
        known = {q.name for q in config.queues} or {"default"}
        if spec.queue not in known:
            raise unprocessable("queue", f"unknown queue '{spec.queue}'; known: {', '.join(sorted(known))}")
        if who.role == TEAM and spec.queue not in who.queues and "*" not in who.queues:
            raise HTTPException(403, f"team {who.name} may not submit to queue '{spec.queue}'")
        most = ctx.largest_pool(db)
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
        after = _dependencies(db, who, spec.after)
        indices, limit = parse_array(spec.array) if spec.array is not None else ([None], 0)
        if (spec.mounts or spec.runtime) and spec.image is None:
            raise unprocessable("image", "mounts and a runtime are for a job that runs in an image")
        values = dict(
            image=spec.image,
            mounts=spec.mounts or None,
            runtime=spec.runtime,
            user=spec.user,
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
            workdir=spec.workdir,
            submit_s=clock(),
            state=PENDING,
            after=after or None,
            array_limit=limit or None,
        )
        # (plain statements: the ORM's unit of work costs more than they do)
        rows = list(
            db.scalars(
                insert(Job).returning(Job.id, sort_by_parameter_order=True),
                [{**values, "job_id": f"new-{uuid.uuid4().hex}", "array_task": index} for index in indices],
            )
        )
        first = rows[0]
        db.execute(
            update(Job)
            .where(Job.id.in_(rows))
            .values(job_id=cast(Job.id, String), array_job=None if spec.array is None else first)
        )
        array_id = None if spec.array is None else str(first)
        return {"job_id": str(first), "array_job_id": array_id, "tasks": len(rows), "state": PENDING}

    @router.get("/v1/jobs")
    async def jobs(
        who: Caller,
        db: Db,
        state: str | None = None,
        team: str | None = None,
        queue: Annotated[str | None, Query(max_length=200)] = None,
        user: Annotated[str | None, Query(max_length=200)] = None,
        array: Annotated[int | None, Query(ge=1, le=ROW_ID_MAX)] = None,
        forecast: bool = False,
    ) -> list[dict[str, Any]]:
        """The jobs asked for; with `forecast`, each pending one's expected start
        (`forecast_start_s`, null where it is not expected to start)."""
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
        if queue is not None:
            query = query.where(Job.queue == queue)
        if user is not None:
            query = query.where(Job.user == user)
        if array is not None:
            query = query.where(Job.array_job == array)
        # (each listed job's first start: only theirs, not every attempt's in the database)
        listed = query.with_only_columns(Job.id).order_by(None)
        starts = select(Attempt.job, func.min(Attempt.start_s)).where(Attempt.job.in_(listed))
        first = dict(db.execute(starts.group_by(Attempt.job)).all())
        live = select(Attempt.job, Attempt.start_s, Attempt.state, Attempt.placement).where(
            Attempt.state.in_((COMMITTED, ATTEMPT_RUNNING, STOPPING))
        )
        since, held = {}, {}
        for job_row, start, attempt_state, placement in db.execute(live.order_by(Attempt.id)):
            since[job_row] = start
            if attempt_state != STOPPING:
                held[job_row] = sum(len(ids) for _, ids in placement)
        now = clock()
        rows = [
            job_view(j, None, now, since.get(j.id), held.get(j.id), first.get(j.id)) | {"_row": j.id}
            for j in db.scalars(query)
        ]
        expected = ctx.loop.forecast() if forecast and any(r["state"] == PENDING for r in rows) else {}
        for r in rows:
            row_id = r.pop("_row")
            if forecast and r["state"] == PENDING:
                r["forecast_start_s"] = expected.get(row_id)
        return rows

    @router.get("/v1/jobs/{job_id}")
    async def job(job_id: str, who: Caller, db: Db) -> dict[str, Any]:
        row = own_job(db, who, job_id)
        attempts = list(db.scalars(select(Attempt).where(Attempt.job == row.id).order_by(Attempt.id)))
        live = [a for a in attempts if a.state in (COMMITTED, ATTEMPT_RUNNING, STOPPING)]
        holding = [a for a in live if a.state != STOPPING]
        held = sum(len(ids) for _, ids in holding[-1].placement) if holding else None
        started = attempts[0].start_s if attempts else None
        return job_view(row, attempts, clock(), live[-1].start_s if live else None, held, started)

    @router.post("/v1/jobs/{job_id}/cancel")
    async def cancel(job_id: str, who: Caller, db: Db) -> dict[str, Any]:
        row = own_job(db, who, job_id)
        if row.array_job == row.id and "_" not in job_id:  # (an array: every task not yet ended)
            tasks = list(db.scalars(select(Job).where(Job.array_job == row.id, Job.state.not_in(ENDED))))
            if not tasks:
                raise HTTPException(409, f"every task of array {job_id} has already ended")
            for task in tasks:
                task.cancel_requested = True
            return job_view(row) | {"cancelled_tasks": len(tasks)}
        if row.state in ENDED:
            raise HTTPException(409, f"job {job_id} has already ended ({row.state})")
        row.cancel_requested = True
        return job_view(row)

    @router.post("/v1/jobs/{job_id}/checkpoint")
    async def job_checkpoint(job_id: str, who: Caller, db: Db) -> dict[str, Any]:
        """The job's running attempt completed a checkpoint (the API form of the marker file)."""
        row = own_job(db, who, job_id)
        live = db.scalars(
            select(Attempt)
            .where(Attempt.job == row.id, Attempt.state.in_((COMMITTED, ATTEMPT_RUNNING, STOPPING)))
            .order_by(Attempt.id.desc())
        ).first()
        if live is None:
            raise HTTPException(409, f"job {job_id} has no attempt running ({row.state})")
        return report_checkpoint(db, live, clock())

    @router.get("/v1/jobs/{job_id}/logs", response_class=PlainTextResponse)
    async def job_logs(
        job_id: str,
        who: Caller,
        db: Db,
        attempt: Annotated[int | None, Query(ge=1, le=ROW_ID_MAX)] = None,
        offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    ) -> str:
        """The output of the job's attempt number `attempt` (counted from 1 within the job, as
        its process's CORRAL_ATTEMPT; the latest by default), from byte `offset`."""
        row = own_job(db, who, job_id)
        ids = {
            a.number: a.id
            for a in db.scalars(select(Attempt).where(Attempt.job == row.id).order_by(Attempt.id))
        }
        if not ids:
            return ""
        chosen = max(ids) if attempt is None else attempt
        if chosen not in ids:
            raise HTTPException(404, f"job {job_id} has no attempt {attempt} (it has 1 to {max(ids)})")
        path = ctx.logs / f"{ids[chosen]}.log"
        if not path.exists():
            return ""
        with path.open("rb") as handle:
            handle.seek(max(0, offset))
            return handle.read().decode(errors="replace")

    @router.get("/v1/jobs/{job_id}/forecast")
    async def job_forecast(job_id: str, who: Caller, db: Db) -> dict[str, Any]:
        """A pending job's expected start (null: none expected, or it is not pending)."""
        row = own_job(db, who, job_id)
        at_s = ctx.loop.forecast().get(row.id) if row.state == PENDING else None
        return {"job_id": row.job_id, "state": row.state, "forecast_start_s": at_s}

    @router.get("/v1/jobs/{job_id}/reasons")
    async def job_reasons(job_id: str, who: Caller, db: Db) -> list[dict[str, Any]]:
        row = own_job(db, who, job_id)
        history = ctx.loop.reasons(row.id)
        return [{"time_s": t, "kind": kind, "reason": words} for t, kind, words in history]

    return router
