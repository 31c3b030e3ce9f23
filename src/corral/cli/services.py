"""corral service create|list|delete|demand, corral moves and corral proxy: services on the
live cluster, the broker's moves, and a service's stable endpoint."""

from __future__ import annotations

import json
import threading
from typing import Annotated

import typer

from corral.cli.app import app
from corral.cli.live import Server, Token, _call, _client
from corral.config import parse_duration_s
from corral.errors import InputError, install_hint
from corral.report import tables
from corral.report.terminal import AsJson, console, input_errors

service_app = typer.Typer(no_args_is_help=True, help="Services: replicas the broker scales with demand.")
app.add_typer(service_app, name="service")


# (its NAME comes before the options: the command is what follows `--`, and an option before
# it that corral does not know is refused)
@service_app.command("create", context_settings={"allow_extra_args": True})
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The service's name.")],
    replica_rps: Annotated[float, typer.Option(help="Requests/s one replica serves within its SLO.")],
    queue: Annotated[str, typer.Option(help="The queue its replicas run in.")] = "default",
    gpus_per_replica: Annotated[int, typer.Option(help="GPUs of one replica.")] = 1,
    min_replicas: Annotated[int, typer.Option(help="Never fewer.")] = 1,
    max_replicas: Annotated[int, typer.Option(help="Never more.")] = 100,
    startup: Annotated[str, typer.Option(help="How long a replica takes to be ready (60s).")] = "60s",
    slo_latency: Annotated[str, typer.Option(help="The latency target (1s).")] = "1s",
    slo_percentile: Annotated[float, typer.Option(help="Of requests within the target.")] = 0.99,
    metrics_path: Annotated[
        str | None, typer.Option(help="Read demand from the replicas' Prometheus metrics here (/metrics).")
    ] = None,
    metrics_counter: Annotated[str, typer.Option(help="The request counter there.")] = "requests_total",
    server: Server = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """A service: corral service create chat --replica-rps 5 -- python serve.py
    Each replica gets CORRAL_PORT to listen on and must answer GET /health once ready."""
    with input_errors():
        command = list(ctx.args)
        if not command:
            raise InputError("give the replica's command after --", field="command")
        body = {
            "name": name,
            "queue": queue,
            "gpus_per_replica": gpus_per_replica,
            "min_replicas": min_replicas,
            "max_replicas": max_replicas,
            "replica_rps": replica_rps,
            "startup_s": parse_duration_s(startup, "startup"),
            "slo_latency_s": parse_duration_s(slo_latency, "slo-latency"),
            "slo_percentile": slo_percentile,
            "command": command,
            "metrics_path": metrics_path,
            "metrics_counter": metrics_counter,
        }
        out = _call(server, token, "POST", "/v1/services", json=body)
    print(json.dumps(out)) if as_json else console.print(f"created service {out['name']}")


@service_app.command("list")
def list_services(server: Server = None, token: Token = None, as_json: AsJson = False) -> None:
    """Your services: target, running and pending replicas."""
    with input_errors():
        rows = _call(server, token, "GET", "/v1/services")
    if as_json:
        print(json.dumps(rows))
        return
    table = tables.Table(title="services", title_justify="left")
    for column in (
        "service",
        "queue",
        "GPUs/replica",
        "target",
        "running",
        "pending",
        "min-max",
        "rps/replica",
    ):
        table.add_column(column, justify="left" if column in ("service", "queue") else "right")
    for r in rows:
        table.add_row(
            r["name"], r["queue"], str(r["gpus_per_replica"]), str(r["target_replicas"]), str(r["running"]),
            str(r["pending"]), f"{r['min_replicas']}-{r['max_replicas']}", f"{r['replica_rps']:g}",
        )  # fmt: skip
    console.print(table)


@service_app.command("delete")
def delete(name: Annotated[str, typer.Argument()], server: Server = None, token: Token = None) -> None:
    """Remove a service; its replicas are stopped."""
    with input_errors():
        _call(server, token, "DELETE", f"/v1/services/{name}")
    console.print(f"deleted service {name}")


@service_app.command("demand")
def demand(
    name: Annotated[str, typer.Argument()],
    requests_per_s: Annotated[float, typer.Argument(help="Requests per second now.")],
    server: Server = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Tell the broker the demand now (a proxy pushes it by itself)."""
    with input_errors():
        out = _call(
            server, token, "POST", f"/v1/services/{name}/demand", json={"requests_per_s": requests_per_s}
        )
    if as_json:
        print(json.dumps(out))
        return
    console.print(
        f"service {out['name']}: {requests_per_s:g} requests/s recorded; "
        "the broker reads it at its next step (corral moves shows what it decides)"
    )


@app.command()
def moves(server: Server = None, token: Token = None, as_json: AsJson = False) -> None:
    """The broker's moves: each service's target replicas and the GPUs lent, with reasons."""
    with input_errors():
        rows = _call(server, token, "GET", "/v1/moves")
    if as_json:
        print(json.dumps(rows))
        return
    table = tables.Table(title="broker moves", title_justify="left")
    for column in ("time", "service", "what", "from", "to", "why"):
        table.add_column(column, justify="right" if column in ("from", "to") else "left")
    for m in rows:
        what = "replicas" if m["kind"] == "replicas" else "GPUs lent"
        before = "" if m["before"] < 0 else str(m["before"])
        when = tables.clock_time(m["time_s"])
        table.add_row(when, m["service"] or "-", what, before, str(m["after"]), m["reason"])
    console.print(table)


@app.command()
def proxy(
    service: Annotated[str, typer.Argument(help="The service to front.")],
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1.")] = 9000,
    push: Annotated[str, typer.Option(help="How often to push the demand it counts.")] = "5s",
    server: Server = None,
    token: Token = None,
) -> None:
    """A service's stable endpoint on 127.0.0.1:PORT: requests go to its ready replicas
    (fewest in flight first), and the requests/s it sees go to the broker."""
    with input_errors():
        _client(server, token)  # (refused naming the one missing or unusable)
        try:
            import uvicorn

            from corral.live.proxy import Proxy
        except ImportError as err:
            raise InputError(
                f"the proxy needs the server extra ({err.name} is missing): {install_hint('server')}"
            ) from None
        front = Proxy(server, token, service, push_s=parse_duration_s(push, "push"))
        web = uvicorn.Server(uvicorn.Config(front.app, host="127.0.0.1", port=port, log_level="warning"))
        console.print(f"service {service} at http://127.0.0.1:{port}")
        thread = threading.Thread(target=web.run)
        thread.start()
        thread.join()
