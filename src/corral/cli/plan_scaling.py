"""`corral plan scaling`: the compute-optimal model for a budget, fitting laws to runs, and
IsoFLOP profiles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from corral.config import parse_count
from corral.errors import InputError
from corral.hardware import load_gpu
from corral.plan.estimate import Reliability, estimate_run
from corral.plan.scaling import (
    LAWS,
    FrontierLaw,
    LossLaw,
    fit_frontier,
    fit_loss_law,
    isoflop_profiles,
    load_law,
    model_for_params,
    read_points,
    save_law,
    synthetic_sweep,
)
from corral.plan.search import search
from corral.report import tables
from corral.report.outputs import pyplot
from corral.report.terminal import AsJson, console, input_errors, progress_bars

scaling_app = typer.Typer(
    no_args_is_help=True, help="Scaling laws: the model and tokens a budget should buy."
)

LawName = Annotated[str, typer.Option(help=f"Built-in law ({', '.join(LAWS)}) or a law file from `fit`.")]
PointsFile = Annotated[Path, typer.Argument(help="CSV of runs: params, tokens, loss [, flops].")]


@scaling_app.command("optimal")
def optimal(
    flops: Annotated[str, typer.Option(help="Compute budget in FLOPs (3.8e25), C = 6 N D.")],
    law: LawName = "chinchilla",
    gpu: Annotated[str | None, typer.Option(help="Price the run on this GPU (h100, ...).")] = None,
    gpus: Annotated[int | None, typer.Option(min=1, help="... and this many of them.")] = None,
    seq: Annotated[int, typer.Option(min=1, help="Sequence length of the priced run.")] = 8192,
    batch_tokens: Annotated[str, typer.Option(help="Global batch of the priced run (binary K/M).")] = "16M",
    as_json: AsJson = False,
) -> None:
    """The parameters and tokens that minimise the loss for a budget (and the loss, where the
    law predicts one, with its bootstrap interval for a fitted law); with --gpu and --gpus,
    the run on that slice: best layout, days, GPU-hours, energy and cost at the expected
    ETTR."""
    with input_errors():
        budget = parse_count(flops, "flops")
        the_law = load_law(law)
        params, tokens = the_law.optimal(budget)
        out: dict[str, object] = {"law": the_law.name, "flops": budget, "params": params, "tokens": tokens}
        if isinstance(the_law, LossLaw):
            out["loss"] = the_law.loss(params, tokens)
            interval = the_law.loss_interval(budget)
            if interval is not None:
                out["loss_interval_90"] = list(interval)
        if (gpu is None) != (gpus is None):
            raise InputError("give both --gpu and --gpus to price the run", field="gpus")
        if gpu is not None and gpus is not None:
            out["run"] = price(
                params, tokens, gpu, gpus, seq, parse_count(batch_tokens, "batch-tokens", binary=True)
            )
    if as_json:
        print(json.dumps(out))
        return
    rows = [
        ("law", the_law.name),
        ("budget", f"{budget:.3g} FLOPs"),
        ("parameters", tables.count(params)),
        ("tokens", tables.count(tokens)),
        ("tokens per parameter", f"{tokens / params:.1f}"),
    ]
    if "loss" in out:
        text = f"{out['loss']:.4f}"
        if "loss_interval_90" in out:
            low, high = out["loss_interval_90"]  # type: ignore[misc]
            text += f" (90%: {low:.4f}-{high:.4f})"
        rows.append(("predicted loss", text))
    run = out.get("run")
    if isinstance(run, dict):
        shape = run["model"]
        rows += [
            (
                "model priced",
                f"{shape['layers']} layers x d {shape['d_model']:,} ({tables.count(shape['params'])})",
            ),
            ("best layout", run["layout"]),
            ("MFU", f"{run['mfu']:.1%}"),
            ("days", f"{run['days']:.1f}"),
            ("GPU-hours", tables.count(run["gpu_hours"])),
            ("energy", f"{run['energy_mwh']:,.0f} MWh"),
            ("cost", f"${run['cost_usd']:,.0f}"),
        ]
    console.print(tables.key_values(f"compute-optimal at {budget:.3g} FLOPs", rows))


def price(params: float, tokens: float, gpu: str, gpus: int, seq: int, batch: float) -> dict[str, object]:
    """The run of a Llama-shaped model of `params` on `tokens`, on the best layout that fits."""
    model = model_for_params(params)
    the_gpu = load_gpu(gpu)
    found = search(model, the_gpu, gpus, seq, batch)
    if not found.ranked:
        raise InputError(f"no layout of a {params / 1e9:.3g}B model fits on {gpus:,} {gpu}", field="gpus")
    step = found.ranked[0]
    run = estimate_run(step, tokens, Reliability())
    lay = step.layout
    return {
        "model": {"layers": model.layers, "d_model": model.d_model, "params": model.total_params},
        "layout": f"TP {lay.tp} PP {lay.pp} CP {lay.cp} DP {lay.dp}, {lay.recompute} recompute",
        "mfu": step.mfu,
        "tokens_per_s": step.tokens_per_s,
    } | run.as_dict()


@scaling_app.command("example")
def example(
    out: Annotated[Path, typer.Option(help="Where to write the runs (CSV).")] = Path("runs.csv"),
    law: LawName = "epoch-2024",
    noise: Annotated[float, typer.Option(min=0, max=0.5, help="Multiplicative noise on the loss.")] = 0.005,
    seed: Annotated[int, typer.Option(help="Seed of the noise.")] = 1,
) -> None:
    """A synthetic IsoFLOP sweep to try `fit` and `isoflop` on: six budgets from 1e18 to 1e22
    FLOPs, nine sizes each around the law's optimum, losses from the law with noise."""
    with input_errors():
        the_law = load_law(law)
        if not isinstance(the_law, LossLaw):
            raise InputError(f"law '{the_law.name}' predicts no loss to sample", field="law")
        points = synthetic_sweep(the_law, noise, seed)
        rows = ["params,tokens,loss,flops"] + [
            f"{n:.6g},{d:.6g},{v:.5f},{c:.3g}"
            for n, d, v, c in zip(points.params, points.tokens, points.loss, points.flops, strict=True)
        ]
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text("\n".join(rows) + "\n")
        tmp.replace(out)
    console.print(f"wrote {out}: {len(points)} runs from {the_law.name}, {noise:.1%} noise")


@scaling_app.command("fit")
def fit(
    points: PointsFile,
    bootstrap: Annotated[int, typer.Option(min=0, max=10_000, help="Bootstrap refits for intervals.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Write the law here, for --law.")] = None,
    as_json: AsJson = False,
) -> None:
    """Fit L(N, D) = E + A / N^alpha + B / D^beta to runs (Huber loss on log-loss, L-BFGS from
    a grid of starts), with bootstrap intervals."""
    with input_errors(), progress_bars("bootstrapping") as bars:
        the_points = read_points(points)
        law = fit_loss_law(the_points, bootstrap, seed, name=points.stem, progress=bars(points.name))
        if out is not None:
            save_law(law, out)
    intervals = law.intervals()
    values = {"E": law.E, "A": law.A, "B": law.B, "alpha": law.alpha, "beta": law.beta}
    if as_json:
        print(json.dumps({"law": law.name, "points": len(the_points)} | values | {"intervals_90": intervals}))
        return
    table = tables.Table(
        title=f"L(N, D) = E + A / N^alpha + B / D^beta, {len(the_points)} runs", title_justify="left"
    )
    for name in ("constant", "fit", "90% interval"):
        table.add_column(name, justify="left" if name == "constant" else "right")
    for name, value in values.items():
        low_high = intervals.get(name)
        table.add_row(name, f"{value:.4g}", f"{low_high[0]:.4g} - {low_high[1]:.4g}" if low_high else "")
    console.print(table)
    if out is not None:
        console.print(f"wrote {out}")


@scaling_app.command("isoflop")
def isoflop(
    points: PointsFile,
    of: Annotated[str, typer.Option(help="Fit the frontier of params or tokens against FLOPs.")] = "params",
    out: Annotated[Path | None, typer.Option(help="Write the frontier law here, for --law.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Draw the profiles and the frontier (PNG).")] = None,
    as_json: AsJson = False,
) -> None:
    """IsoFLOP profiles (approach 2): a parabola in log N per budget, its minimum, and the
    power law through the minima."""
    with input_errors():
        if of not in ("params", "tokens"):
            raise InputError("--of is params or tokens", field="of")
        the_points = read_points(points)
        profiles = isoflop_profiles(the_points)
        frontier = fit_frontier(profiles, of, name=points.stem)
        if out is not None:
            save_law(frontier, out)
        if plot is not None:
            _draw_isoflop(the_points, profiles, frontier, plot)
    if as_json:
        rows = [
            {"flops": p.flops, "params_opt": p.params_opt, "loss_opt": p.loss_opt, "points": p.points}
            for p in profiles
        ]
        print(json.dumps({"profiles": rows, "frontier": {"of": of, "k": frontier.k, "a": frontier.a}}))
        return
    table = tables.Table(title=f"IsoFLOP profiles of {points.name}", title_justify="left")
    for name in ("budget (FLOPs)", "runs", "optimal params", "optimal tokens", "loss there"):
        table.add_column(name, justify="right")
    for p in profiles:
        table.add_row(
            f"{p.flops:.3g}",
            str(p.points),
            tables.count(p.params_opt),
            tables.count(p.flops / (6 * p.params_opt)),
            f"{p.loss_opt:.4f}",
        )
    console.print(table)
    console.print(f"frontier: optimal {of} = {frontier.k:.4g} x C^{frontier.a:.4f}")
    for path in (out, plot):
        if path is not None:
            console.print(f"wrote {path}")


def _draw_isoflop(points, profiles, frontier: FrontierLaw, path: Path) -> None:
    plt = pyplot()
    import numpy as np

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, p in enumerate(profiles):
        near = np.abs(np.log10(points.flops) - np.log10(p.flops)) <= 0.05
        left.scatter(points.params[near], points.loss[near], s=12, color=f"C{i}")
        x = np.linspace(np.log10(points.params[near].min()), np.log10(points.params[near].max()), 50)
        c0, c1, c2 = p.coefficients
        left.plot(10**x, c0 + c1 * x + c2 * x**2, color=f"C{i}", label=f"{p.flops:.1e} FLOPs")
        left.scatter([p.params_opt], [p.loss_opt], marker="*", s=120, color=f"C{i}", edgecolor="black")
    left.set_xscale("log")
    left.set_xlabel("parameters")
    left.set_ylabel("loss")
    left.set_title("IsoFLOP profiles and their minima")
    left.legend(fontsize=7)
    budgets = np.array([p.flops for p in profiles])
    minima = [p.params_opt if frontier.of == "params" else p.flops / (6 * p.params_opt) for p in profiles]
    right.scatter(budgets, minima, color="black")
    span = np.logspace(np.log10(budgets.min()), np.log10(budgets.max()) + 2, 50)
    right.plot(span, frontier.k * span**frontier.a, label=f"{frontier.k:.3g} C^{frontier.a:.3f}")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("FLOPs")
    right.set_ylabel(f"optimal {frontier.of}")
    right.set_title("The compute-optimal frontier")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
