"""`corral sweep`: policies x loads x seeds, on every local core, into one Parquet table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from corral import sweeps
from corral.cli.app import app
from corral.report import tables
from corral.report.outputs import pyplot
from corral.report.terminal import console, errors, input_errors, progress_bars


@app.command()
def sweep(
    workload: Annotated[str, typer.Option(help="Job table (CSV or Parquet), or a Philly-format trace.")],
    fleet: Annotated[str, typer.Option(help="Fleet: a built-in name or a TOML file.")],
    policy: Annotated[list[str], typer.Option(help="Policy to run; repeat for more.")],
    load: Annotated[str, typer.Option(help="Offered loads, START:STOP:STEP (0.5:1.0:0.1) or one.")],
    seeds: Annotated[int, typer.Option(min=1, max=1000, help="Seeds per (policy, load); see docs.")] = 1,
    out: Annotated[
        Path, typer.Option(help="Folder of runs.parquet (runs already there are skipped).")
    ] = Path("sweep"),
    workers: Annotated[int | None, typer.Option(min=1, help="Processes (default: every core).")] = None,
    ray: Annotated[
        str | None, typer.Option(help="Run on Ray: auto or an address to join a cluster, local to start one.")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Draw JCT, utilisation and preemptions against load.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs as JSON.")] = False,
) -> None:
    """Simulate every (policy, load, seed) into DIR/runs.parquet, one row per run with the
    comparison's metrics; a second sweep into the same folder runs only what is missing."""
    with input_errors():
        if plot is not None:
            pyplot()  # (refused before a sweep of minutes, not after it)
        loads = sweeps.loads_from(load)
        with progress_bars("sweeping") as bars:
            table, failed = sweeps.sweep(
                workload, fleet, policy, loads, seeds, out, workers, bars(f"{len(policy)} policies"), ray
            )
        if plot is not None:
            sweeps.draw(table, plot)
    for point, text in failed:
        errors.print(
            f"run {point.policy} at load {point.load:g}, seed {point.seed} failed: {text}", markup=False
        )
    if as_json:
        print(json.dumps(table.to_pylist()))
    else:
        result = tables.Table(title=f"{out / sweeps.RUNS_FILE}: mean over seeds", title_justify="left")
        for name in ("policy", "load", "runs", "avg JCT", "p99 JCT", "avg wait", "GPU util"):
            result.add_column(name, justify="left" if name == "policy" else "right")
        rows = table.to_pylist()
        for key in sorted({(r["policy"], r["load"]) for r in rows}):
            group = [r for r in rows if (r["policy"], r["load"]) == key]

            def mean(name: str, group: list = group) -> float:
                return sum(r[name] for r in group) / len(group)

            result.add_row(
                key[0],
                f"{key[1]:g}",
                str(len(group)),
                tables.duration(mean("avg_jct_s")),
                tables.duration(mean("p99_jct_s")),
                tables.duration(mean("avg_wait_s")),
                f"{mean('gpu_utilization'):.1%}",
            )
        console.print(result)
        if plot is not None:
            console.print(f"wrote {plot}")
    if failed:
        raise typer.Exit(1)
