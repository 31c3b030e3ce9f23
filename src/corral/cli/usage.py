"""`corral usage`: who used the GPUs, and how well, from a live cluster or a simulation's
run table, through the one accounting of report/usage.py."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from corral.cli.app import app
from corral.cli.live import Server, Token, _call, parse_when_s
from corral.config import parse_duration_s
from corral.errors import InputError, reading
from corral.report import tables
from corral.report.outputs import check_output_file, pyplot
from corral.report.terminal import AsJson, console, input_errors
from corral.report.usage import GROUPS, held_over_time
from corral.report.usage import usage as account


def read_runs(path: Path) -> dict[str, list[Any]]:
    """A simulation's runs-<policy>.csv (or .parquet) as columns."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    if not path.is_file():
        raise InputError(f"no run table at {path}: give a simulation's runs-<policy>.csv", field="runs")
    with reading(path):
        try:
            table = pq.read_table(path) if path.suffix == ".parquet" else pcsv.read_csv(path)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise InputError(f"not a run table: {err}", source=str(path), field="runs") from None
    missing = [
        c
        for c in ("job_id", "start_s", "end_s", "gpus", "ended", "kept_s", "queue", "submit_s", "state")
        if c not in table.column_names
    ]
    if missing:
        raise InputError(
            f"{path} is no run table of this version (no column {missing[0]}): simulate again",
            source=str(path),
            field=missing[0],
        )
    rows = {name: table.column(name).to_pylist() for name in table.column_names}
    _still_going_as_nan(rows)
    for name in ("team", "user", "kind"):
        rows[name] = ["" if v is None else str(v) for v in rows.get(name, [""] * len(rows["job_id"]))]
    return rows


def _still_going_as_nan(rows: dict[str, list[Any]]) -> None:
    """A run still going has no end and no work kept yet: null in a file or an answer, NaN
    to the accounting."""
    for name in ("end_s", "kept_s"):
        rows[name] = [math.nan if v is None else float(v) for v in rows[name]]


@app.command()
def usage(
    by: Annotated[str, typer.Option(help=f"Group by: {', '.join(GROUPS)}.")] = "team",
    since: Annotated[
        str | None, typer.Option(help="From (live: now, -7d, +1h, 2026-12-01T00:00; a run table: seconds).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Until (as --since; default now).")] = None,
    runs: Annotated[
        Path | None, typer.Option(help="A simulation's runs-<policy>.csv, instead of the live cluster.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the table to FILE.parquet (or .csv).")] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Draw GPU-hours held per group over time, stacked, to FILE.png.")
    ] = None,
    server: Server = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """GPU-hours held, kept and lost (by how runs ended), goodput, jobs by end state and
    waits, per team, queue, user, kind or job; borrowed GPU-hours per queue where quotas
    are known. A team's token sees its own jobs."""
    with input_errors():
        if by not in GROUPS:
            raise InputError(f"--by {by}: one of {', '.join(GROUPS)}", field="by")
        plt = None
        if plot is not None:  # (refused before any work, where it cannot be drawn)
            plt = pyplot()
            check_output_file(plot, "plot", (".png", ".svg", ".pdf"))
        nominal = None
        if runs is not None:
            rows = read_runs(runs)
            now = max((t for t in rows["end_s"] if not math.isnan(t)), default=0.0)
            since_s = -math.inf if since is None else _seconds(since, "since")
            until_s = math.inf if until is None else _seconds(until, "until")
            if any(math.isnan(t) for t in rows["end_s"]) and math.isinf(until_s):
                until_s = now
        else:
            answer = _call(server, token, "GET", "/v1/usage/runs")
            rows, nominal, now = answer["runs"], answer["nominal_gpus"], answer["now_s"]
            _still_going_as_nan(rows)
            since_s = -math.inf if since is None else _when(since, now)
            until_s = now if until is None else _when(until, now)
        if since_s >= until_s:
            raise InputError("--since must come before --until", field="since")
        groups = account(rows, by, since_s, until_s, nominal)
        if out is not None:
            _write(groups, out)
        if plt is not None and plot is not None:
            ends = [t for t in rows["end_s"] if not math.isnan(t)]
            lo = min(rows["start_s"], default=0.0) if math.isinf(since_s) else since_s
            hi = until_s if math.isfinite(until_s) else max(ends, default=lo)
            _draw(plt, held_over_time(rows, by, lo, max(hi, lo + 1.0)), by, plot)
    if as_json:
        print(json.dumps(groups))
        return
    console.print(usage_table(groups, by))
    if out is not None:
        console.print(f"wrote {out}")


def _seconds(text: str, field: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds):
        raise InputError(f"--{field} {text}: a run table's times are seconds (a number)", field=field)
    return seconds


def _when(text: str, now_s: float) -> float:
    """A live moment: as `corral reserve --start`, and -DURATION for one ago."""
    if text.startswith("-"):
        return now_s - parse_duration_s(text[1:], "since")
    return parse_when_s(text, now_s)


def _draw(plt: Any, series: tuple, by: str, path: Path) -> None:
    """GPU-hours held per span, stacked by group (the largest ten, the rest as one)."""
    edges, groups = series
    ranked = sorted(groups, key=lambda g: -groups[g].sum())
    shown = {g: groups[g] for g in ranked[:10]}
    if len(ranked) > 10:
        shown["others"] = sum(groups[g] for g in ranked[10:])
    hours = (edges[:-1] - edges[0]) / 3600.0
    figure, axes = plt.subplots(figsize=(9, 4))
    axes.stackplot(hours, *shown.values(), labels=list(shown), step="post")
    axes.set_xlabel("hours from the window's start")
    axes.set_ylabel(f"GPU-hours held per {(edges[1] - edges[0]) / 3600:.2g} h")
    axes.set_title(f"GPU-hours held by {by}")
    axes.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial{path.suffix}")  # (no half-drawn file)
    figure.savefig(partial, dpi=120)
    partial.replace(path)
    plt.close(figure)


def _write(groups: list[dict[str, Any]], out: Path) -> None:
    import pyarrow as pa

    from corral.report.outputs import check_output_table
    from corral.workload import write_table

    check_output_table(out, "out")
    flat = [{k: json.dumps(v) if isinstance(v, dict) else v for k, v in g.items()} for g in groups]
    write_table(pa.Table.from_pylist(flat), out)


def usage_table(groups: list[dict[str, Any]], by: str) -> Any:
    table = tables.Table(title=f"usage by {by}", title_justify="left")
    columns = ("held GPU-h", "kept GPU-h", "lost GPU-h", "goodput", "jobs", "wait p50", "wait p99")
    table.add_column(by)
    for column in columns:
        table.add_column(column, justify="right")
    table.add_column("lost by how runs ended")
    for g in groups:
        lost = ", ".join(f"{why} {h:,.1f}" for why, h in sorted(g["gpu_hours_lost_by"].items()) if h > 0.05)
        hours = (f"{g[k]:,.1f}" for k in ("gpu_hours_held", "gpu_hours_kept", "gpu_hours_lost"))
        table.add_row(
            g["group"], *hours,
            "-" if g["goodput"] is None else f"{g['goodput']:.1%}", f"{g['jobs']:,}",
            "-" if g["wait_p50_s"] is None else tables.duration(g["wait_p50_s"]),
            "-" if g["wait_p99_s"] is None else tables.duration(g["wait_p99_s"]), lost,
        )  # fmt: skip
    return table
