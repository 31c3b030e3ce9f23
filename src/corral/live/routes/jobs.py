"""Jobs: a team submits, lists, cancels and reads the logs and reasons of its own."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import PlainTextResponse
from pydantic import Field, field_validator
from sqlalchemy import func, insert, select, update

from corral.errors import InputError
from corral.live.api import ADMIN, ROW_ID_MAX, TEAM, Body, Caller, Count, Db, Flag, require, unprocessable
from corral.live.db import ATTEMPT_RUNNING, COMMITTED, ENDED, JOB_STATES, PENDING, STOPPING, Attempt, Job
from corral.live.reconciler import job_table
from corral.live.routes.common import Context, job_view, own_job, report_checkpoint
from corral.state.elastic import elastic_columns

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

    @field_validator("command")
    @classmethod
    def _command_fits(cls, command: list[str]) -> list[str]:
        size = sum(len(arg.encode("utf-8", "surrogatepass")) + 1 for arg in command)
        if size > COMMAND_BYTES:
            raise ValueError(f"the command is {size:,} bytes; at most {COMMAND_BYTES:,}")
        return command


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
                workdir=spec.workdir,
                submit_s=clock(),
                state=PENDING,
            )
            .returning(Job.id)
        ).scalar_one()
        db.execute(update(Job).where(Job.id == row).values(job_id=str(row)))
        return {"job_id": str(row), "state": PENDING}

    @router.get("/v1/jobs")
    async def jobs(
        who: Caller,
        db: Db,
        state: str | None = None,
        team: str | None = None,
        queue: Annotated[str | None, Query(max_length=200)] = None,
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
        if queue is not None:
            query = query.where(Job.queue == queue)
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
        return [
            job_view(j, None, now, since.get(j.id), held.get(j.id), first.get(j.id))
            for j in db.scalars(query)
        ]

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

    @router.get("/v1/jobs/{job_id}/reasons")
    async def job_reasons(job_id: str, who: Caller, db: Db) -> list[dict[str, Any]]:
        row = own_job(db, who, job_id)
        history = ctx.loop.reasons(row.id)
        return [{"time_s": t, "kind": kind, "reason": words} for t, kind, words in history]

    return router
