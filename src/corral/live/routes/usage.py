"""The runs of a live cluster as accounting reads them (report/usage.py): every attempt with
its job's queue, team, user and state, and the nominal quotas. A team sees its own."""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import Session

from corral.live.api import ADMIN, TEAM, Caller, Db, require
from corral.live.db import Attempt, Job
from corral.live.routes.common import Context


def run_rows(db: Session, team: str | None = None) -> dict[str, list[Any]]:
    """Every attempt, in the order they started, as a run: one still holding its GPUs (or
    stopping) has no end; one that completed kept all its run, one stopped what its
    checkpoints kept, one that failed by its own exit nothing."""
    query = select(Attempt, Job).join(Job, Job.id == Attempt.job).order_by(Attempt.start_s, Attempt.id)
    if team is not None:
        query = query.where(Job.team == team)
    rows: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    for attempt, job in db.execute(query):
        going = attempt.end_s is None
        end = math.nan if going else attempt.end_s
        ended = attempt.ended if not going else "running"
        if going:
            kept = math.nan
        elif attempt.kept_s is not None:
            kept = attempt.kept_s
        else:
            kept = end - attempt.start_s if ended == "completed" else 0.0
        values = (
            job.job_id, attempt.number, attempt.start_s, end, sum(len(ids) for _, ids in attempt.placement),
            ended, kept, job.queue, job.team, job.user or job.team, "experiment", job.submit_s, job.state,
        )  # fmt: skip
        for name, value in zip(COLUMNS, values, strict=True):
            rows[name].append(value)
    return rows


COLUMNS = (
    "job_id", "run", "start_s", "end_s", "gpus", "ended", "kept_s",
    "queue", "team", "user", "kind", "submit_s", "state",
)  # fmt: skip


def usage_routes(ctx: Context) -> APIRouter:
    router = APIRouter()

    @router.get("/v1/usage/runs")
    async def runs(who: Caller, db: Db) -> dict[str, Any]:
        """The runs (NaN ends as null), the nominal quotas, and the time now."""
        require(who, TEAM, ADMIN)
        rows = run_rows(db, who.name if who.role == TEAM else None)
        rows["end_s"] = [None if math.isnan(t) else t for t in rows["end_s"]]
        rows["kept_s"] = [None if math.isnan(k) else k for k in rows["kept_s"]]
        nominal = {q.name: q.nominal_gpus for q in ctx.config.queues}
        return {"runs": rows, "nominal_gpus": nominal, "now_s": ctx.clock()}

    return router
