"""Reservations and maintenance windows: the admin holds nodes (or GPUs) for a queue, or
empties nodes for maintenance, over a window; everyone may list them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import Field, model_validator
from sqlalchemy import delete, func, select

from corral.live.api import ADMIN, TEAM, Body, Caller, Count, Db, require, unprocessable
from corral.live.db import DOWN, Node, Window
from corral.live.routes.common import Context
from corral.windows import DEFAULT_NOTICE_S

MAX_TIME_S = 1e12


class WindowSpec(Body):
    name: str | None = Field(None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    pool: str = Field("default", min_length=1, max_length=200)
    nodes: list[str] = Field([], max_length=10_000)
    gpus: Count = Field(0, ge=0, le=10_000_000)
    queue: str | None = Field(None, min_length=1, max_length=200)
    maintenance: bool = False
    start_s: float = Field(ge=0, le=MAX_TIME_S, allow_inf_nan=False)
    duration_s: float = Field(gt=0, le=MAX_TIME_S, allow_inf_nan=False)
    notice_s: float = Field(DEFAULT_NOTICE_S, ge=0, le=MAX_TIME_S, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_of_each(self) -> WindowSpec:
        if bool(self.nodes) == bool(self.gpus):
            raise ValueError("give nodes or gpus (one of them)")
        if (self.queue is None) != self.maintenance:
            raise ValueError("give queue or maintenance (one of them)")
        return self


def window_view(row: Window, held: list[str] | None) -> dict[str, Any]:
    return {
        "name": row.name,
        "pool": row.pool,
        "nodes": row.nodes,
        "gpus": row.gpus,
        "queue": row.queue,
        "maintenance": row.queue is None,
        "start_s": row.start_s,
        "end_s": row.end_s,
        "notice_s": row.notice_s,
        "held_nodes": held,  # the nodes it holds now (None: none is up)
    }


def reservation_routes(ctx: Context) -> APIRouter:
    router = APIRouter()
    config, clock = ctx.config, ctx.clock

    @router.post("/v1/reservations", status_code=201)
    async def reserve(spec: WindowSpec, who: Caller, db: Db) -> dict[str, Any]:
        require(who, ADMIN)
        known = {q.name for q in config.queues} or {"default"}
        if spec.queue is not None and spec.queue not in known:
            raise unprocessable("queue", f"unknown queue '{spec.queue}'; known: {', '.join(sorted(known))}")
        pool_nodes = {
            n.name: n.gpus for n in db.scalars(select(Node).where(Node.pool == spec.pool, Node.state != DOWN))
        }
        if not pool_nodes:
            raise unprocessable("pool", f"no node of pool '{spec.pool}' is up")
        missing = [name for name in spec.nodes if name not in pool_nodes]
        if missing:
            raise unprocessable("nodes", f"no node {missing[0]} up in pool '{spec.pool}'")
        if spec.gpus > sum(pool_nodes.values()):
            raise unprocessable("gpus", f"pool '{spec.pool}' has {sum(pool_nodes.values())} GPUs up")
        name = spec.name or f"reservation-{(db.scalar(select(func.max(Window.id))) or 0) + 1}"
        if db.scalar(select(Window.id).where(Window.name == name)) is not None:
            raise HTTPException(409, f"a reservation '{name}' exists")
        row = Window(
            name=name,
            pool=spec.pool,
            nodes=sorted(set(spec.nodes)),
            gpus=spec.gpus,
            queue=spec.queue,
            start_s=spec.start_s,
            end_s=spec.start_s + spec.duration_s,
            notice_s=spec.notice_s,
            created_s=clock(),
        )
        db.add(row)
        db.flush()
        return window_view(row, None)

    @router.get("/v1/reservations")
    async def reservations(who: Caller, db: Db) -> list[dict[str, Any]]:
        require(who, TEAM, ADMIN)
        rows = list(db.scalars(select(Window).order_by(Window.start_s, Window.id)))
        return [window_view(row, ctx.loop.held_nodes(row.name)) for row in rows]

    @router.delete("/v1/reservations/{name}")
    async def unreserve(name: str, who: Caller, db: Db) -> dict[str, Any]:
        require(who, ADMIN)
        if db.execute(delete(Window).where(Window.name == name)).rowcount == 0:
            raise HTTPException(404, f"no reservation '{name}'")
        return {"name": name, "deleted": True}

    return router
