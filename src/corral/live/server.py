"""The HTTP face of a live cluster (FastAPI), composed of one router per resource: jobs
(routes/jobs.py), teams, nodes and quota, services, the agents' API, and the
configuration. A background thread runs the reconciler, the one writer of decisions, while
it holds the cluster's leader lock (loop.py).

Every client mistake is a 4xx naming the field: 401 without a known token, 403 for what the
token may not do, 404 for what does not exist (or is another team's), 422 for a bad value.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from corral.live.api import ADMIN, NODE, RefuseUnstorable, invalid_request
from corral.live.db import Team, hash_token, new_token, team_of
from corral.live.loop import ReconcilerLoop
from corral.live.metrics import ServerMetrics
from corral.live.reconciler import Config
from corral.live.routes.agent import agent_routes
from corral.live.routes.common import Context
from corral.live.routes.config import config_routes
from corral.live.routes.jobs import job_routes
from corral.live.routes.nodes import node_routes
from corral.live.routes.reservations import reservation_routes
from corral.live.routes.services import service_routes
from corral.live.routes.teams import team_routes
from corral.live.routes.usage import usage_routes


def create_app(
    engine: Engine,
    config: Config,
    data_dir: Path,
    clock: Callable[[], float] = time.time,
    reconcile_every_s: float | None = 0.2,
) -> FastAPI:
    """The API over `engine`; with `reconcile_every_s`, a thread runs the reconciler that
    often while it holds the leader lock (tests step it themselves)."""
    loop = ReconcilerLoop(engine, config, data_dir, clock, reconcile_every_s)
    ctx = Context(engine, config, data_dir, clock, loop)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        loop.start()
        yield
        loop.stop()

    app = FastAPI(title="corral", lifespan=lifespan)
    app.add_middleware(RefuseUnstorable)
    app.exception_handler(RequestValidationError)(invalid_request)
    for routes in (
        job_routes,
        team_routes,
        node_routes,
        agent_routes,
        config_routes,
        reservation_routes,
        usage_routes,
    ):
        app.include_router(routes(ctx))
    app.include_router(service_routes(clock, lambda: {q.name for q in config.queues} or {"default"}))
    metrics = ServerMetrics(engine, config, loop.leading)
    loop.metrics = metrics

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        """The cluster's and this server's metrics, in Prometheus' text format (no token:
        counts and names only, as a scraper reads them)."""
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.state.engine = engine
    app.state.clock = clock
    app.state.step = loop.step
    app.state.reconciler = loop.reconciler
    app.state.loop = loop

    @app.exception_handler(ValueError)
    async def _value_error(_: Request, err: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=422)

    @app.get("/", response_class=HTMLResponse)
    async def dashboard() -> str:
        """The dashboard: one static page over the JSON API (the token is typed into it)."""
        return (Path(__file__).parent / "dashboard.html").read_text()

    @app.get("/v1/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


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
