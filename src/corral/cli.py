"""The command line: parses, calls the library, prints. Bad input exits with status 2 and a
message naming the file, line and field; nothing is written unless the whole run succeeds."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from corral.errors import InputError
from corral.fleet import load_fleet
from corral.report import tables
from corral.sim.engine import SimResult
from corral.sim.metrics import by_queue, summary, write_job_record
from corral.simulate import simulate as run_simulation
from corral.synth import synth_jobs
from corral.traces.stats import trace_stats
from corral.workload import read_jobs, write_jobs

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Simulate and plan a shared GPU fleet.")
trace_app = typer.Typer(no_args_is_help=True, help="Import and inspect job traces.")
workload_app = typer.Typer(no_args_is_help=True, help="Generate workloads.")
fleet_app = typer.Typer(no_args_is_help=True, help="Inspect fleets.")
app.add_typer(trace_app, name="trace")
app.add_typer(workload_app, name="workload")
app.add_typer(fleet_app, name="fleet")
# Piped output keeps whole table rows (rich would otherwise assume 80 columns).
console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True)

DEMO_LOAD = 0.5
DEMO_POLICIES = ("fifo", "las", "sjf")


@contextmanager
def _input_errors() -> Iterator[None]:
    try:
        yield
    except InputError as err:
        errors.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


@contextmanager
def _progress() -> Iterator[Callable[[str], Callable[[int, int], None]]]:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
        transient=True,
        disable=not errors.is_terminal,
    ) as bar:

        def for_policy(name: str) -> Callable[[int, int], None]:
            task = bar.add_task(f"simulating {name}", total=None)

            def update(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            return update

        yield for_policy


def _run_and_report(
    workload: str,
    fleet: str,
    policies: list[str],
    load: float | None,
    relax_after_s: float | None,
    out: Path | None,
    queues: bool,
) -> list[SimResult]:
    with _input_errors():
        the_fleet = load_fleet(fleet)
        jobs = read_jobs(workload)
        with _progress() as progress:
            results = run_simulation(jobs, the_fleet, policies, load, relax_after_s, progress)
    rows = [summary(r) for r in results]
    load_text = f" at load {load:g}" if load is not None else ""
    console.print(
        tables.comparison(
            rows, f"{len(jobs):,} jobs on {the_fleet.name} ({the_fleet.total_gpus:,} GPUs){load_text}"
        )
    )
    if queues:
        for r in results:
            console.print(tables.per_queue(r.policy, by_queue(r)))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for r in results:
            write_job_record(r, out / f"jobs-{r.policy}.csv")
        metrics = [{**row, "by_queue": by_queue(r)} for row, r in zip(rows, results, strict=True)]
        tmp = out / ".metrics.json.tmp"
        tmp.write_text(json.dumps(metrics, indent=1) + "\n")
        tmp.replace(out / "metrics.json")
        console.print(f"wrote {out}/metrics.json and jobs-<policy>.csv")
    return results


@app.command()
def simulate(
    workload: Annotated[str, typer.Option(help="Job table (CSV/Parquet) or a Philly-format trace.")],
    fleet: Annotated[str, typer.Option(help="Preset (philly, meta-24k, meta-2024), TOML file, or NxG.")],
    policy: Annotated[
        list[str], typer.Option(help="fifo, fifo-backfill, sjf, srtf, las; repeat to compare.")
    ],
    load: Annotated[float | None, typer.Option(help="Rescale arrivals to this offered load.")] = None,
    relax_after: Annotated[float | None, typer.Option(help="Seconds after which a gang may spread.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write metrics.json and jobs-<policy>.csv here.")] = None,
    by_queue: Annotated[bool, typer.Option("--by-queue", help="Also print the per-queue breakdown.")] = False,
) -> None:
    """Replay a workload on a fleet under one or more policies and compare them."""
    _run_and_report(workload, fleet, policy, load, relax_after, out, by_queue)


@app.command()
def demo(out: Annotated[Path | None, typer.Option(help="Also write the results here.")] = None) -> None:
    """Replay Microsoft's Philly trace on its own virtual clusters under fifo, las and sjf."""
    trace = resources.files("corral.data").joinpath("philly_pollux.csv.gz")
    with resources.as_file(trace) as path:
        console.print(
            "[bold]corral demo[/]: Microsoft's Philly trace (82,247 GPU jobs, Sep-Dec 2017; CC-BY 4.0, "
            "as reduced by the Pollux OSDI'21 artifact) on the Philly fleet (one pool per virtual "
            f"cluster), arrivals compressed to offered load {DEMO_LOAD}.\n"
        )
        results = _run_and_report(str(path), "philly", list(DEMO_POLICIES), DEMO_LOAD, None, out, False)
    by_name = {r.policy: summary(r) for r in results}
    fifo, las, sjf = by_name["fifo"], by_name["las"], by_name["sjf"]
    console.print(
        f"\nSame jobs, same GPUs: first-come first-served makes the average job take "
        f"{tables.duration(fifo['avg_jct_s'])}, because long jobs at the head block short ones. "
        f"Tiresias' LAS, which knows no durations, cuts that to {tables.duration(las['avg_jct_s'])} "
        f"({fifo['avg_jct_s'] / las['avg_jct_s']:.1f}x lower) by preempting jobs that have had the "
        f"most GPU time; an oracle shortest-job-first reaches {tables.duration(sjf['avg_jct_s'])}, "
        f"what knowing every duration buys."
    )


@trace_app.command("import")
def trace_import(
    source: Annotated[Path, typer.Argument(help="A Philly-format trace or a canonical table.")],
    out: Annotated[Path, typer.Option(help="Canonical table to write (.csv or .parquet).")],
) -> None:
    """Convert a trace into the canonical job table."""
    with _input_errors():
        jobs = read_jobs(source)
        write_jobs(jobs, out)
    console.print(f"wrote {len(jobs):,} jobs to {out}")


@trace_app.command("stats")
def trace_stats_cmd(
    source: Annotated[Path, typer.Argument(help="Job table or Philly-format trace.")],
    fleet: Annotated[str | None, typer.Option(help="Also report the offered load on this fleet.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Jobs, GPU-hours, size and duration distribution, arrival rate, offered load."""
    with _input_errors():
        jobs = read_jobs(source)
        stats = trace_stats(jobs, load_fleet(fleet) if fleet else None)
    if as_json:
        print(json.dumps(stats, indent=1))
        return
    rows = [
        ("jobs", f"{stats['jobs']:,}"),
        ("queues", f"{stats['queues']:,}"),
        ("GPU-hours", f"{stats['gpu_hours']:,.0f}"),
        ("span", tables.duration(stats["span_s"])),
        ("arrivals per hour", f"{stats['arrivals_per_hour']:,.1f}"),
        ("GPUs per job (mean / max)", f"{stats['gpus_mean']:.2f} / {stats['gpus_max']}"),
    ] + [(f"duration {k}", tables.duration(v)) for k, v in stats["duration_s"].items()]
    if "offered_load" in stats:
        rows.append(
            (
                f"offered load on {stats['fleet']} ({stats['fleet_gpus']:,} GPUs)",
                f"{stats['offered_load']:.3f}",
            )
        )
    console.print(tables.key_values(str(source), rows))
    size_table = tables.Table(title="job sizes", title_justify="left")
    for name in ("GPUs", "jobs", "share of jobs", "share of GPU time"):
        size_table.add_column(name, justify="right")
    for s in stats["sizes"]:
        size_table.add_row(
            s["gpus"], f"{s['jobs']:,}", f"{s['share_of_jobs']:.1%}", f"{s['share_of_gpu_time']:.1%}"
        )
    console.print(size_table)


@workload_app.command("synth")
def workload_synth(
    jobs: Annotated[int, typer.Option(help="Number of jobs.")],
    rate: Annotated[float, typer.Option(help="Arrivals per hour.")],
    out: Annotated[Path, typer.Option(help="Table to write (.csv or .parquet).")],
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    queues: Annotated[int, typer.Option(help="Number of queues to spread jobs over.")] = 1,
    max_gpus: Annotated[int | None, typer.Option(help="Largest job size to draw.")] = None,
) -> None:
    """N Philly-like jobs with Poisson arrivals, seeded."""
    with _input_errors():
        table = synth_jobs(jobs, rate, seed, queues, max_gpus)
        write_jobs(table, out)
    console.print(f"wrote {len(table):,} jobs to {out}")


@fleet_app.command("show")
def fleet_show(fleet: Annotated[str, typer.Argument(help="Preset, TOML file, or NxG.")]) -> None:
    """Describe a fleet: hosts, GPUs, pools, topology."""
    with _input_errors():
        the_fleet = load_fleet(fleet)
    console.print(
        tables.key_values(
            the_fleet.name,
            [(k, f"{v:,}" if isinstance(v, int) else str(v)) for k, v in the_fleet.describe().items()],
        )
    )


def main() -> None:
    sys.exit(app())


if __name__ == "__main__":
    main()
