"""The services part of the API: create and remove services, push their demand, list the
endpoints of their ready replicas (what a proxy spreads requests over), and read the
broker's moves. The reconciler's broker (live/services.py) does the rest."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import Field
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from corral.live.api import ADMIN, NODE, TEAM, Body, Caller, Count, Db, require, unprocessable
from corral.live.db import (
    PENDING,
    RUNNING,
    Demand,
    Job,
    Move,
    Service,
    Team,
)
from corral.live.services import endpoints, service_key, service_name


class ServiceSpec(Body):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    queue: str = Field("default", min_length=1, max_length=200)
    gpus_per_replica: Count = Field(1, ge=1, le=1024)
    min_replicas: Count = Field(1, ge=1, le=100_000)
    max_replicas: Count = Field(100, ge=1, le=100_000)
    replica_rps: float = Field(gt=0, allow_inf_nan=False)  # requests/s one replica serves within its SLO
    startup_s: float = Field(60.0, ge=0, le=86_400, allow_inf_nan=False)
    slo_latency_s: float = Field(1.0, gt=0, allow_inf_nan=False)
    slo_percentile: float = Field(0.99, gt=0, lt=1)
    command: list[str] = Field(min_length=1)
    # demand from the replicas' Prometheus metrics: the rate of this counter at this path
    metrics_path: str | None = Field(None, max_length=200, pattern=r"^/")
    metrics_counter: str = Field("requests_total", max_length=200, pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


class DemandSpec(Body):
    """Requests per second now, or samples [[t_s, requests_per_s], ...] (a history)."""

    requests_per_s: float | None = Field(None, ge=0, allow_inf_nan=False)
    samples: list[tuple[float, float]] | None = Field(None, max_length=100_000)


def service_view(s: Service) -> dict[str, Any]:
    return {
        "name": service_name(s.name),
        "team": s.team,
        "queue": s.queue,
        "gpus_per_replica": s.gpus_per_replica,
        "min_replicas": s.min_replicas,
        "max_replicas": s.max_replicas,
        "replica_rps": s.replica_rps,
        "startup_s": s.startup_s,
        "slo_latency_s": s.slo_latency_s,
        "slo_percentile": s.slo_percentile,
        "command": s.command,
        "metrics_path": s.metrics_path,
        "metrics_counter": s.metrics_counter,
        "target_replicas": s.target_replicas,
    }


def service_routes(clock: Callable[[], float], queues: Callable[[], set[str]]) -> APIRouter:
    router = APIRouter()

    def own(db: Session, who: Team, name: str) -> Service:
        """The service `name` names for this caller: a team's own by its name (or
        'team:name'); an admin's or a node's by 'team:name', or by a name only one team uses."""
        team, _, short = name.rpartition(":")
        if team:
            found = db.get(Service, name) if who.role != TEAM or team == who.name else None
        elif who.role == TEAM:
            found = db.get(Service, service_key(who.name, short))
        else:
            named = db.scalars(
                select(Service).where(Service.name.endswith(f":{short}", autoescape=True))
            ).all()
            found = next(iter(named)) if len(named) == 1 else None
            if len(named) > 1:
                teams = ", ".join(sorted(s.team for s in named))
                raise HTTPException(
                    404, f"teams {teams} each have a service '{short}': name it as team:{short}"
                )
        if found is None:
            raise HTTPException(404, f"no service '{name}'")
        return found

    @router.post("/v1/services", status_code=201)
    async def create(spec: ServiceSpec, who: Caller, db: Db) -> dict[str, Any]:
        require(who, TEAM, ADMIN)
        if spec.queue not in queues():
            raise unprocessable(
                "queue", f"unknown queue '{spec.queue}'; known: {', '.join(sorted(queues()))}"
            )
        if who.role == TEAM and spec.queue not in who.queues and "*" not in who.queues:
            raise HTTPException(403, f"team {who.name} may not use queue '{spec.queue}'")
        if spec.max_replicas < spec.min_replicas:
            raise unprocessable(
                "max_replicas", f"{spec.max_replicas} is below min_replicas {spec.min_replicas}"
            )
        key = service_key(who.name, spec.name)
        if db.get(Service, key) is not None:
            raise HTTPException(409, f"your team has a service '{spec.name}'")
        body = spec.model_dump() | {"name": key}
        service = Service(**body, team=who.name, target_replicas=0, created_s=clock())
        db.add(service)
        return service_view(service)

    @router.get("/v1/services")
    async def services(who: Caller, db: Db) -> list[dict[str, Any]]:
        require(who, TEAM, ADMIN)
        rows = db.scalars(select(Service).order_by(Service.created_s, Service.name))
        out = []
        for s in rows:
            if who.role == TEAM and s.team != who.name:
                continue
            live = db.scalars(
                select(Job.state).where(Job.service == s.name, Job.state.in_((PENDING, RUNNING)))
            ).all()
            out.append(
                service_view(s)
                | {"running": sum(x == RUNNING for x in live), "pending": sum(x == PENDING for x in live)}
            )
        return out

    @router.delete("/v1/services/{name}")
    async def remove(name: str, who: Caller, db: Db) -> dict[str, Any]:
        """The service goes; its replicas are cancelled (SIGTERM, their grace, SIGKILL)."""
        require(who, TEAM, ADMIN)
        service = own(db, who, name)
        live = (PENDING, RUNNING)
        for job in db.scalars(select(Job).where(Job.service == service.name, Job.state.in_(live))):
            job.cancel_requested = True
        db.execute(delete(Demand).where(Demand.service == service.name))
        db.delete(service)
        return {"name": service_name(service.name), "team": service.team, "removed": True}

    @router.post("/v1/services/{name}/demand")
    async def demand(name: str, spec: DemandSpec, who: Caller, db: Db) -> dict[str, Any]:
        """Requests per second the service is asked for (its proxy pushes what it counts)."""
        require(who, TEAM, ADMIN, NODE)
        service = own(db, who, name)
        now = clock()
        if (spec.requests_per_s is None) == (spec.samples is None):
            raise unprocessable("requests_per_s", "give requests_per_s or samples, not both")
        samples = [(now, spec.requests_per_s)] if spec.samples is None else spec.samples
        for k, (t_s, rps) in enumerate(samples):
            if not (math.isfinite(t_s) and t_s <= now + 1e-6 and math.isfinite(rps) and rps >= 0):
                raise unprocessable(
                    "samples", f"sample {k}: needs a time no later than now and requests/s >= 0"
                )
        db.add_all(Demand(service=service.name, t_s=float(t), requests_per_s=float(r)) for t, r in samples)
        return {"name": service_name(service.name), "samples": len(samples)}

    @router.get("/v1/services/{name}/endpoints")
    async def replica_endpoints(name: str, who: Caller, db: Db) -> list[dict[str, Any]]:
        require(who, TEAM, ADMIN, NODE)
        return endpoints(db, own(db, who, name).name)

    @router.get("/v1/moves")
    async def moves(who: Caller, db: Db, since_s: float = -math.inf) -> list[dict[str, Any]]:
        """The broker's moves, oldest first: targets of services and GPUs lent, with reasons.
        A team sees its own services' moves and the lending."""
        require(who, TEAM, ADMIN)
        rows = select(Move).where(Move.t_s >= since_s).order_by(Move.id)
        if who.role == TEAM:
            rows = rows.where((Move.service == "") | Move.service.startswith(f"{who.name}:", autoescape=True))
        return [
            {
                "time_s": m.t_s,
                "step": m.step,
                "service": service_name(m.service),
                "team": m.service.rpartition(":")[0] or None,
                "kind": m.kind,
                "before": m.before,
                "after": m.after,
                "reason": m.reason,
            }
            for m in db.scalars(rows)
        ]

    return router
