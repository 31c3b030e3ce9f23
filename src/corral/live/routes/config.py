"""The cluster's configuration and history: the admin changes queues, cohorts and the
policy while it runs, and exports the fleet and the ended jobs for the simulator."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from corral.errors import InputError
from corral.fleet import fleet_from_text
from corral.live.api import ADMIN, Body, Caller, Db, require, unprocessable
from corral.live.db import DOWN, ENDED, Job, Meta, Node, Window
from corral.live.reconciler import Config
from corral.live.routes.common import Context
from corral.scheduling.registry import make_policy


class ConfigSpec(Body):
    """A fleet TOML (its queues and cohorts apply; hosts come from the agents), a policy, or
    both."""

    fleet_toml: str | None = Field(None, max_length=1_000_000)
    policy: str | None = Field(None, min_length=1, max_length=200)


def config_routes(ctx: Context) -> APIRouter:
    router = APIRouter()
    config = ctx.config

    @router.get("/v1/history")
    async def history(who: Caller, db: Db) -> dict[str, Any]:
        """Ended jobs as the simulator's job table reads them (duration: the time they held
        GPUs), and those left out because they never ran."""
        require(who, ADMIN)
        rows, never_ran = [], []
        ended = list(db.scalars(select(Job).where(Job.state.in_(ENDED)).order_by(Job.submit_s, Job.id)))
        ran = {job.job_id for job in ended if job.run_s > 0}
        for job in ended:
            if job.run_s <= 0:
                never_ran.append(job.job_id)
                continue
            after = [dep for dep in job.after or () if dep.partition(":")[0] in ran]
            rows.append(
                {
                    "job_id": job.job_id,
                    "submit_s": job.submit_s,
                    "gpus": job.gpus,
                    "duration_s": job.run_s,
                    "queue": job.queue,
                    "user": job.team,
                    "priority": job.priority,
                    "preemptible": job.preemptible,
                    "estimate_s": job.estimate_s,
                    "state": job.state,
                    # (dependencies on jobs that never ran are left out with them)
                    "after": after,
                    "array_job": None if job.array_job is None else str(job.array_job),
                    "array_limit": job.array_limit,
                }
            )
        return {"jobs": rows, "never_ran": never_ran}

    @router.get("/v1/fleet", response_class=PlainTextResponse)
    async def fleet_toml(who: Caller, db: Db) -> str:
        """The live fleet as a fleet TOML the simulator reads: a pool per pool, its hosts
        and their GPUs, the queues and cohorts of the configuration, and the reservations."""
        require(who, ADMIN)
        pools: dict[str, list[int]] = {}
        names: dict[str, list[str]] = {}
        for node in db.scalars(select(Node).where(Node.state != DOWN).order_by(Node.name)):
            pools.setdefault(node.pool, []).append(node.gpus)
            names.setdefault(node.pool, []).append(node.name)
        return fleet_text(pools, config) + windows_text(db, names, ctx.loop.held_nodes)

    @router.put("/v1/config")
    async def set_config(spec: ConfigSpec, who: Caller, db: Db) -> dict[str, Any]:
        """Queues, quotas, cohorts and the policy, changed while the cluster runs: the
        reconciler is rebuilt from the database with them at its next step, running jobs
        adopted, waiting ones queued again under the new rules."""
        require(who, ADMIN)
        policy = spec.policy or config.policy
        try:
            # (a change changes only what it names: a policy alone keeps the queues)
            new = (
                Config.from_fleet(fleet_from_text(spec.fleet_toml, hosts_optional=True), policy)
                if spec.fleet_toml
                else config
            )
            make_policy(policy)  # (a name it knows, with settings it takes)
        except InputError as err:
            raise unprocessable("fleet_toml" if err.field != "policy" else "policy", str(err)) from None
        note = db.get(Meta, "decided_s")
        if note is not None:  # (the next reconciler passes every pool under the new rules)
            db.delete(note)
        with ctx.loop.lock:
            config.policy, config.queues, config.cohorts = policy, new.queues, new.cohorts
            config.default_cohort = new.default_cohort
            ctx.loop.rebuild(f"the configuration changed (policy {policy})")
        return {"policy": config.policy, "queues": [q.name for q in config.queues]}

    return router


def windows_text(db: Session, names: dict[str, list[str]], held: Callable[[str], list[str] | None]) -> str:
    """The reservations as a fleet file's [[reservations]], on the hosts they hold now (by
    number in their pool, as `fleet_text` lists them), their times from the first
    submission of `corral history` (its first ended job that ran); one over before then,
    or on no host up, is left out, saying so."""
    first = db.scalar(
        select(Job.submit_s)
        .where(Job.state.in_(ENDED), Job.run_s > 0)
        .order_by(Job.submit_s, Job.id)
        .limit(1)
    )
    origin = first or 0.0
    lines = []
    for row in db.scalars(select(Window).order_by(Window.start_s, Window.id)):
        hosts = [names[row.pool].index(n) for n in held(row.name) or () if n in names.get(row.pool, ())]
        if row.end_s <= origin or not hosts:
            why = "over before the first job" if hosts else "on no host up"
            lines += [
                "",
                f"# left out: reservation {row.name} ({why})",
            ]
            continue
        start = max(row.start_s, origin)
        lines += [
            "",
            "[[reservations]]",
            f"name = {json.dumps(row.name)}",
            f"start_s = {start - origin:g}",
            f"duration_s = {row.end_s - start:g}",
            f"pool = {json.dumps(row.pool)}",
            f"hosts = {json.dumps(hosts)}",
            f"queue = {json.dumps(row.queue)}" if row.queue is not None else "maintenance = true",
            f"notice_s = {row.notice_s:g}",
        ]
    return "\n".join(lines) + "\n" if lines else ""


def fleet_text(pools: dict[str, list[int]], config: Config) -> str:
    """A fleet file (see the README's format) for `pools` (name -> GPUs of each host)."""

    def value(v: Any) -> str:
        return json.dumps(v) if isinstance(v, str) else f"{v:g}" if isinstance(v, float) else str(v)

    lines = ['name = "live"']
    for name, sizes in sorted(pools.items()):
        lines += [
            "",
            "[[pools]]",
            f"name = {value(name)}",
            f"hosts = {len(sizes)}",
            f"gpus_per_host = {max(sizes)}",
        ]
        lines += ["hosts_per_rack = 1", "racks_per_pod = 1"]
    for kind, specs in (("cohorts", config.cohorts), ("queues", config.queues)):
        for spec in specs:
            lines += ["", f"[[{kind}]]"]
            lines += [f"{k} = {value(v)}" for k, v in vars(spec).items() if v is not None]
    return "\n".join(lines) + "\n"
