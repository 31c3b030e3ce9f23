"""`corral plan programme`: the ladder, ablations and flagship of a research programme, the
trade-off a ladder's size buys, and (with --simulate) whether its calendar survives the
queues of a research fleet."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from corral.cli.plan_scaling import price
from corral.config import parse_count
from corral.errors import InputError
from corral.hardware import GPU, load_gpu
from corral.plan.programme import Programme, Run, energy_mwh, job_table, plan_programme
from corral.plan.scaling import LossLaw, load_law
from corral.report import tables
from corral.report.outputs import pyplot
from corral.report.terminal import AsJson, console, input_errors, progress_bars
from corral.workload import write_jobs

LLAMA3_FLOPS = 3.8e25  # the last flagship, by default: Llama 3 405B's pre-training


def programme(
    flagship: Annotated[
        str, typer.Option(help="The flagship's FLOPs (3.8e26), or a multiple of --last-flops (10x).")
    ] = "10x",
    last_flops: Annotated[
        float, typer.Option(help="The last flagship's FLOPs (Llama 3 405B's).")
    ] = LLAMA3_FLOPS,
    gpu: Annotated[str, typer.Option(help="GPU of the fleet.")] = "h100",
    share_gpus: Annotated[
        int, typer.Option(min=1, help="GPUs of the fleet the ladder and ablations may use.")
    ] = 4096,
    run_gpus: Annotated[int, typer.Option(min=1, help="GPUs of each ladder and ablation run.")] = 64,
    flagship_gpus: Annotated[int, typer.Option(min=1, help="GPUs of the flagship run.")] = 98304,
    min_flops: Annotated[str, typer.Option(help="The ladder's smallest budget.")] = "1e19",
    max_flops: Annotated[str, typer.Option(help="The ladder's largest budget.")] = "1e22",
    levels: Annotated[int, typer.Option(min=3, max=20, help="Budgets of the ladder (log-spaced).")] = 7,
    sizes: Annotated[int, typer.Option(min=3, max=20, help="Model sizes per budget.")] = 7,
    ablations: Annotated[int, typer.Option(min=0, help="Ablation runs at small scale.")] = 20,
    ablation_flops: Annotated[str, typer.Option(help="Budget of each ablation.")] = "1e20",
    truth: Annotated[str, typer.Option(help="The law the ladder's outcomes are drawn from.")] = "epoch-2024",
    prior: Annotated[
        str, typer.Option(help="The law the ladder is centred on before it runs.")
    ] = "chinchilla",
    noise: Annotated[float, typer.Option(min=0, max=0.5, help="Noise on each ladder run's loss.")] = 0.005,
    mfu: Annotated[float, typer.Option(min=0.01, max=1.0, help="MFU of the ladder and ablation runs.")] = 0.4,
    bootstrap: Annotated[int, typer.Option(min=2, max=1000, help="Bootstrap refits per ladder.")] = 30,
    seed: Annotated[int, typer.Option(help="Seed of the outcomes and bootstrap.")] = 0,
    out: Annotated[
        Path | None, typer.Option(help="Write the programme as a job table (CSV or Parquet).")
    ] = None,
    simulate: Annotated[
        bool, typer.Option("--simulate", help="Replay the ladder beside the research-fleet scenario's load.")
    ] = False,
    policy: Annotated[str, typer.Option(help="Policy of the simulated research fleet.")] = "priority",
    plot: Annotated[Path | None, typer.Option(help="Draw the trade-off (PNG; the plot extra).")] = None,
    as_json: AsJson = False,
) -> None:
    """Plan the research before a flagship: an IsoFLOP ladder and ablations on a share of the
    fleet, the flagship sized by the law fitted on the ladder and priced on its own GPUs,
    and the trade-off between the ladder's GPU-hours and calendar and the uncertainty it
    leaves on the flagship's loss."""
    with input_errors():
        budget = _budget(flagship, last_flops)
        the_gpu, the_truth, the_prior = load_gpu(gpu), load_law(truth), load_law(prior)
        if not isinstance(the_truth, LossLaw):
            raise InputError(f"--truth must predict a loss; '{truth}' does not", field="truth")
        ladder_levels = np.logspace(
            np.log10(parse_count(min_flops, "min-flops")),
            np.log10(parse_count(max_flops, "max-flops")),
            levels,
        )
        with progress_bars("fitting") as bars:
            plan = plan_programme(
                budget,
                the_truth,
                the_prior,
                the_gpu,
                share_gpus,
                run_gpus,
                ladder_levels,
                sizes,
                ablations,
                parse_count(ablation_flops, "ablation-flops"),
                mfu,
                noise,
                bootstrap,
                seed,
                progress=bars("ladders"),
            )
        flagship_run = price(plan.flagship_params, plan.flagship_tokens, gpu, flagship_gpus, 8192, 16 * 2**20)
        flagship_job = Run(
            "flagship",
            budget,
            plan.flagship_params,
            plan.flagship_tokens,
            flagship_gpus,
            float(flagship_run["days"]) * 24,
        )
        jobs = job_table(plan, flagship_job, "pretrain", 50)
        if out is not None:
            write_jobs(jobs, out)
        if plot is not None:
            _draw(plan, plot)
        if simulate:
            with progress_bars("simulating") as bars:
                queueing = _simulate(plan, policy, seed, bars(f"the research fleet under {policy}"))
        else:
            queueing = None
    summary = _summary(plan, flagship_run, queueing, the_gpu)
    if as_json:
        print(json.dumps(summary))
        return
    _print(plan, summary, out)


def _budget(text: str, last_flops: float) -> float:
    if text.strip().lower().endswith("x"):
        try:
            factor = float(text.strip()[:-1])
        except ValueError:
            raise InputError(f"'{text}' is not a multiple like 10x", field="flagship") from None
        if not factor > 0:
            raise InputError("the multiple must be > 0", field="flagship")
        return factor * last_flops
    return parse_count(text, "flagship")


def _simulate(plan: Programme, policy: str, seed: int, progress: Callable[[int, int], None]) -> dict:
    """The ladder and ablations submitted at once into the research-fleet scenario (its
    `pretrain` queue, at evaluation priority) for as many days as they are planned to take,
    and a week more: when the last of them ends."""
    from corral.scenarios import research_fleet_fleet, research_fleet_jobs
    from corral.scheduling.registry import make_policy
    from corral.sim.engine import Engine
    from corral.workload import concat_jobs

    days = plan.ladder_days + 7.0
    mine = job_table(plan, None, "pretrain", 50)
    background = research_fleet_jobs(days, seed)
    jobs = concat_jobs([background, mine])
    result = Engine(research_fleet_fleet(), jobs, make_policy(policy), sample_s=0, progress=progress).run()
    ends = result.end_s[len(background) :]
    finished = np.isfinite(ends)
    return {
        "policy": policy,
        "planned_days": plan.ladder_days,
        "simulated_days": float(np.max(ends[finished])) / 86400.0 if finished.any() else float("inf"),
        "unfinished": int((~finished).sum()),
    }


def _summary(plan: Programme, flagship: dict, queueing: dict | None, gpu: GPU) -> dict:
    low, high = plan.fitted.loss_interval(plan.flagship_flops) or (None, None)
    ladder_hours = sum(r.gpu_hours for r in plan.ladder)
    ablation_hours = sum(r.gpu_hours for r in plan.ablations)
    out = {
        "flagship_flops": plan.flagship_flops,
        "ladder": {
            "runs": len(plan.ladder),
            "gpu_hours": ladder_hours,
            "energy_mwh": energy_mwh(plan.ladder, gpu),
        },
        "ablations": {
            "runs": len(plan.ablations),
            "gpu_hours": ablation_hours,
            "energy_mwh": energy_mwh(plan.ablations, gpu),
        },
        "ladder_days": plan.ladder_days,
        "flagship": {
            "params": plan.flagship_params,
            "tokens": plan.flagship_tokens,
            "loss": plan.flagship_loss,
            "loss_interval_90": [low, high],
        }
        | flagship,
        "start_day": plan.ladder_days,
        "end_day": plan.ladder_days + float(flagship["days"]),
        "tradeoff": [
            {
                "top_flops": r.top_flops,
                "runs": r.runs,
                "gpu_hours": r.gpu_hours,
                "days": r.days,
                "loss": r.loss,
                "loss_interval_90": [r.loss_low, r.loss_high],
            }
            for r in plan.tradeoff
        ],
    }
    if queueing is not None:
        out["queueing"] = queueing
    return out


def _runs_text(part: dict) -> str:
    return f"{part['runs']} runs, {tables.count(part['gpu_hours'])} GPU-hours, {part['energy_mwh']:,.0f} MWh"


def _draw(plan: Programme, path: Path) -> None:
    """The trade-off: the flagship's loss interval and the calendar against ladder GPU-hours."""
    plt = pyplot()

    rungs = plan.tradeoff
    hours = [r.gpu_hours for r in rungs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.errorbar(
        hours,
        [r.loss for r in rungs],
        yerr=[[r.loss - r.loss_low for r in rungs], [r.loss_high - r.loss for r in rungs]],
        fmt="o-",
        capsize=4,
    )
    for r in rungs:
        left.annotate(
            f"to {r.top_flops:.0e}", (r.gpu_hours, r.loss_high), fontsize=7, ha="center", va="bottom"
        )
    left.set_xscale("log")
    left.set_xlabel("ladder GPU-hours")
    left.set_ylabel("flagship's predicted loss (90% interval)")
    left.set_title(f"What the ladder buys ({plan.flagship_flops:.1e} FLOPs flagship)")
    right.plot(hours, [r.width for r in rungs], "o-", label="interval width")
    twin = right.twinx()
    twin.plot(hours, [r.days for r in rungs], "s--", color="C1", label="days to the flagship's start")
    right.set_xscale("log")
    right.set_xlabel("ladder GPU-hours")
    right.set_ylabel("width of the 90% interval")
    twin.set_ylabel("days of ladder on the share")
    right.set_title("Uncertainty against calendar")
    fig.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _print(plan: Programme, summary: dict, out: Path | None) -> None:
    flagship = summary["flagship"]
    low, high = flagship["loss_interval_90"]
    rows = [
        ("flagship budget", f"{plan.flagship_flops:.3g} FLOPs"),
        ("ladder", _runs_text(summary["ladder"])),
        ("ablations", _runs_text(summary["ablations"])),
        ("ladder and ablations", f"{plan.ladder_days:.1f} days on the share"),
        (
            "flagship",
            f"{tables.count(flagship['params'])} parameters on {tables.count(flagship['tokens'])} tokens",
        ),
        ("predicted loss", f"{flagship['loss']:.4f} (90%: {low:.4f}-{high:.4f})"),
        ("flagship run", f"{flagship['layout']}; MFU {flagship['mfu']:.1%}; {flagship['days']:.1f} days"),
        (
            "flagship cost",
            f"{tables.count(flagship['gpu_hours'])} GPU-hours, {flagship['energy_mwh']:,.0f} MWh",
        ),
        ("calendar", f"flagship starts day {summary['start_day']:.1f}, ends day {summary['end_day']:.1f}"),
    ]
    queueing = summary.get("queueing")
    if queueing is not None:
        survives = queueing["simulated_days"] <= queueing["planned_days"] * 1.1 + 1.0
        verdict = "survives queueing" if survives else "does not survive queueing"
        rows.append(
            (
                "on the research fleet",
                f"ladder ends day {queueing['simulated_days']:.1f} under {queueing['policy']} "
                f"(planned {queueing['planned_days']:.1f}): the calendar {verdict}",
            )
        )
    console.print(tables.key_values("research programme", rows))
    table = tables.Table(title="what the ladder buys: stopped at a lower budget", title_justify="left")
    for name in ("ladder top", "runs", "GPU-hours", "days", "flagship loss", "90% interval", "width"):
        table.add_column(name, justify="right")
    for r in plan.tradeoff:
        table.add_row(
            f"{r.top_flops:.2g}",
            str(r.runs),
            tables.count(r.gpu_hours),
            f"{r.days:.1f}",
            f"{r.loss:.4f}",
            f"{r.loss_low:.4f}-{r.loss_high:.4f}",
            f"{r.width:.4f}",
        )
    console.print(table)
    if out is not None:
        console.print(f"wrote {out}")
