"""Nodes and quota: anyone reads them; the admin cordons, drains and uncordons nodes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from sqlalchemy import select
from sqlalchemy.orm import Session

from corral.live.api import ADMIN, TEAM, Caller, Db, require, unprocessable
from corral.live.db import (
    ATTEMPT_RUNNING,
    COMMITTED,
    CORDONED,
    DOWN,
    DRAINING,
    STOPPING,
    UP,
    Attempt,
    Job,
    Node,
)
from corral.live.routes.common import Context


def node_routes(ctx: Context) -> APIRouter:
    router = APIRouter()
    config, clock = ctx.config, ctx.clock

    @router.get("/v1/nodes")
    async def nodes(who: Caller, db: Db) -> list[dict[str, Any]]:
        require(who, TEAM, ADMIN)
        busy: dict[str, list[int]] = {}
        for attempt in db.scalars(
            select(Attempt).where(Attempt.state.in_((COMMITTED, ATTEMPT_RUNNING, STOPPING)))
        ):
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

    @router.post("/v1/nodes/{name}/{action}")
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

    @router.get("/v1/quota")
    async def quota(who: Caller, db: Db) -> list[dict[str, Any]]:
        require(who, TEAM, ADMIN)
        used: dict[str, int] = {}  # (what live attempts hold: an elastic job's size now)
        held = select(Job.queue, Attempt.placement).join(Attempt, Attempt.job == Job.id)
        for queue, placement in db.execute(held.where(Attempt.state.in_((COMMITTED, ATTEMPT_RUNNING)))):
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

    return router


def _total_gpus(db: Session) -> int:
    return sum(n.gpus for n in db.scalars(select(Node).where(Node.state != DOWN)))
