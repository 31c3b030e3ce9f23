"""What every endpoint of the API shares: a database session per request, the caller its
bearer token names, the roles, and the 422 a client's mistake gets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, ClassVar
from urllib.parse import unquote_to_bytes

from fastapi import Depends, Header, HTTPException, Request
from fastapi import Path as FastPath
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
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


async def _caller(request: Request, db: Db, authorization: Annotated[str | None, Header()] = None) -> Team:
    if not authorization or not authorization.startswith("Bearer "):
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    team = team_of(db, authorization.removeprefix("Bearer ").strip())
    if team is None:
        raise HTTPException(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})
    if team.token_expires_s is not None and request.app.state.clock() >= team.token_expires_s:
        raise HTTPException(401, "expired token", headers={"WWW-Authenticate": "Bearer"})
    return team


Caller = Annotated[Team, Depends(_caller)]


def require(who: Team, *roles: str) -> None:
    if who.role not in roles:
        raise HTTPException(403, f"a {who.role} token may not do this")


def unprocessable(field: str, message: str, part: str = "body") -> HTTPException:
    """422 naming the field, as FastAPI's own validation does (`part`: body or query)."""
    return HTTPException(422, [{"loc": [part, field], "msg": message, "type": "value_error"}])


def storable(value: Any, allow_nul: bool = False) -> Any:
    """Refuse text a database cannot store or a client cannot read back: a NUL byte (which
    PostgreSQL refuses) or a lone surrogate (which is not UTF-8), anywhere in `value`."""
    if isinstance(value, str):
        if not allow_nul and "\x00" in value:
            raise ValueError("must not contain a NUL byte")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode text (a lone surrogate is not)") from None
    elif isinstance(value, list | tuple):
        for item in value:
            storable(item, allow_nul)
    elif isinstance(value, dict):
        for key, item in value.items():
            storable(key, allow_nul)
            storable(item, allow_nul)
    return value


class Body(BaseModel):
    """A request body: unknown fields refused, every text storable (`storable`)."""

    model_config = ConfigDict(extra="forbid")
    allow_nul: ClassVar[bool] = False

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return storable(value, cls.allow_nul)


# Whole numbers and flags as JSON gives them: `true` is not 1 GPU, nor "1" a flag.
Count = Annotated[int, Field(strict=True)]
Flag = Annotated[bool, Field(strict=True)]
# Database row ids, as the columns hold them (PostgreSQL's INTEGER)
ROW_ID_MAX = 2**31 - 1
RowId = Annotated[int, FastPath(ge=1, le=ROW_ID_MAX)]


class RefuseUnstorable:
    """ASGI middleware: a path or query with a NUL byte or text that is not UTF-8 gets 422,
    before any route passes it to the database. (Plain ASGI: a request's session commits
    as soon as its route returns, as without middleware.)"""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
            for part, raw in (("path", path), ("query", scope.get("query_string", b""))):
                text = unquote_to_bytes(raw.replace(b"+", b" "))
                try:
                    clean = "\x00" not in text.decode("utf-8")
                except UnicodeDecodeError:
                    clean = False
                if not clean:
                    message = "must be UTF-8 text without NUL bytes"
                    detail = [{"loc": [part], "msg": message, "type": "value_error"}]
                    await JSONResponse({"detail": detail}, status_code=422)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _printable(value: Any) -> Any:
    return value.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(value, str) else value


async def invalid_request(_: Request, err: RequestValidationError) -> JSONResponse:
    """FastAPI's 422, without echoing the input back: text that could not be stored could
    not be sent back either."""
    detail = [
        {"loc": [_printable(p) for p in e["loc"]], "msg": _printable(e["msg"]), "type": e["type"]}
        for e in err.errors()
    ]
    return JSONResponse({"detail": detail}, status_code=422)
