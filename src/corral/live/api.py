"""What every endpoint of the API shares: a database session per request, the caller its
bearer token names, the roles, and the 422 a client's mistake gets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from sqlalchemy.orm import Session

from corral.live.db import Team, team_of

ADMIN, TEAM, NODE = "admin", "team", "node"


async def _session(request: Request) -> AsyncIterator[Session]:
    """A session in one transaction. Requests run on the event loop (every endpoint is
    async): their statements take a millisecond or two, less than handing them to a worker
    thread costs, and SQLite takes one writer at a time anyway."""
    with Session(request.app.state.engine) as session, session.begin():
        yield session


Db = Annotated[Session, Depends(_session)]


async def _caller(db: Db, authorization: Annotated[str | None, Header()] = None) -> Team:
    if not authorization or not authorization.startswith("Bearer "):
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    team = team_of(db, authorization.removeprefix("Bearer ").strip())
    if team is None:
        raise HTTPException(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})
    return team


Caller = Annotated[Team, Depends(_caller)]


def require(who: Team, *roles: str) -> None:
    if who.role not in roles:
        raise HTTPException(403, f"a {who.role} token may not do this")


def unprocessable(field: str, message: str, part: str = "body") -> HTTPException:
    """422 naming the field, as FastAPI's own validation does (`part`: body or query)."""
    return HTTPException(422, [{"loc": [part, field], "msg": message, "type": "value_error"}])
