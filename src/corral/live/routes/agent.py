"""The agents' API: a node registers, heartbeats (taking the attempts to start or stop),
and reports each attempt's start, exit, log and checkpoints."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from corral.live.api import (
    ADMIN,
    NODE,
    ROW_ID_MAX,
    Body,
    Caller,
    Count,
    Db,
    Flag,
    RowId,
    require,
    unprocessable,
)
from corral.live.db import ATTEMPT_RUNNING, COMMITTED, DOWN, EXITED, STOPPING, UP, Attempt, Job, Node
from corral.live.routes.common import Context, attempt_view, report_checkpoint
from corral.live.services import replica_port
from corral.live.transitions import set_state


class NodeSpec(Body):
    name: str = Field(min_length=1, max_length=200)
    gpus: Count = Field(ge=1, le=1024)
    pool: str = Field("default", min_length=1, max_length=200)
    address: str = Field("127.0.0.1", max_length=200)


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


def agent_routes(ctx: Context) -> APIRouter:
    router = APIRouter()
    clock, logs, lease = ctx.clock, ctx.logs, ctx.lease

    @router.post("/v1/agent/register")
    async def register(spec: NodeSpec, who: Caller, db: Db) -> dict[str, Any]:
        require(who, NODE, ADMIN)
        ctx.nodes_changed()
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

    @router.post("/v1/agent/{name}/heartbeat")
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
        live = db.scalars(select(Attempt).where(Attempt.state.in_((COMMITTED, ATTEMPT_RUNNING, STOPPING))))
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
            elif attempt.state == ATTEMPT_RUNNING or not _still_stopping(db, attempt):
                start.append(_launch_spec(db, attempt, job, name))
        for attempt_id in have.running:
            if attempt_id not in seen:  # (ended while the agent was away)
                stop_now.append({"attempt": attempt_id, "grace_s": 0.0})
        return {"start": start, "stop": stop_now, **lease}

    @router.post("/v1/agent/attempts/{attempt_id}/started")
    async def started(attempt_id: RowId, who: Caller, db: Db) -> dict[str, Any]:
        require(who, NODE, ADMIN)
        attempt = _attempt(db, attempt_id)
        if attempt.state == COMMITTED:
            set_state(attempt, ATTEMPT_RUNNING)
        return attempt_view(attempt)

    @router.post("/v1/agent/attempts/{attempt_id}/exited")
    async def exited(attempt_id: RowId, end: Exit, who: Caller, db: Db) -> dict[str, Any]:
        """A node's ranks ended. A gang's attempt ends once every node's have, or at the
        first that failed (the other nodes' ranks are then stopped); its exit code is the
        first non-zero one."""
        require(who, NODE, ADMIN)
        attempt = _attempt(db, attempt_id)
        if attempt.state not in (COMMITTED, ATTEMPT_RUNNING, STOPPING):
            return attempt_view(attempt)
        nodes = {name for name, _ in attempt.placement}
        exits = dict(attempt.exits or {})
        exits[end.node if end.node in nodes else "?"] = end.exit_code
        attempt.exits = exits
        failed = [code for code in exits.values() if code != 0]
        if end.fenced and not attempt.ended:  # (its node was cut off: the job did not end)
            attempt.ended = "failed"
        if failed or nodes <= set(exits) or end.node not in nodes:
            set_state(attempt, EXITED)
            attempt.exit_code, attempt.end_s = failed[0] if failed else 0, clock()
        return attempt_view(attempt)

    @router.post("/v1/agent/attempts/{attempt_id}/log")
    async def append_log(attempt_id: RowId, chunk: LogChunk, who: Caller, db: Db) -> dict[str, int]:
        require(who, NODE, ADMIN)
        _attempt(db, attempt_id)
        logs.mkdir(parents=True, exist_ok=True)
        with (logs / f"{attempt_id}.log").open("a") as handle:
            handle.write(chunk.text)
        return {"bytes": len(chunk.text)}

    @router.post("/v1/agent/attempts/{attempt_id}/checkpoint")
    async def checkpoint(attempt_id: RowId, who: Caller, db: Db) -> dict[str, Any]:
        require(who, NODE, ADMIN)
        attempt = _attempt(db, attempt_id)
        if attempt.state not in (COMMITTED, ATTEMPT_RUNNING, STOPPING):
            raise HTTPException(409, f"attempt {attempt_id} has ended")
        return report_checkpoint(db, attempt, clock())

    return router


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
        "workdir": job.workdir,
        "image": job.image,
        "mounts": job.mounts or [],
        "runtime": job.runtime,
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
            **(
                {"CORRAL_ARRAY_JOB_ID": str(job.array_job), "CORRAL_ARRAY_TASK_ID": str(job.array_task)}
                if job.array_job is not None
                else {}
            ),
        },
    }
