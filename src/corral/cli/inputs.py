"""corral trace, workload and fleet: the inputs."""

from __future__ import annotations

import gzip
import json
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from corral.cli.app import fleet_app, trace_app, workload_app
from corral.config import parse_duration_s
from corral.errors import InputError
from corral.fleet import load_fleet
from corral.report import tables
from corral.report.outputs import check_output_table
from corral.report.terminal import console, input_errors
from corral.synth import synth_jobs
from corral.traces import read_jobs
from corral.traces.stats import trace_stats
from corral.workload import write_bytes, write_jobs


@trace_app.command("import")
def trace_import(
    source: Annotated[Path, typer.Argument(help="A Philly-format trace or a canonical table.")],
    out: Annotated[Path, typer.Option(help="Canonical table to write (.csv, .csv.gz or .parquet).")],
) -> None:
    """Convert a trace into the canonical job table."""
    with input_errors():
        check_output_table(out, "out")
        jobs = read_jobs(source)
        write_jobs(jobs, out)
    console.print(f"wrote {len(jobs):,} jobs to {out}")


EXAMPLES = {"philly": "philly_pollux.csv.gz"}  # name -> the file shipped in corral.data


@trace_app.command("example")
def trace_example(
    name: Annotated[str, typer.Argument(help=f"The trace: {', '.join(EXAMPLES)}.")],
    out: Annotated[Path, typer.Option(help="Where to write it (.csv or .csv.gz).")],
) -> None:
    """Write out a trace that ships with corral (Philly: Microsoft's, CC-BY 4.0, as reduced
    by the Pollux OSDI'21 artifact), in its own format, to try the commands on; `trace
    import` turns it into a canonical table."""
    with input_errors():
        if name not in EXAMPLES:
            raise InputError(f"unknown example '{name}'; known: {', '.join(EXAMPLES)}", field="name")
        check_output_table(out, "out")
        if out.suffix == ".parquet":
            raise InputError("an example is written in its own format: .csv or .csv.gz", field="out")
        packed = resources.files("corral.data").joinpath(EXAMPLES[name]).read_bytes()
        write_bytes(out, packed if out.name.endswith(".gz") else gzip.decompress(packed))
    console.print(f"wrote the {name} trace to {out}")


@trace_app.command("stats")
def trace_stats_cmd(
    source: Annotated[Path, typer.Argument(help="Job table or Philly-format trace.")],
    fleet: Annotated[str | None, typer.Option(help="Also report the offered load on this fleet.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Jobs, GPU-hours, size and duration distribution, arrival rate, offered load."""
    with input_errors():
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
    out: Annotated[Path, typer.Option(help="Table to write (.csv, .csv.gz or .parquet).")],
    rate: Annotated[float | None, typer.Option(help="Arrivals per hour (or --load and --fleet).")] = None,
    load: Annotated[
        float | None,
        typer.Option(help="Instead of --rate: GPU-seconds asked over fleet GPUs x arrival window."),
    ] = None,
    fleet: Annotated[str | None, typer.Option(help="The fleet --load is for.")] = None,
    max_duration: Annotated[
        str | None, typer.Option(help="Cap on a job's duration (30d, 12h, 3600).")
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Random seed.")] = 0,
    queues: Annotated[int, typer.Option(help="Number of queues to spread jobs over.")] = 1,
    max_gpus: Annotated[int | None, typer.Option(help="Largest job size to draw.")] = None,
    shape: Annotated[
        str, typer.Option(help="philly (its sizes and durations) or lab (see docs).")
    ] = "philly",
) -> None:
    """N jobs with Poisson arrivals, seeded, shaped like Philly's or a large lab's research
    queue (--shape lab): at --rate an hour, or at the rate
    that offers --load to --fleet over the arrival window (with --max-duration, so that the
    work asked is not carried far past that window by the longest jobs)."""
    with input_errors():
        check_output_table(out, "out")
        if (rate is None) == (load is None) or (load is None) != (fleet is None):
            raise InputError("give --rate, or --load and --fleet", field="rate")
        cap = parse_duration_s(max_duration, "max-duration") if max_duration is not None else None
        table = synth_jobs(jobs, rate or 1.0, seed, queues, max_gpus, cap, shape)
        if load is not None and fleet is not None:
            table = table.with_load(load, load_fleet(fleet).total_gpus)
        write_jobs(table, out)
    span_h = float(table.submit_s.max() - table.submit_s.min()) / 3600
    console.print(f"wrote {len(table):,} jobs to {out} (arrivals over {span_h:,.1f} h)")


@fleet_app.command("export")
def fleet_export(
    out: Annotated[Path, typer.Option(help="The fleet TOML to write.")],
    server: Annotated[str | None, typer.Option(envvar="CORRAL_SERVER", help="The server's URL.")] = None,
    token: Annotated[str | None, typer.Option(envvar="CORRAL_TOKEN", help="The admin's token.")] = None,
) -> None:
    """The live cluster's fleet (pools, hosts, GPUs, queues, cohorts) as a fleet file the
    simulator reads (admin)."""
    from corral.cli.live import _call

    with input_errors():
        if out.suffix != ".toml":
            raise InputError(f"{out.name}: a fleet is written as .toml", source=str(out), field="out")
        text = _call(server, token, "GET", "/v1/fleet")
        write_bytes(out, text.encode())
        load_fleet(str(out))  # (what corral writes, corral reads)
    console.print(f"wrote the live fleet to {out}")


@fleet_app.command("show")
def fleet_show(fleet: Annotated[str, typer.Argument(help="Preset, TOML file, or NxG.")]) -> None:
    """Describe a fleet: hosts, GPUs, pools, topology."""
    with input_errors():
        the_fleet = load_fleet(fleet)
    console.print(
        tables.key_values(
            the_fleet.name,
            [(k, f"{v:,}" if isinstance(v, int) else str(v)) for k, v in the_fleet.describe().items()],
        )
    )
