"""The planner against Llama 3 405B: Table 4's three layouts and the pre-training GPU-hours.

    python scripts/plan_validation.py [--out docs/plan-validation.png]

Prints the predicted and reported TFLOPs per GPU for each Table 4 row, with and without
activation recomputation, and draws where each step's time goes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from rich.table import Table  # noqa: E402

from corral.hardware import gpu  # noqa: E402
from corral.plan.layout import Layout  # noqa: E402
from corral.plan.model import PRESETS  # noqa: E402
from corral.plan.recipe import LLAMA3_405B_GPU_HOURS, RECIPES, estimate_recipe  # noqa: E402
from corral.plan.step import estimate_step  # noqa: E402
from corral.report.terminal import console  # noqa: E402

# Llama 3 paper, Table 4: (GPUs, CP, DP, sequence, TFLOPs/GPU). Row 3's DP is 8 (see docs/planning.md).
TABLE4 = [(8192, 1, 64, 8192, 430), (16384, 1, 128, 8192, 400), (16384, 16, 8, 131072, 380)]
PARTS = ("compute_s", "tp_comm_s", "cp_comm_s", "bubble_s", "pp_p2p_s", "dp_exposed_s", "optimizer_s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/plan-validation.png"))
    args = parser.parse_args()
    model, h100 = PRESETS["llama3-405b"], gpu("h100")
    table = Table(title="Llama 3 405B, Table 4: predicted vs reported", title_justify="left")
    for name in ("GPUs", "TP/PP/CP/DP", "seq", "reported", "selective", "error", "none", "memory sel/none"):
        table.add_column(name, justify="right")
    chosen = []
    for gpus, cp, dp, seq, reported in TABLE4:
        est = {
            rc: estimate_step(model, h100, gpus, Layout(8, 16, cp, dp, recompute=rc), seq, 16 * 2**20)
            for rc in ("selective", "none")
        }
        chosen.append((f"{gpus:,} GPUs\nseq {seq:,}", reported, est["selective"]))
        table.add_row(
            f"{gpus:,}",
            f"8/16/{cp}/{dp}",
            f"{seq:,}",
            f"{reported}",
            f"{est['selective'].tflops_per_gpu:.0f}",
            f"{est['selective'].tflops_per_gpu / reported - 1:+.1%}",
            f"{est['none'].tflops_per_gpu:.0f}",
            f"{est['selective'].memory_gib_per_gpu:.1f} / {est['none'].memory_gib_per_gpu:.1f} of 76.0 GiB",
        )
    console.print(table)
    hours = sum(p.run.gpu_hours for p in estimate_recipe(RECIPES["llama3-405b"]))
    console.print(
        f"pre-training GPU-hours: {hours / 1e6:.2f}M predicted, 30.84M reported "
        f"({hours / LLAMA3_405B_GPU_HOURS - 1:+.1%})"
    )

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = [c[0] for c in chosen]
    xs = range(len(chosen))
    left.bar([x - 0.2 for x in xs], [c[1] for c in chosen], 0.4, label="Llama 3 paper")
    left.bar([x + 0.2 for x in xs], [c[2].tflops_per_gpu for c in chosen], 0.4, label="corral (selective)")
    left.set_xticks(list(xs), labels)
    left.set_ylabel("BF16 TFLOPs per GPU")
    left.set_title("Throughput, Table 4 layouts")
    left.legend(loc="lower left")
    bottom = [0.0] * len(chosen)
    for part in PARTS:
        values = [getattr(c[2], part) for c in chosen]
        if not any(values):
            continue
        right.bar(list(xs), values, 0.5, bottom=bottom, label=part.removesuffix("_s").replace("_", " "))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    right.set_xticks(list(xs), labels)
    right.set_ylabel("seconds per 16M-token step")
    right.set_title("Where a step's time goes")
    right.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
