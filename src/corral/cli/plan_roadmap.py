"""`corral plan fleet`: capacity against demand by quarter, when to start each datacenter,
what researchers go without, capex and energy, and which flagship fits which cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from corral.errors import InputError
from corral.plan.roadmap import (
    PRESETS,
    Plan,
    capex_by_year,
    energy_mwh_by_year,
    generation_fits,
    largest_job,
    load_roadmap,
    plan_roadmap,
    quarter_index,
    quarter_name,
)
from corral.report import tables
from corral.report.outputs import pyplot
from corral.report.terminal import AsJson, console, input_errors


def fleet(
    roadmap: Annotated[Path | None, typer.Option(help="A roadmap TOML (see docs/roadmap.md).")] = None,
    preset: Annotated[str | None, typer.Option(help=f"A built-in roadmap: {', '.join(PRESETS)}.")] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Draw capacity against demand (PNG; the plot extra).")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """The fleet roadmap: capacity against demand quarter by quarter, the quarter each
    datacenter must start building, researchers' shortfall, capex and energy per year, and
    the largest job each cluster holds with its ETTR."""
    with input_errors():
        if (roadmap is None) == (preset is None):
            raise InputError("give --roadmap FILE or --preset NAME", field="roadmap")
        if preset is not None and preset not in PRESETS:
            raise InputError(f"unknown preset '{preset}'; known: {', '.join(PRESETS)}", field="preset")
        the_roadmap = PRESETS[preset] if preset is not None else load_roadmap(roadmap)  # type: ignore[arg-type]
        plan = plan_roadmap(the_roadmap)
        if plot is not None:
            _draw(plan, plot)
    summary = _summary(plan)
    if as_json:
        print(json.dumps(summary))
        return
    _print(plan, summary)
    if plot is not None:
        console.print(f"wrote {plot}")


def _summary(plan: Plan) -> dict:
    demand = plan.roadmap.demand
    centres = []
    for b in plan.built:
        gpus, ettr = largest_job(b.centre)
        centres.append(
            {
                "name": b.centre.name,
                "gpu": b.centre.gpu,
                "power_mw": b.centre.power_mw,
                "gpus": b.centre.gpus,
                "h100e": b.centre.h100e,
                "start": quarter_name(b.start),
                "online": quarter_name(b.online),
                "late": b.late,
                "capex_usd": b.centre.capex_usd,
                "largest_job_gpus": gpus,
                "largest_job_ettr": ettr,
                "flagship_generations_that_fit": generation_fits(b.centre, demand),
                "public": b.centre.public,
            }
        )
    return {
        "roadmap": plan.roadmap.name,
        "quarters": [
            {
                "quarter": q.name,
                "capacity_h100e": q.capacity,
                "flagship_h100e": q.flagship,
                "research_h100e": q.research,
                "serving_h100e": q.serving,
                "short_h100e": q.short,
            }
            for q in plan.quarters
        ],
        "datacenters": centres,
        "research_short_gpu_hours": plan.research_short_gpu_hours(),
        "capex_usd_by_year": {str(y): v for y, v in capex_by_year(plan).items()},
        "energy_mwh_by_year": {str(y): v for y, v in energy_mwh_by_year(plan).items()},
    }


def _print(plan: Plan, summary: dict) -> None:
    table = tables.Table(title=f"{plan.roadmap.name}: H100-equivalents by quarter", title_justify="left")
    for name in ("quarter", "capacity", "flagship", "research", "serving", "short"):
        table.add_column(name, justify="right")
    for q in plan.quarters:
        table.add_row(
            q.name,
            tables.count(q.capacity),
            tables.count(q.flagship) if q.flagship else "",
            tables.count(q.research),
            tables.count(q.serving),
            tables.count(q.short) if q.short else "",
            style="red" if q.short else None,
        )
    console.print(table)
    centres = tables.Table(title="datacenters", title_justify="left")
    for name in (
        "datacenter",
        "MW",
        "GPUs",
        "H100e",
        "build",
        "online",
        "capex",
        "largest job",
        "ETTR",
        "flagships",
        "figures",
    ):
        centres.add_column(name, justify="left" if name in ("datacenter", "figures") else "right")
    for c in summary["datacenters"]:
        centres.add_row(
            c["name"],
            f"{c['power_mw']:,.0f}",
            tables.count(c["gpus"]),
            tables.count(c["h100e"]),
            c["start"] + (" (late)" if c["late"] else ""),
            c["online"],
            f"${c['capex_usd'] / 1e9:,.1f}B",
            tables.count(c["largest_job_gpus"]),
            f"{c['largest_job_ettr']:.2f}",
            str(c["flagship_generations_that_fit"]),
            "public" if c["public"] else "assumed",
        )
    console.print(centres)
    years = tables.Table(title="per year", title_justify="left")
    for name in ("year", "capex", "energy"):
        years.add_column(name, justify="right")
    energy = summary["energy_mwh_by_year"]
    for year in sorted(set(summary["capex_usd_by_year"]) | set(energy)):
        years.add_row(
            year,
            f"${summary['capex_usd_by_year'].get(year, 0) / 1e9:,.1f}B",
            f"{energy.get(year, 0) / 1e6:,.2f} TWh",
        )
    console.print(years)
    console.print(
        f"researchers go without {tables.count(summary['research_short_gpu_hours'])} GPU-hours; "
        "'flagships' counts the generations (from the first, each "
        f"{plan.roadmap.demand.generation_growth:g}x the last) one job on the cluster trains in "
        f"{plan.roadmap.demand.flagship_quarters} quarter(s)"
    )


def _draw(plan: Plan, path: Path) -> None:
    plt = pyplot()

    names = [q.name for q in plan.quarters]
    xs = list(range(len(names)))
    fig, ax = plt.subplots(figsize=(11, 4.5))
    layers = [
        [q.serving for q in plan.quarters],
        [q.research for q in plan.quarters],
        [q.flagship for q in plan.quarters],
    ]
    ax.stackplot(xs, *layers, labels=["serving", "research", "flagship"], alpha=0.7)
    ax.step(xs, [q.capacity for q in plan.quarters], where="mid", color="black", label="capacity")
    first = quarter_index(plan.roadmap.start)
    for b in plan.built:  # (where each datacenter starts building, within the roadmap)
        if 0 <= b.start - first < len(xs):
            ax.axvline(b.start - first, color="grey", lw=0.6, ls="--")
            ax.text(
                b.start - first,
                ax.get_ylim()[1] * 0.95,
                f"start {b.centre.name}",
                rotation=90,
                fontsize=7,
                va="top",
            )
    ax.set_xticks(xs, names, rotation=45, fontsize=8)
    ax.set_ylabel("H100-equivalents")
    ax.set_title(f"{plan.roadmap.name}: capacity against demand")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
