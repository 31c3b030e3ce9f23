"""The planner against published training runs (corral/plan/published.py): every row's
predicted and measured TFLOPs per GPU, the error per row and per source, which rows set a
constant and which are predictions; Llama 3 405B's Table 4 with and without recompute;
and the pre-training GPU-hours.

    python scripts/plan_validation.py [--out docs/plan-validation.png] [--json]

The figure: predicted against measured for every row, and where each Table 4 step's time goes.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from rich.table import Table  # noqa: E402

from corral.plan.published import CHECKS, LLAMA3, MOSAIC, RUNS, calibrate  # noqa: E402
from corral.plan.recipe import LLAMA3_405B_GPU_HOURS, RECIPES, estimate_recipe  # noqa: E402
from corral.report.terminal import console  # noqa: E402

PARTS = ("compute_s", "tp_comm_s", "cp_comm_s", "bubble_s", "pp_p2p_s", "dp_exposed_s", "optimizer_s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/plan-validation.png"))
    parser.add_argument("--json", action="store_true", help="Rows and summary as JSON, no figure.")
    args = parser.parse_args()

    rows = []
    for run in RUNS:
        est = run.estimate()
        predicted = run.predicted_tflops(est)
        rows.append((run, est, predicted, predicted / run.tflops_per_gpu - 1))
    predictions = [abs(err) for run, _, _, err in rows if not run.calibrates]
    summary = {
        "rows": len(rows),
        "calibrated": sum(run.calibrates for run in RUNS),
        "predicted_mean_abs_error": sum(predictions) / len(predictions),
        "predicted_max_abs_error": max(predictions),
        "calibration": {f"{g} {p}": round(v, 4) for (g, p), v in calibrate().items()},
    }
    hours = sum(p.run.gpu_hours for p in estimate_recipe(RECIPES["llama3-405b"]))
    summary["llama3_405b_gpu_hours"] = hours
    if args.json:
        out = [
            {
                "source": run.source,
                "run": run.name,
                "counts": run.counts,
                "calibrates": run.calibrates,
                "measured": run.tflops_per_gpu,
                "predicted": predicted,
                "error": err,
                "memory_gib": est.memory_gib_per_gpu,
            }
            for run, est, predicted, err in rows
        ]
        print(json.dumps({"runs": out, "summary": summary}))
        return

    table = Table(title="the planner against published runs (TFLOPs per GPU)", title_justify="left")
    for name in ("source", "run", "count", "measured", "corral", "error", "GiB", ""):
        table.add_column(name, justify="left" if name in ("source", "run", "") else "right")
    for run, est, predicted, err in rows:
        table.add_row(
            run.source,
            run.name,
            run.counts,
            f"{run.tflops_per_gpu:.0f}",
            f"{predicted:.0f}",
            f"{err:+.1%}",
            f"{est.memory_gib_per_gpu:.1f}",
            "calibrates" if run.calibrates else "",
        )
    console.print(table)
    per_source = Table(title="error per source (predicted rows)", title_justify="left")
    for name in ("source", "rows", "mean |error|", "largest"):
        per_source.add_column(name, justify="left" if name == "source" else "right")
    for source in dict.fromkeys(run.source for run in RUNS):
        errs = [err for run, _, _, err in rows if run.source == source and not run.calibrates]
        if errs:
            per_source.add_row(
                source, str(len(errs)), f"{sum(map(abs, errs)) / len(errs):.1%}", f"{max(errs, key=abs):+.1%}"
            )
    console.print(per_source)
    console.print(
        f"{len(predictions)} predicted rows: mean |error| {summary['predicted_mean_abs_error']:.1%}, "
        f"largest {summary['predicted_max_abs_error']:.1%}; calibration "
        + ", ".join(f"{k} {v}" for k, v in summary["calibration"].items())
    )
    console.print(
        f"Llama 3 405B pre-training GPU-hours: {hours / 1e6:.2f}M predicted, 30.84M reported "
        f"({hours / LLAMA3_405B_GPU_HOURS - 1:+.1%})"
    )
    checks = Table(title=f"outside the targets: {MOSAIC}", title_justify="left")
    for name in ("run", "measured", "corral", "error"):
        checks.add_column(name, justify="left" if name == "run" else "right")
    for run in CHECKS:
        predicted = run.predicted_tflops()
        checks.add_row(
            run.name,
            f"{run.tflops_per_gpu:.0f}",
            f"{predicted:.0f}",
            f"{predicted / run.tflops_per_gpu - 1:+.1%}",
        )
    console.print(checks)
    table4 = [(run, est) for run, est, _, _ in rows if run.source == LLAMA3]
    without = Table(title="Llama 3 Table 4: memory per GPU by what is kept", title_justify="left")
    for name in ("run", "none GiB", "pointwise GiB", "selective GiB", "usable"):
        without.add_column(name, justify="left" if name == "run" else "right")
    for run, est in table4:
        gib = [
            replace(run, layout=replace(run.layout, recompute=kept)).estimate().memory_gib_per_gpu
            for kept in ("none", "pointwise", "selective")
        ]
        without.add_row(run.name, *(f"{g:.1f}" for g in gib), f"{est.memory_capacity_gib:.1f}")
    console.print(without)
    draw(rows, table4, args.out)
    console.print(f"wrote {args.out}")


def draw(rows: list, table4: list, out: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    sources = list(dict.fromkeys(run.source for run, *_ in rows))
    for i, source in enumerate(sources):
        for calibrated in (False, True):
            pts = [
                (run.tflops_per_gpu, p)
                for run, _, p, _ in rows
                if run.source == source and run.calibrates == calibrated
            ]
            if pts:
                left.scatter(
                    *zip(*pts, strict=True),
                    marker="*" if calibrated else "o",
                    s=120 if calibrated else 40,
                    color=f"C{i}",
                    label=source if not calibrated else None,
                )
    top = max(max(run.tflops_per_gpu, p) for run, _, p, _ in rows) * 1.08
    left.plot([0, top], [0, top], color="grey", lw=1)
    for band in (0.85, 1.15):
        left.plot([0, top], [0, top * band], color="grey", lw=0.5, ls="--")
    left.set_xlim(0, top)
    left.set_ylim(0, top)
    left.set_xlabel("measured TFLOPs per GPU (each source's own count)")
    left.set_ylabel("corral")
    left.set_title("Predicted against measured (stars: calibrating rows; dashed: ±15%)")
    left.legend(fontsize=7, loc="upper left")
    labels = [f"{run.layout.gpus:,} GPUs\nseq {run.seq:,}" for run, _ in table4]
    xs = list(range(len(table4)))
    bottom = [0.0] * len(table4)
    for part in PARTS:
        values = [getattr(est, part) for _, est in table4]
        if not any(values):
            continue
        right.bar(xs, values, 0.5, bottom=bottom, label=part.removesuffix("_s").replace("_", " "))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    right.set_xticks(xs, labels)
    right.set_ylabel("seconds per step")
    right.set_title("Llama 3 Table 4: where a step's time goes")
    right.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)


if __name__ == "__main__":
    main()
