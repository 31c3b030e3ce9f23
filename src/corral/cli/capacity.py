"""`corral simulate --scenario fungible-fleet`: the brokers compared, as a table, a
metrics.json and a stacked plot of GPUs by class."""

from __future__ import annotations

from pathlib import Path

from rich.progress import Progress

from corral.capacity.broker import BROKERS
from corral.capacity.research import research_rows
from corral.capacity.scenario import fungible_fleet, run_brokers, write_outputs
from corral.errors import install_hint
from corral.report import tables
from corral.report.outputs import check_output_dir, output_dir
from corral.report.terminal import console, input_errors

SCENARIO = "fungible-fleet"
DEFAULT_DAYS = 14.0


def simulate_fungible(
    brokers: list[str] | None, days: float | None, seed: int, out: Path | None, research: str | None = None
) -> None:
    with input_errors():
        check_output_dir(out)
        fleet = fungible_fleet(DEFAULT_DAYS if days is None else days, seed)
        results = run_brokers(fleet, brokers or list(BROKERS))
        by_broker: dict[str, dict[str, float]] = {}
        if research is not None:
            with Progress(*Progress.get_default_columns(), console=console, transient=True) as bar:
                task = bar.add_task(f"research jobs under {research}, per broker", total=len(results))
                by_broker = research_rows(results, research, seed, lambda _: bar.advance(task))
    table = tables.Table(
        title=f"{SCENARIO}: {fleet.gpus:,} GPUs over {fleet.steps * fleet.step_s / 86400:.0f} days "
        f"(research keeps {fleet.research_gpus:,})",
        title_justify="left",
    )
    columns = (
        "broker",
        "SLO",
        "unserved GPU-h",
        "peak short",
        "churn",
        "training goodput GPU-h",
        "slowdown",
        "resizes",
        "lost GPU-h",
        "best-effort GPU-h",
        "utilisation",
        "lent GPU-h",
    )
    for name in columns:
        table.add_column(name, justify="left" if name == "broker" else "right")
    rows = [r.metrics() for r in results]
    for m in rows:
        table.add_row(
            m["broker"],
            f"{m['slo_attainment']:.2%}",
            f"{m['unserved_gpu_hours']:,.0f}",
            f"{m['peak_shortfall_gpus']:,.0f}",
            f"{m['replica_churn']:,}",
            f"{m['training_goodput_gpu_hours']:,.0f}",
            f"{m['training_slowdown']:.2f}x",
            f"{m['training_resizes']:,}",
            f"{m['training_lost_gpu_hours']:,.0f}",
            f"{m['best_effort_goodput_gpu_hours']:,.0f}",
            f"{m['gpu_utilization']:.1%}",
            f"{m['gpu_hours_lent']:,.0f}",
        )
    table.caption = (
        "SLO: share of 5-minute steps where every service had ready capacity for its demand; "
        "slowdown: against the training job alone on its maximum GPUs"
    )
    console.print(table)
    if by_broker:
        console.print(_research_table(by_broker))
    if out is not None:
        with input_errors(), output_dir(out) as stage:
            written = write_outputs(results, stage, by_broker)
        console.print("wrote " + ", ".join(str(out / p.name) for p in written))
        if len(written) == 1:
            console.print(f"(for the plot of GPUs by class: {install_hint('plot')})")


def _research_table(rows: dict[str, dict[str, float]]) -> tables.Table:
    policy = next(iter(rows.values()))["research_policy"]
    table = tables.Table(
        title=f"the research teams' jobs under {policy}, on their quota plus what each broker lends",
        title_justify="left",
    )
    for name in (
        "broker",
        "jobs",
        "avg JCT",
        "p95 JCT",
        "reclaim stops",
        "preemptions",
        "lost GPU-h",
        "best-effort GPU-h",
    ):
        table.add_column(name, justify="left" if name == "broker" else "right")
    for broker, r in rows.items():
        table.add_row(
            broker,
            f"{r['research_jobs']:,}",
            tables.duration(r["research_avg_jct_s"]),
            tables.duration(r["research_p95_jct_s"]),
            f"{r['research_reclaim_stops']:,}",
            f"{r['research_preemptions']:,}",
            f"{r['research_lost_gpu_hours']:,.0f}",
            f"{r['research_best_effort_gpu_hours']:,.0f}",
        )
    table.caption = (
        "reclaim stops save first (the notice covers the write); lost work is the policy's own preemptions"
    )
    return table
