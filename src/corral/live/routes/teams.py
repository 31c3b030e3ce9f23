"""Teams: the admin adds them, lists them, and rotates or revokes their tokens."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException
from pydantic import Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from corral.live.api import ADMIN, TEAM, Body, Caller, Db, require
from corral.live.db import Team, hash_token, new_token
from corral.live.routes.common import Context, team_view


class TokenSpec(Body):
    expires_s: float | None = Field(None, gt=0, le=1e10, allow_inf_nan=False)  # from now


class TeamSpec(TokenSpec):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$")
    queues: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=1000)

    @field_validator("name")
    @classmethod
    def _not_a_word_of_the_cli(cls, name: str) -> str:
        if name in ("list", "rotate", "revoke"):
            raise ValueError(f"'{name}' is a word of `corral team`: choose another name")
        return name


def team_routes(ctx: Context) -> APIRouter:
    router = APIRouter()
    clock = ctx.clock

    @router.post("/v1/teams", status_code=201)
    async def add_team(spec: TeamSpec, who: Caller, db: Db) -> dict[str, Any]:
        require(who, ADMIN)
        if db.get(Team, spec.name) is not None:
            raise HTTPException(409, f"team '{spec.name}' exists")
        team = Team(name=spec.name, role=TEAM, queues=spec.queues)
        db.add(team)
        return issue_token(team, spec)

    @router.get("/v1/teams")
    async def teams(who: Caller, db: Db) -> list[dict[str, Any]]:
        require(who, ADMIN)
        return [team_view(t) for t in db.scalars(select(Team).where(Team.role == TEAM).order_by(Team.name))]

    def issue_token(team: Team, spec: TokenSpec) -> dict[str, Any]:
        """A new token for `team` (any old one stops working), shown once in the answer."""
        token = new_token()
        team.token_sha256 = hash_token(token)
        team.token_expires_s = None if spec.expires_s is None else clock() + spec.expires_s
        return team_view(team) | {"token": token}

    def a_team(db: Session, name: str) -> Team:
        team = db.get(Team, name)
        if team is None or team.role != TEAM:
            raise HTTPException(404, f"no team '{name}'")
        return team

    @router.post("/v1/teams/{name}/rotate")
    async def rotate(name: str, who: Caller, db: Db, spec: TokenSpec | None = None) -> dict[str, Any]:
        """A new token for the team, shown once; the old one stops working now."""
        require(who, ADMIN)
        return issue_token(a_team(db, name), spec or TokenSpec())

    @router.post("/v1/teams/{name}/revoke")
    async def revoke(name: str, who: Caller, db: Db) -> dict[str, Any]:
        """The team's token stops working now (its jobs run on); `rotate` gives a new one."""
        require(who, ADMIN)
        team = a_team(db, name)
        team.token_sha256 = hash_token(new_token())  # (a token no one was ever given)
        team.token_expires_s = clock()
        return team_view(team)

    return router
