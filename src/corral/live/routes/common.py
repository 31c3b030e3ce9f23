"""What the routers of the live API share: the server's context (database, configuration,
clock, the reconciler's loop) and the views of jobs, attempts and teams as the API shows
them."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from corral.live.api import NODE, ROW_ID_MAX, TEAM
from corral.live.db import DOWN, PENDING, Attempt, Job, Node, Team
from corral.live.loop import ReconcilerLoop
from corral.live.reconciler import Config
from corral.live.services import service_name


@dataclass
class Context:
    """What every router reads: the database, the live configuration (changed in place by
    `PUT /v1/config`), the clock, the folder of the jobs' logs and the reconciler's loop."""

    engine: Engine
    config: Config
    data_dir: Path
    clock: Callable[[], float]
    loop: ReconcilerLoop
    largest: dict[str, float] = field(default_factory=lambda: {"gpus": 0.0, "until": -math.inf})

    @property
    def logs(self) -> Path:
        return self.data_dir / "logs"

    @property
    def lease(self) -> dict[str, float]:
        """How long an agent's lease holds: it fences its jobs after."""
        return {"fence_s": self.config.fence_s}

    def largest_pool(self, db: Session) -> int:
        """The largest pool, for refusing jobs no pool can hold: asked at every submission,
        and the nodes seldom change, so it is read again after a second or a node's
        registration (a node lost meanwhile only lets a job through that then waits for
        its return)."""
        if time.monotonic() >= self.largest["until"]:
            self.largest["gpus"], self.largest["until"] = _largest_pool(db), time.monotonic() + 1.0
        return int(self.largest["gpus"])

    def nodes_changed(self) -> None:
        """A node registered: the largest pool is read again at the next submission."""
        self.largest["until"] = -math.inf


def own_job(db: Session, who: Team, job_id: str) -> Job:
    """The caller's job `job_id`, or an array's task as ARRAY_TASK (404 for another team's,
    as for one that does not exist)."""
    array, _, task = job_id.partition("_")
    if task and array.isdigit() and task.isdigit() and int(array) <= ROW_ID_MAX and int(task) <= ROW_ID_MAX:
        job = db.scalar(select(Job).where(Job.array_job == int(array), Job.array_task == int(task)))
    else:
        job = db.scalar(select(Job).where(Job.job_id == job_id))
    if job is None or (who.role == TEAM and job.team != who.name):
        raise HTTPException(404, f"no job '{job_id}'")
    if who.role == NODE:
        raise HTTPException(403, "a node token may not read jobs")
    return job


def job_view(
    job: Job,
    attempts: list[Attempt] | None = None,
    now: float | None = None,
    since: float | None = None,
    held: int | None = None,
    first_start_s: float | None = None,
) -> dict[str, Any]:
    """A job as the API shows it; with `now`, how long it has waited (while pending) and run
    (its ended attempts, and its live one since `since`); `held`: the GPUs its live attempt
    holds (an elastic job's size now); `first_start_s`: when its first attempt started."""
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
        "first_start_s": first_start_s,
        "workdir": job.workdir,
        "user": job.user,
        "image": job.image,
        "mounts": list(job.mounts or ()),
        "runtime": job.runtime,
        "after": list(job.after or ()),
        "array_job_id": None if job.array_job is None else str(job.array_job),
        "array_task_id": job.array_task if job.array_job is not None else None,
        "array_limit": job.array_limit,
        "reason": job.reason,
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


def report_checkpoint(db: Session, attempt: Attempt, now: float) -> dict[str, Any]:
    """Record a completed checkpoint of a live attempt (the reconciler applies it)."""
    attempt.checkpoint_s = now
    db.get(Job, attempt.job).checkpoint_s = now
    return attempt_view(attempt)


def _largest_pool(db: Session) -> int:
    """The GPUs of the largest pool of nodes that are not down (one aggregate query)."""
    totals = db.execute(select(func.sum(Node.gpus)).where(Node.state != DOWN).group_by(Node.pool)).scalars()
    return int(max(totals, default=0) or 0)
