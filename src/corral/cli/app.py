"""The `corral` command and its groups; the commands live in the modules beside this one."""

from __future__ import annotations

from typing import Annotated

import typer

from corral import __version__
from corral.cli.plan import plan_app

app = typer.Typer(no_args_is_help=True, help="Simulate and plan a shared GPU fleet.")
trace_app = typer.Typer(no_args_is_help=True, help="Import and inspect job traces.")
workload_app = typer.Typer(no_args_is_help=True, help="Generate workloads.")
fleet_app = typer.Typer(no_args_is_help=True, help="Inspect fleets.")
reliability_app = typer.Typer(no_args_is_help=True, help="Failures, checkpoints and effective training time.")
app.add_typer(trace_app, name="trace")
app.add_typer(workload_app, name="workload")
app.add_typer(fleet_app, name="fleet")
app.add_typer(plan_app, name="plan")
app.add_typer(reliability_app, name="reliability")


def _version(asked: bool) -> None:
    if asked:
        print(f"corral {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Simulate and plan a shared GPU fleet."""
