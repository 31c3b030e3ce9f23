"""corral up, serve and agent (the live cluster), and the client: submit, jobs, cancel, logs,
nodes, quota, team. The client reads CORRAL_SERVER and CORRAL_TOKEN (or --server, --token)."""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from corral.cli.app import app
from corral.cli.common import write_text
from corral.config import parse_duration_s
from corral.errors import InputError, install_hint
from corral.live.logs import checked
from corral.report import tables
from corral.report.terminal import AsJson, console, errors, input_errors

# A job's command comes after corral's options (after `--`, or from its first word that is not
# an option): an option corral does not know before it is refused, never run as the command.
COMMAND_AFTER_OPTIONS = {"allow_extra_args": True, "allow_interspersed_args": False}
Server = Annotated[str | None, typer.Option(envvar="CORRAL_SERVER", help="The server's URL.")]
Token = Annotated[str | None, typer.Option(envvar="CORRAL_TOKEN", help="Your team's (or the admin's) token.")]


def _server_parts() -> Any:
    try:
        import uvicorn

        from corral.live import db, server
    except ImportError as err:
        raise InputError(
            f"the live cluster needs the server extra ({err.name} is missing): {install_hint('server')}"
        ) from None
    return uvicorn, db, server


def _setup(
    data_dir: Path,
    database: str | None,
    policy: str,
    fleet: str | None,
    broker: Any = None,
    fence: str = "60s",
) -> tuple[Any, Any, Any]:
    """The database (migrated) and the configuration of a cluster kept in `data_dir` (made
    and absolute, `_data_dir`)."""
    _, db, _ = _server_parts()
    from corral.fleet import load_fleet
    from corral.live.reconciler import Config
    from corral.scheduling.registry import make_policy

    make_policy(policy)  # (an unknown policy is refused before anything starts)
    fence_s = parse_duration_s(fence, "fence")
    if not 1.0 <= fence_s <= 86_400.0:
        raise InputError(f"--fence must be between 1s and 1d, not '{fence}'", field="fence")
    url = database or os.environ.get("CORRAL_DB") or db.sqlite_url(data_dir / "corral.db")
    engine = _database(db, url)
    config = Config.from_fleet(load_fleet(fleet, hosts_optional=True) if fleet else None, policy)
    config.broker, config.fence_s = broker, fence_s
    return engine, config, url


def _data_dir(data_dir: Path) -> Path:
    """`data_dir` made if need be, as an absolute path (jobs and agents run elsewhere)."""
    data_dir = data_dir.expanduser().absolute()
    if data_dir.exists() and not data_dir.is_dir():
        raise InputError(f"{data_dir} is a file; --data-dir names a folder", field="data_dir")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot make {data_dir}: {err.strerror}", field="data_dir") from None
    return data_dir


def _database(db: Any, url: str) -> Any:
    """The database at `url`, reached and migrated, or one line saying why not."""
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

    shown = url.split("@")[-1] if "@" in url else url  # (no password on the screen)
    try:
        engine = db.connect(url)
    except (ArgumentError, NoSuchModuleError, ValueError) as err:
        raise InputError(
            f"--db '{shown}' is not a database URL corral takes (sqlite:///PATH or "
            f"postgresql://USER@HOST:PORT/NAME): {err}".splitlines()[0],
            field="db",
        ) from None
    try:
        db.migrate(engine)
    except OperationalError as err:
        why = str(err.orig).strip().splitlines()[0] if err.orig is not None else str(err).splitlines()[0]
        raise InputError(f"cannot reach the database at '{shown}': {why}", field="db") from None
    return engine


def _broker(kind: str | None, step: str, day: str) -> Any:
    """The services' broker a cluster runs (None: services keep what they are given). Its
    notice (2 minutes) and lending horizon (3 hours) are times of the demand's day, so a day
    replayed faster shortens them alike."""
    if kind is None:
        return None
    from corral.capacity.broker import Broker
    from corral.live.services import BrokerConfig

    Broker(kind)  # (an unknown kind is refused before anything starts)
    step_s, day_s = parse_duration_s(step, "broker-step"), parse_duration_s(day, "day")
    if not step_s > 0 or not day_s > 0:
        raise InputError("--broker-step and --day must be longer than 0", field="broker-step")
    scale = day_s / 86400.0
    return BrokerConfig(
        kind, step_s=step_s, day_s=day_s, notice_s=120.0 * scale, lend_horizon_s=3 * 3600.0 * scale
    )


def _serve(
    engine: Any, config: Any, data_dir: Path, port: int, on_ready: Any, log_settings: tuple[str, str]
) -> None:
    """Run the API on 127.0.0.1:`port` until SIGTERM or SIGINT; `on_ready(url)` once it
    answers. The server's log goes to DATA_DIR/server.log (`log_settings`: level and format)."""
    uvicorn, _, server = _server_parts()
    from corral.live.logs import log_to, stop_logging

    handler = log_to(data_dir, *log_settings)
    try:
        _serve_until_stopped(uvicorn, server.create_app(engine, config, data_dir), port, on_ready)
    finally:
        stop_logging(handler)


def _serve_until_stopped(uvicorn: Any, api: Any, port: int, on_ready: Any) -> None:
    web = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning"))
    web.install_signal_handlers = lambda: None  # (ours below stop the agent too)
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    while not web.started:
        if not thread.is_alive():
            raise InputError(f"could not serve on 127.0.0.1:{port} (in use?)", field="port")
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    on_ready(url, done)
    done.wait()
    web.should_exit = True
    thread.join(timeout=10)


ServerPort = Annotated[
    int, typer.Option(min=1, max=65535, envvar="CORRAL_PORT", help="Port on 127.0.0.1 (CORRAL_PORT).")
]
Policy = Annotated[str, typer.Option(help="The scheduling policy (the simulator's names).")]
FleetFile = Annotated[str | None, typer.Option("--fleet", help="Fleet TOML with queues and cohorts.")]
Database = Annotated[
    str | None, typer.Option("--db", help="Database URL (default: SQLite in --data-dir; CORRAL_DB).")
]
NewTokens = Annotated[
    bool, typer.Option("--new-tokens", help="Issue new admin and node tokens; the old stop working.")
]
BrokerKind = Annotated[
    str | None,
    typer.Option(
        "--broker", help="Scale services with demand: static, reactive or predictive (docs/capacity.md)."
    ),
]
BrokerStep = Annotated[str, typer.Option("--broker-step", help="How often the broker decides.")]
Day = Annotated[
    str, typer.Option("--day", help="The length of the demand's day (shorter to replay one faster).")
]
LogLevel = Annotated[
    str, typer.Option("--log-level", help="What DATA_DIR/server.log keeps: debug, info, warning or error.")
]
LogFormat = Annotated[
    str, typer.Option("--log-format", help="DATA_DIR/server.log as text or as JSON lines (json).")
]
Fence = Annotated[
    str,
    typer.Option(
        "--fence",
        help="A node's lease: its jobs stop this long after it last reached the server, and "
        "a silent node's jobs are given away only after it and their grace.",
    ),
]


@app.command()
def up(
    data_dir: Annotated[Path, typer.Option(help="Where the cluster keeps its database, logs and jobs.")],
    gpus: Annotated[
        int | None, typer.Option(min=1, max=1024, help="Fake GPUs for this machine's agent.")
    ] = None,
    port: ServerPort = 8765,
    policy: Policy = "fifo",
    fleet: FleetFile = None,
    database: Database = None,
    new_tokens: NewTokens = False,
    broker: BrokerKind = None,
    broker_step: BrokerStep = "300s",
    day: Day = "24h",
    fence: Fence = "60s",
    log_level: LogLevel = "info",
    log_format: LogFormat = "text",
) -> None:
    """A whole cluster on this machine: the server and an agent with its GPUs (or --gpus N
    fake ones). Writes DATA_DIR/env with CORRAL_SERVER and CORRAL_TOKEN once ready; run
    again on the same folder, it resumes the same cluster, with the same tokens, and
    re-adopts running jobs."""
    from corral.live.agent import Agent, gpu_count

    with input_errors():
        count = gpus or gpu_count()
        if count < 1:
            raise InputError("no GPUs found here: give --gpus N for fake ones", field="gpus")
        data_dir = _data_dir(data_dir)  # (absolute: the jobs' checkpoint folders are under it)
        log_settings = checked(log_level, log_format)
        engine, config, _ = _setup(
            data_dir, database, policy, fleet, _broker(broker, broker_step, day), fence
        )
        _, _, server = _server_parts()
        admin, node = server.kept_tokens(engine, data_dir / "tokens.json", new_tokens)

        def ready(url: str, done: threading.Event) -> None:
            agent = Agent(url, node, data_dir / "agent", count, name="local", real_gpus=not gpus)
            threading.Thread(target=agent.run, kwargs={"stop": done.is_set}, daemon=True).start()
            env = data_dir / "env"
            write_text(env, f"CORRAL_SERVER={url}\nCORRAL_TOKEN={admin}\n", mode=0o600)
            console.print(f"corral is up at {url} with {count} GPUs ({policy}); admin token in {env}")

        _serve(engine, config, data_dir, port, ready, log_settings)


@app.command()
def serve(
    data_dir: Annotated[Path, typer.Option(help="Where the server keeps its database and logs.")],
    port: ServerPort = 8765,
    policy: Policy = "fifo",
    fleet: FleetFile = None,
    database: Database = None,
    new_tokens: NewTokens = False,
    executor: Annotated[
        str, typer.Option(help="Who runs the jobs: 'agents' (corral agent on each node) or 'ray'.")
    ] = "agents",
    ray_address: Annotated[str, typer.Option(help="The Ray cluster (with --executor ray).")] = "auto",
    ray_work_dir: Annotated[
        Path, typer.Option(help="Where each Ray node keeps its ranks' folders and checkpoints.")
    ] = Path("/tmp/corral-ray"),
    broker: BrokerKind = None,
    broker_step: BrokerStep = "300s",
    day: Day = "24h",
    fence: Fence = "60s",
    log_level: LogLevel = "info",
    log_format: LogFormat = "text",
) -> None:
    """The server alone; agents join with `corral agent`, or with --executor ray the nodes of
    a Ray cluster run the jobs. Prints the admin and node tokens, the same on a restart
    (DATA_DIR/tokens.json) unless --new-tokens."""
    with input_errors():
        if executor not in ("agents", "ray"):
            raise InputError(f"executor must be 'agents' or 'ray', not '{executor}'", field="executor")
        data_dir = _data_dir(data_dir)  # (absolute: the jobs' checkpoint folders are under it)
        log_settings = checked(log_level, log_format)
        engine, config, _ = _setup(
            data_dir, database, policy, fleet, _broker(broker, broker_step, day), fence
        )
        _, _, server = _server_parts()
        admin, node = server.kept_tokens(engine, data_dir / "tokens.json", new_tokens)
        runner = (
            _ray_executor(f"http://127.0.0.1:{port}", node, ray_address, ray_work_dir)
            if executor == "ray"
            else None
        )

        def ready(url: str, done: threading.Event) -> None:
            console.print(f"corral serves {url}\nadmin token: {admin}\nnode token: {node}")
            if runner is not None:
                threading.Thread(target=runner.run, kwargs={"stop": done.is_set}, daemon=True).start()
                console.print(f"jobs run on the Ray cluster at {ray_address}")

        _serve(engine, config, data_dir, port, ready, log_settings)


def _ray_executor(url: str, node_token: str, address: str, work_dir: Path) -> Any:
    """The Ray executor, connected to its cluster (a clear error if it cannot be)."""
    try:
        from corral.live.ray_executor import RayExecutor
    except ImportError as err:
        raise InputError(
            f"--executor ray needs the ray extra ({err.name} is missing): {install_hint('ray')}",
            field="executor",
        ) from None
    host, _, port = address.rpartition(":")
    if address != "auto" and not address.startswith("ray://"):
        if not host or not port.isdigit():
            raise InputError(
                f"--ray-address must be 'auto' or HOST:PORT, not '{address}'", field="ray_address"
            )
        try:  # (Ray itself would retry an address with nothing behind it for minutes)
            socket.create_connection((host, int(port)), timeout=3).close()
        except OSError as err:
            raise InputError(
                f"cannot reach the Ray cluster at '{address}': {err}", field="ray_address"
            ) from None
    try:
        return RayExecutor(url, node_token, work_dir, address=address)
    except (ConnectionError, ValueError, RuntimeError) as err:  # (unreachable, or not an address)
        raise InputError(f"cannot reach the Ray cluster at '{address}': {err}", field="ray_address") from None


@app.command()
def agent(
    server: Annotated[str, typer.Option(help="The server's URL.")],
    token: Annotated[str, typer.Option(help="The node token `corral serve` printed.")],
    data_dir: Annotated[Path, typer.Option(help="Where the agent keeps its attempts.")],
    gpus: Annotated[int | None, typer.Option(min=1, max=1024, help="Fake GPUs (default: NVML's).")] = None,
    name: Annotated[str | None, typer.Option(help="The node's name (default: the host name).")] = None,
    pool: Annotated[str, typer.Option(help="The pool this node serves.")] = "default",
) -> None:
    """Run this machine's jobs for the server. While the server cannot be reached it tries
    again, backing off; its jobs run on until the node's lease runs out."""
    from corral.live.agent import Agent, gpu_count

    with input_errors():
        count = gpus or gpu_count()
        if count < 1:
            raise InputError("no GPUs found here: give --gpus N for fake ones", field="gpus")
        _client(server, token)  # (a URL or token that cannot be used is refused now)
        data_dir = _data_dir(data_dir)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    Agent(server, token, data_dir, count, name=name, pool=pool, real_gpus=not gpus).run(stop=done.is_set)


# --- the client ------------------------------------------------------------------------


def _client(server: str | None, token: str | None) -> Any:
    if not server:
        raise InputError("give --server, or set CORRAL_SERVER", field="server")
    if not token:
        raise InputError("give --token, or set CORRAL_TOKEN", field="token")
    if not token.isascii() or not token.isprintable():
        raise InputError("the token has characters no corral token has (printable ASCII only)", field="token")
    import httpx

    try:
        url = httpx.URL(server)
    except (httpx.InvalidURL, ValueError) as err:
        raise InputError(f"'{server}' is not a URL: {err}", field="server") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise InputError(f"'{server}' is not an http:// or https:// URL", field="server")
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10.0)


def _call(server: str | None, token: str | None, method: str, path: str, **kwargs: Any) -> Any:
    """The server's answer (JSON, or the text of a text route), or its complaint as an
    input error (exit 2)."""
    import httpx

    try:
        response = _client(server, token).request(method, path, **kwargs)
    except httpx.HTTPError as err:
        raise InputError(f"cannot reach the server at {server}: {err}", field="server") from None
    kind = response.headers.get("content-type", "")
    if not kind.startswith(("application/json", "text/plain")):
        raise InputError(
            f"{server} answered {response.status_code} with {kind or 'no content type'}: "
            "is it a corral server?",
            field="server",
        )
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text
        if isinstance(detail, list):
            detail = "; ".join(
                f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail
            )
        raise InputError(f"{response.status_code}: {detail}")
    return (
        response.json()
        if response.headers.get("content-type", "").startswith("application/json")
        else response.text
    )


@app.command(context_settings=COMMAND_AFTER_OPTIONS)
def submit(
    ctx: typer.Context,
    gpus: Annotated[int, typer.Option(help="GPUs the job needs.")],
    queue: Annotated[str, typer.Option(help="The queue (your team's).")] = "default",
    priority: Annotated[int, typer.Option(help="Higher goes first (and may preempt, by policy).")] = 0,
    preemptible: Annotated[
        bool, typer.Option("--preemptible/--not-preemptible", help="May be stopped.")
    ] = True,
    estimate: Annotated[
        str | None, typer.Option(help="How long it runs (2h): backfill, sjf, srtf and ftf read it.")
    ] = None,
    grace: Annotated[str, typer.Option(help="SIGTERM to SIGKILL when stopped (30s).")] = "30s",
    name: Annotated[str, typer.Option(help="A name to recognise it by.")] = "",
    min_gpus: Annotated[int | None, typer.Option(help="Elastic: the fewest GPUs it runs on.")] = None,
    max_gpus: Annotated[int | None, typer.Option(help="Elastic: the most GPUs it runs on.")] = None,
    step_gpus: Annotated[
        int | None, typer.Option(help="Elastic: GPUs per data-parallel replica (default: --min-gpus).")
    ] = None,
    scaling: Annotated[
        float | None, typer.Option(help="Elastic: throughput ~ GPUs ** scaling (default 1: linear).")
    ] = None,
    chdir: Annotated[
        Path | None, typer.Option(help="Where its processes start (default: this folder).")
    ] = None,
    array: Annotated[
        str | None,
        typer.Option(help="One job per index, as Slurm's: 0-99%8 runs at most 8 at once; 1,3,5-7; 0-15:4."),
    ] = None,
    image: Annotated[
        str | None, typer.Option(help="Run each rank in this container image (podman or Docker on the node).")
    ] = None,
    mount: Annotated[
        list[str] | None, typer.Option(help="With --image: SRC:DST[:ro] to mount in the container; repeat.")
    ] = None,
    runtime: Annotated[
        str | None,
        typer.Option(help="With --image: podman or docker (default: the node's podman, else Docker)."),
    ] = None,
    after: Annotated[
        list[str] | None,
        typer.Option(
            help="Start only after JOB ends: JOB[:ok|any|notok] (ok if not said); repeat for several."
        ),
    ] = None,
    server: Server = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Queue a command: corral submit --gpus 8 --queue team-a -- python train.py ...
    An elastic job (--min-gpus/--max-gpus) is resized by a policy with +elastic: it gets
    SIGTERM, checkpoints, and its ranks start again with the new WORLD_SIZE. An array's
    tasks see CORRAL_ARRAY_JOB_ID and CORRAL_ARRAY_TASK_ID; a job whose dependency can no
    longer be met is cancelled, saying which."""
    from corral.state.gates import parse_after, parse_array

    with input_errors():
        command = list(ctx.args)
        if array is not None:
            try:
                parse_array(array)
            except ValueError as err:
                raise InputError(f"--array {array}: {err}", field="array") from None
        for text in after or ():
            for job, _ in parse_after(text):
                if not job.replace("_", "", 1).isdigit():
                    raise InputError(
                        f"--after {text}: '{job}' is not a job id (as 12, or 12_3)", field="after"
                    )
        if scaling is not None and not 0 < scaling <= 1:
            raise InputError(f"--scaling must be in (0, 1], not {scaling}", field="scaling")
        if not command:
            raise InputError(
                "give the command after --: corral submit --gpus 1 -- python train.py", field="command"
            )
        body = {
            "gpus": gpus,
            "queue": queue,
            "priority": priority,
            "preemptible": preemptible,
            "estimate_s": None if estimate is None else parse_duration_s(estimate, "estimate"),
            "grace_s": parse_duration_s(grace, "grace"),
            "name": name,
            "command": command,
            "workdir": str((chdir or Path.cwd()).expanduser().absolute()),
            "user": getpass.getuser(),
            "after": [f"{job}:{kind}" for text in after or () for job, kind in parse_after(text)],
        }
        if array is not None:
            body["array"] = array
        if (mount or runtime) and image is None:
            raise InputError("--mount and --runtime are for a job that runs in an --image", field="image")
        if image is not None:
            body |= {"image": image, "mounts": [_mount(m) for m in mount or ()], "runtime": runtime}
        elastic = {"min_gpus": min_gpus, "max_gpus": max_gpus, "step_gpus": step_gpus, "scaling": scaling}
        body |= {k: v for k, v in elastic.items() if v is not None}
        out = _call(server, token, "POST", "/v1/jobs", json=body)
    if as_json:
        print(json.dumps(out))
    elif out.get("array_job_id") is not None:
        console.print(f"submitted array {out['array_job_id']} ({out['tasks']} tasks)")
    else:
        console.print(f"submitted job {out['job_id']}")


def _mount(text: str) -> str:
    """`--mount SRC:DST[:ro]` with SRC made absolute (it is on the nodes, as the submitter's
    folder is)."""
    source, _, rest = text.partition(":")
    if not source or not rest.startswith("/"):
        raise InputError(f"--mount {text}: give SRC:DST[:ro], DST an absolute path", field="mount")
    return f"{Path(source).expanduser().absolute()}:{rest}"


def _gpus(row: dict) -> str:
    """What a job holds now where an elastic one holds other than it asked."""
    held = row.get("held_gpus")
    return str(row["gpus"]) if held in (None, row["gpus"]) else f"{held} (asks {row['gpus']})"


@app.command()
def jobs(
    state: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    team: Annotated[str | None, typer.Option(help="Only this team's (admin).")] = None,
    queue: Annotated[str | None, typer.Option(help="Only this queue's.")] = None,
    user: Annotated[str | None, typer.Option(help="Only those this user submitted.")] = None,
    expand: Annotated[
        bool, typer.Option("--expand", "-e", help="An array's tasks one per line (folded by default).")
    ] = False,
    forecast: Annotated[
        bool,
        typer.Option(
            "--forecast", help="When each pending job is expected to start (the simulator, run on)."
        ),
    ] = False,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Show the table again every 2 s until Ctrl-C.")
    ] = False,
    server: Server = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """The jobs you may see: yours, or every team's for the admin; times in local time. An
    array is one line (its tasks counted by state) unless --expand; --json lists each task."""
    asked = (("state", state), ("team", team), ("queue", queue), ("user", user))
    params: dict[str, Any] = {k: v for k, v in asked if v is not None}
    if forecast:
        params["forecast"] = "true"
    with input_errors():
        rows = _call(server, token, "GET", "/v1/jobs", params=params)
        if as_json:
            print(json.dumps(rows))
            return
        if not watch:
            console.print(jobs_table(rows, expand))
            return
        from rich.live import Live

        with (
            Live(jobs_table(rows, expand), console=console, auto_refresh=False) as live,
            contextlib.suppress(KeyboardInterrupt),
        ):
            while True:
                time.sleep(WATCH_S)
                rows = _call(server, token, "GET", "/v1/jobs", params=params)
                live.update(jobs_table(rows, expand), refresh=True)


WATCH_S = 2.0
STATE_STYLES = {
    "pending": "yellow",
    "running": "cyan",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "dim",
}


def _expected(row: dict[str, Any]) -> str:
    if "forecast_start_s" not in row:
        return ""
    at_s = row["forecast_start_s"]
    return "not expected" if at_s is None else tables.clock_time(at_s)


def fold_arrays(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An array's tasks as one row, where its first task stood: `12_[0-99%8]`, its state
    the tasks counted by state, its times the first submission and start and the last end
    (while every task has ended), its time run the tasks' sum."""
    tasks: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("array_job_id") is not None:
            tasks.setdefault(r["array_job_id"], []).append(r)
    out = []
    for r in rows:
        array = r.get("array_job_id")
        if array is None:
            out.append(r)
            continue
        group = tasks.pop(array, None)
        if group is None:
            continue
        counts: dict[str, int] = {}
        for t in group:
            counts[t["state"]] = counts.get(t["state"], 0) + 1
        ids = [t["array_task_id"] for t in group]
        span = f"{min(ids)}-{max(ids)}" if len(ids) > 1 else str(ids[0])
        limit = f"%{r['array_limit']}" if r.get("array_limit") else ""
        starts = [t["first_start_s"] for t in group if t.get("first_start_s") is not None]
        ended = all(t["end_s"] is not None for t in group)
        out.append(
            r
            | {
                "job_id": f"{array}_[{span}{limit}]",
                "state": " ".join(f"{n} {state}" for state, n in counts.items()),
                "states": counts,
                "exit_code": None,
                "first_start_s": min(starts, default=None),
                "end_s": max(t["end_s"] for t in group) if ended else None,
                "ran_s": sum(t["ran_s"] or 0.0 for t in group),
            }
        )
    return out


def jobs_table(rows: list[dict[str, Any]], expand: bool = False) -> Any:
    """Jobs as people read them: when each was submitted, started and ended (local time),
    how long it waited before its first start (or has waited, pending) and how long it ran;
    an array on one line unless `expand`."""
    from rich.text import Text

    table = tables.Table(title="jobs", title_justify="left")
    columns = ("job", "name", "team", "queue", "GPUs", "state", "exit", "submitted", "started", "ended")
    for column in (*columns, "waited", "ran"):
        table.add_column(column, justify="right" if column in ("GPUs", "exit", "waited", "ran") else "left")
    forecast = any("forecast_start_s" in r for r in rows)
    if forecast:
        table.add_column("expected start")
    now = time.time()
    if expand:
        rows = [
            r | {"job_id": f"{r['array_job_id']}_{r['array_task_id']}"} if r.get("array_job_id") else r
            for r in rows
        ]
    else:
        rows = fold_arrays(rows)
    for r in rows:
        started = r.get("first_start_s")
        waited = (started if started is not None else r["end_s"] or now) - r["submit_s"]
        table.add_row(
            r["job_id"], r["name"], r["team"], r["queue"], _gpus(r),
            Text(r["state"], style=STATE_STYLES.get(r["state"], "")) if "states" not in r else Text(" ").join(
                Text(f"{n} {state}", style=STATE_STYLES.get(state, "")) for state, n in r["states"].items()
            ),
            "" if r["exit_code"] is None else str(r["exit_code"]),
            tables.clock_time(r["submit_s"]),
            "" if started is None else tables.clock_time(started),
            "" if r["end_s"] is None else tables.clock_time(r["end_s"]),
            tables.duration(max(0.0, waited)), tables.duration(r["ran_s"]) if started is not None else "",
            *([_expected(r)] if forecast else []),
        )  # fmt: skip
    return table


@app.command()
def cancel(
    job: Annotated[str, typer.Argument(help="The job id; an array's id (all its tasks), or ARRAY_TASK.")],
    server: Server = None,
    token: Token = None,
) -> None:
    """Cancel a job: a pending one never starts, a running one gets SIGTERM, then SIGKILL.
    An array's id cancels every task of it not yet ended; 12_3 cancels task 3 of array 12."""
    with input_errors():
        out = _call(server, token, "POST", f"/v1/jobs/{job}/cancel")
    tasks = out.get("cancelled_tasks")
    console.print(f"cancelling array {job} ({tasks} tasks)" if tasks is not None else f"cancelling job {job}")


ENDED_STATES = ("succeeded", "failed", "cancelled")
POLL_S = 1.0  # how often `wait` and `logs -f` ask the server


@app.command()
def wait(
    jobs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Job ids, an array's id, ARRAY_TASK (none: every job of yours pending or running now)."
        ),
    ] = None,
    timeout: Annotated[str, typer.Option(help="Give up after this long (exit 1).")] = "1h",
    server: Server = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Wait until the jobs have ended, for scripts (as sbatch --wait): exit 0 if every one
    succeeded, 1 if one failed or was cancelled, or if the time ran out. An array's id
    waits for every task of it."""
    with input_errors():
        timeout_s = parse_duration_s(timeout, "timeout")
        if not timeout_s > 0:
            raise InputError(f"--timeout must be longer than 0, not '{timeout}'", field="timeout")
        if not jobs:
            live = _call(server, token, "GET", "/v1/jobs")
            jobs = [j["job_id"] for j in live if j["state"] not in ENDED_STATES]
        states = {}
        for job in jobs:
            row = _call(server, token, "GET", f"/v1/jobs/{job}")
            if row.get("array_job_id") == job:  # (an array's id: every task of it)
                tasks = _call(server, token, "GET", "/v1/jobs", params={"array": job})
                states |= {f"{job}_{t['array_task_id']}": t["state"] for t in tasks}
            else:
                states[job] = row["state"]
        until = time.monotonic() + timeout_s
        with console.status(f"waiting for {len(jobs)} jobs") as status:
            while any(s not in ENDED_STATES for s in states.values()) and time.monotonic() < until:
                time.sleep(POLL_S)
                for job, state in states.items():
                    if state not in ENDED_STATES:
                        states[job] = _call(server, token, "GET", f"/v1/jobs/{job}")["state"]
                left = sum(s not in ENDED_STATES for s in states.values())
                status.update(f"waiting for {left} of {len(jobs)} jobs")
    if as_json:
        print(json.dumps(states))
    else:
        for job, state in states.items():
            console.print(f"job {job}: {state}")
    if any(s != "succeeded" for s in states.values()):
        raise typer.Exit(1)


@app.command()
def logs(
    job: Annotated[str, typer.Argument(help="The job id.")],
    attempt: Annotated[
        int | None,
        typer.Option(min=1, help="Its Nth attempt, counted from 1 as CORRAL_ATTEMPT (default: the latest)."),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Keep printing until the job ends; exit with its exit code."),
    ] = False,
    server: Server = None,
    token: Token = None,
) -> None:
    """The output of a job's attempt. With -f, the latest attempt's as it is written (a new
    attempt's, after a preemption, follows a line that says so) until the job ends; then
    exit with its exit code (1 if it was cancelled, 128 + N if signal N killed it)."""
    with input_errors():
        detail = _call(server, token, "GET", f"/v1/jobs/{job}")
        numbers = [a["number"] for a in detail["attempts"]]
        if attempt is not None and attempt not in numbers:
            had = f"it has 1 to {max(numbers)}" if numbers else "it has not started yet"
            raise InputError(f"job {job} has no attempt {attempt} ({had})", field="attempt")
        shown = attempt or (numbers[-1] if numbers else None)
        offset = 0

        def show() -> None:
            """What attempt `shown` wrote since `offset`, printed."""
            nonlocal offset
            text = _call(
                server, token, "GET", f"/v1/jobs/{job}/logs", params={"attempt": shown, "offset": offset}
            )
            print(text, end="", flush=True)
            offset += len(text.encode())

        while True:
            if shown is not None:
                show()
            if not follow:
                return
            ended = detail["state"] in ENDED_STATES
            latest = max((a["number"] for a in detail["attempts"]), default=None)
            if attempt is None and latest is not None and latest != shown:
                if shown is not None:  # (what the last one wrote since, then the next one's)
                    show()
                    errors.print(f"(attempt {latest} of job {job} follows)")
                shown, offset = latest, 0
                continue
            if ended:
                break
            time.sleep(POLL_S)
            detail = _call(server, token, "GET", f"/v1/jobs/{job}")
    raise typer.Exit(exit_status(detail))


def exit_status(job: dict[str, Any]) -> int:
    """A shell's exit status for an ended job: its code, 128 + N if signal N killed it, 1 if
    it was cancelled (or ended with no code)."""
    code = job.get("exit_code")
    if job["state"] == "succeeded":
        return 0
    if code is None or code == 0:
        return 1
    return 128 - code if code < 0 else min(code, 255)


@app.command()
def nodes(server: Server = None, token: Token = None, as_json: AsJson = False) -> None:
    """The nodes, their state and which GPUs are busy."""
    with input_errors():
        rows = _call(server, token, "GET", "/v1/nodes")
    if as_json:
        print(json.dumps(rows))
        return
    table = tables.Table(title="nodes", title_justify="left")
    for column in ("node", "pool", "GPUs", "state", "GPU map", "heartbeat"):
        table.add_column(column)
    for r in rows:
        busy = set(r["busy_gpus"])
        gpu_map = "".join("#" if g in busy else "." for g in range(r["gpus"]))
        table.add_row(
            r["name"], r["pool"], str(r["gpus"]), r["state"], gpu_map, tables.duration(r["heartbeat_age_s"])
        )
    console.print(table)


@app.command()
def quota(server: Server = None, token: Token = None, as_json: AsJson = False) -> None:
    """Each queue's quota and what its running jobs use."""
    with input_errors():
        rows = _call(server, token, "GET", "/v1/quota")
    if as_json:
        print(json.dumps(rows))
        return
    table = tables.Table(title="quota", title_justify="left")
    for column in ("queue", "cohort", "nominal GPUs", "used GPUs"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["queue"], r["cohort"] or "", f"{r['nominal_gpus']:g}", str(r["used_gpus"]))
    console.print(table)


@app.command()
def team(
    name: Annotated[str, typer.Argument(help="The team's name; or list, rotate NAME, revoke NAME.")],
    target: Annotated[str | None, typer.Argument(help="The team to rotate or revoke.")] = None,
    queue: Annotated[list[str] | None, typer.Option(help="A queue it may submit to; repeat.")] = None,
    expires: Annotated[str | None, typer.Option(help="The token stops working after this long (90d).")] = (
        None
    ),
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print the new token alone (A=$(corral team ... -q)).")
    ] = False,
    server: Server = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Teams (admin): `corral team NAME --queue Q` adds one and prints its token, shown once;
    `corral team list`; `corral team rotate NAME` gives it a new token (the old one stops
    working); `corral team revoke NAME` stops its token now."""
    with input_errors():
        expires_s = None if expires is None else parse_duration_s(expires, "expires")
        if name in ("rotate", "revoke") and target is None:
            raise InputError(f"corral team {name} NAME: which team?", field="name")
        if name not in ("rotate", "revoke", "list") and target is not None:
            raise InputError(f"unexpected '{target}': corral team NAME --queue Q", field="name")
        if name == "list":
            out = _call(server, token, "GET", "/v1/teams")
        elif name == "rotate":
            out = _call(server, token, "POST", f"/v1/teams/{target}/rotate", json={"expires_s": expires_s})
        elif name == "revoke":
            out = _call(server, token, "POST", f"/v1/teams/{target}/revoke")
        else:
            body = {"name": name, "queues": queue or [], "expires_s": expires_s}
            out = _call(server, token, "POST", "/v1/teams", json=body)
    if as_json:
        print(json.dumps(out))
    elif quiet and "token" in out:
        print(out["token"])
    elif name == "list":
        table = tables.Table(title="teams", title_justify="left")
        for column in ("team", "queues", "token expires"):
            table.add_column(column)
        for r in out:
            until = r["token_expires_s"]
            when = "never" if until is None else tables.clock_time(until)
            table.add_row(r["team"], ", ".join(r["queues"]) or "none", when)
        console.print(table)
    elif name == "revoke":
        console.print(f"team {out['team']}: token revoked")
    else:
        console.print(
            f"team {out['team']} (queues {', '.join(out['queues']) or 'none'}): token {out['token']}"
        )


@app.command()
def history(
    out: Annotated[Path, typer.Option(help="The job table to write (.csv, .csv.gz or .parquet).")],
    server: Server = None,
    token: Token = None,
) -> None:
    """The cluster's ended jobs as a job table `corral simulate --workload` replays (admin)."""
    import numpy as np

    from corral.report.outputs import check_output_table
    from corral.workload import JobTable, write_jobs

    with input_errors():
        check_output_table(out, "out")
        if not out.parent.is_dir():
            raise InputError(f"no folder {out.parent} to write {out.name} in", field="out")
        answer = _call(server, token, "GET", "/v1/history")
        rows = answer["jobs"]
        if not rows:
            raise InputError("no job has run to its end yet: nothing to write", field="out")
        table = JobTable(
            job_id=[r["job_id"] for r in rows],
            submit_s=np.array([r["submit_s"] for r in rows]) - rows[0]["submit_s"],
            gpus=np.array([r["gpus"] for r in rows], dtype=np.int64),
            duration_s=np.array([r["duration_s"] for r in rows]),
            queue=[r["queue"] for r in rows],
            user=[r["user"] for r in rows],
            kind=["experiment"] * len(rows),
            priority=np.array([r["priority"] for r in rows], dtype=np.int64),
            preemptible=np.array([r["preemptible"] for r in rows], dtype=bool),
            extra={
                "estimate_s": ["" if r["estimate_s"] is None else str(r["estimate_s"]) for r in rows],
                "state": [r["state"] for r in rows],
                "after": [" ".join(r["after"]) for r in rows],
                "array_job": [r["array_job"] or "" for r in rows],
                "array_limit": ["" if r["array_job"] is None else str(r["array_limit"] or 0) for r in rows],
            },
        )
        write_jobs(table, out)
    skipped = answer["never_ran"]
    left = f"; left out {len(skipped)} that never ran ({', '.join(skipped[:5])})" if skipped else ""
    console.print(f"wrote {len(rows):,} jobs to {out} (times from the first submission){left}")


@app.command("config")
def set_config(
    fleet: Annotated[Path | None, typer.Option(help="Fleet TOML whose queues and cohorts now apply.")] = None,
    policy: Annotated[str | None, typer.Option(help="The policy from now on.")] = None,
    server: Server = None,
    token: Token = None,
) -> None:
    """Change queues, quotas, cohorts or the policy of the running cluster (admin): no restart."""
    from corral.errors import reading

    with input_errors():
        if fleet is None and policy is None:
            raise InputError("give --fleet, --policy or both", field="fleet")
        text = None
        if fleet is not None:
            with reading(fleet):
                text = fleet.read_text(encoding="utf-8")
        out = _call(server, token, "PUT", "/v1/config", json={"fleet_toml": text, "policy": policy})
    console.print(f"policy {out['policy']}; queues {', '.join(out['queues']) or 'default'}")


def _node_action(
    action: str, node: str, server: str | None, token: str | None, deadline: str | None = None
) -> None:
    with input_errors():
        params = {} if deadline is None else {"deadline_s": parse_duration_s(deadline, "deadline")}
        out = _call(server, token, "POST", f"/v1/nodes/{node}/{action}", params=params)
    console.print(f"node {out['name']}: {out['state']}")


NodeName = Annotated[str, typer.Argument(help="The node's name (corral nodes).")]


@app.command()
def cordon(node: NodeName, server: Server = None, token: Token = None) -> None:
    """Start nothing new on a node; its jobs run on (admin)."""
    _node_action("cordon", node, server, token)


@app.command()
def drain(
    node: NodeName,
    deadline: Annotated[str | None, typer.Option(help="Stop what still runs after this long (30m).")] = None,
    server: Server = None,
    token: Token = None,
) -> None:
    """Start nothing new on a node, and stop its jobs (they save first) at the deadline (admin)."""
    _node_action("drain", node, server, token, deadline)


@app.command()
def uncordon(node: NodeName, server: Server = None, token: Token = None) -> None:
    """Put a cordoned or drained node back to work (admin)."""
    _node_action("uncordon", node, server, token)


def parse_when_s(text: str, now_s: float) -> float:
    """A moment as `corral reserve --start` takes it: now, +DURATION (from now), or a local
    date and time in ISO form (2026-12-24T08:00)."""
    import datetime as dt

    from corral.config import parse_duration_s

    text = text.strip()
    if text == "now":
        return now_s
    if text.startswith("+"):
        return now_s + parse_duration_s(text[1:], "start")
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise InputError(
            f"--start {text}: give now, +DURATION (+2h) or a date and time (2026-12-24T08:00)", field="start"
        ) from None


@app.command()
def reserve(
    start: Annotated[str, typer.Option(help="When: now, +2h, or 2026-12-24T08:00 (local time).")],
    duration: Annotated[str, typer.Option(help="How long (8h).")],
    gpus: Annotated[int | None, typer.Option(help="GPUs to hold (whole nodes, the pool's last).")] = None,
    nodes: Annotated[str | None, typer.Option(help="Nodes to hold, by name: n0,n1.")] = None,
    queue: Annotated[str | None, typer.Option(help="The queue it is for.")] = None,
    maintenance: Annotated[
        bool, typer.Option("--maintenance", help="Empty the nodes for maintenance.")
    ] = False,
    name: Annotated[str | None, typer.Option(help="A name for it (default: reservation-N).")] = None,
    pool: Annotated[str, typer.Option(help="The nodes' pool.")] = "default",
    notice: Annotated[
        str, typer.Option(help="From this long before the start, jobs that would run into it keep off.")
    ] = "24h",
    server: Server = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Hold GPUs for a queue, or empty nodes for maintenance, over a window (admin). Every
    policy plans around it: a job that would still run at the start (by its --estimate;
    one without never) keeps off the nodes from the notice on; inside the window only the
    queue's jobs run there (nobody's, for maintenance). At the start the jobs still there
    that may not be get SIGTERM, save and wait again; at the end the nodes are everyone's."""
    from corral.config import parse_duration_s

    with input_errors():
        if (gpus is None) == (nodes is None):
            raise InputError("give --gpus or --nodes (one of them)", field="gpus")
        if (queue is None) != maintenance:
            raise InputError("give --queue or --maintenance (one of them)", field="queue")
        body: dict[str, Any] = {
            "start_s": parse_when_s(start, time.time()),
            "duration_s": parse_duration_s(duration, "duration"),
            "notice_s": parse_duration_s(notice, "notice"),
            "pool": pool,
            "queue": queue,
            "maintenance": maintenance,
            "gpus": gpus or 0,
            "nodes": [n.strip() for n in (nodes or "").split(",") if n.strip()],
        }
        if name is not None:
            body["name"] = name
        out = _call(server, token, "POST", "/v1/reservations", json=body)
    if as_json:
        print(json.dumps(out))
        return
    what = f"queue {queue}" if queue is not None else "maintenance"
    held = f"{gpus} GPUs" if gpus else f"nodes {', '.join(body['nodes'])}"
    console.print(
        f"reservation {out['name']}: {held} of pool {pool} for {what}, "
        f"{tables.clock_time(out['start_s'])} to {tables.clock_time(out['end_s'])}"
    )


@app.command()
def reservations(
    cancel: Annotated[str | None, typer.Option(help="Delete this reservation (admin).")] = None,
    server: Server = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Reservations and maintenance windows: what each holds, for whom, when (local time)."""
    with input_errors():
        if cancel is not None:
            _call(server, token, "DELETE", f"/v1/reservations/{cancel}")
            console.print(f"deleted reservation {cancel}")
            return
        rows = _call(server, token, "GET", "/v1/reservations")
    if as_json:
        print(json.dumps(rows))
        return
    table = tables.Table(title="reservations", title_justify="left")
    for column in ("name", "for", "pool", "holds", "nodes now", "from", "to", "notice"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r["name"], "maintenance" if r["maintenance"] else f"queue {r['queue']}", r["pool"],
            f"{r['gpus']} GPUs" if r["gpus"] else ", ".join(r["nodes"]),
            ", ".join(r["held_nodes"] or ()) or "-",
            tables.clock_time(r["start_s"]), tables.clock_time(r["end_s"]), tables.duration(r["notice_s"]),
        )  # fmt: skip
    console.print(table)
