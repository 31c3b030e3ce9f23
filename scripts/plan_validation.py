"""The planner against published training runs: Llama 3 405B's Table 4 and pre-training
GPU-hours, and Megatron-style runs on A100 (MT-NLG 530B, BLOOM 176B).

    python scripts/plan_validation.py [--out docs/plan-validation.png]

Prints the predicted and reported TFLOPs per GPU for each Table 4 row, with and without
activation recomputation, then the A100 runs against the hardware count their reports
print (recompute included), with the error per row and the mean and largest per source;
and draws where each Table 4 step's time goes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from dataclasses import replace  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
from rich.table import Table  # noqa: E402

from corral.hardware import gpu  # noqa: E402
from corral.plan.layout import Layout  # noqa: E402
from corral.plan.model import PRESETS, Transformer  # noqa: E402
from corral.plan.recipe import LLAMA3_405B_GPU_HOURS, RECIPES, estimate_recipe  # noqa: E402
from corral.plan.step import estimate_step  # noqa: E402
from corral.report.terminal import console  # noqa: E402

# Llama 3 paper, Table 4: (GPUs, CP, DP, sequence, TFLOPs/GPU). Row 3's DP is 8 (see docs/planning.md).
TABLE4 = [(8192, 1, 64, 8192, 430), (16384, 1, 128, 8192, 400), (16384, 16, 8, 131072, 380)]
# Megatron-style runs on A100, whose reports count the recomputed forward (hardware FLOPs):
# (source, model, GPU memory GiB, layout, sequence, batch in sequences, reported TFLOPs/GPU).
MT_NLG = Transformer("mt-nlg-530b", 105, 20480, 81920, 128, 128, 51200, swiglu=False)
BLOOM = Transformer("bloom-176b", 70, 14336, 57344, 112, 112, 250880, swiglu=False, tied_embeddings=True)
A100_RUNS = [
    # Smith et al. 2022, "Using DeepSpeed and Megatron to Train Megatron-Turing NLG 530B",
    # section 2.4: 280/350/420 DGX A100 40GB, TP 8, PP 35, batch 1920 x 2048, 60.1/50.2/44.4 s
    # per iteration = 126/121/113 TFLOPs per GPU.
    ("MT-NLG 530B", MT_NLG, 40, Layout(8, 35, 1, 8, recompute="full", virtual_stages=1), 2048, 1920, 126),
    ("MT-NLG 530B", MT_NLG, 40, Layout(8, 35, 1, 10, recompute="full", virtual_stages=1), 2048, 1920, 121),
    ("MT-NLG 530B", MT_NLG, 40, Layout(8, 35, 1, 12, recompute="full", virtual_stages=1), 2048, 1920, 113),
    # BigScience, BLOOM 176B training notes (bigscience.notion.site; Le Scao et al. 2022):
    # 384 A100 80GB, one replica on 48 GPUs (TP 4 x PP 12), batch 2048 x 2048, "about 150
    # TFLOPs" per GPU.
    (
        "BLOOM 176B",
        BLOOM,
        80,
        Layout(4, 12, 1, 8, micro_batch=2, recompute="full", virtual_stages=1),
        2048,
        2048,
        150,
    ),
]
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

    a100_runs()

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


def a100_runs() -> None:
    """The A100 runs: predicted hardware TFLOPs per GPU against the reported ones."""
    table = Table(title="Megatron-style runs on A100: hardware TFLOPs per GPU", title_justify="left")
    for name in ("run", "GPUs", "TP/PP/DP", "reported", "corral", "error", "model TF", "GiB"):
        table.add_column(name, justify="left" if name == "run" else "right")
    errors: dict[str, list[float]] = {}
    for source, model, memory_gib, layout, seq, seqs, reported in A100_RUNS:
        a100 = replace(gpu("a100"), memory_gib=memory_gib)
        est = estimate_step(model, a100, layout.gpus, layout, seq, seqs * seq)
        error = est.hardware_tflops_per_gpu / reported - 1
        errors.setdefault(source, []).append(error)
        table.add_row(
            source,
            f"{layout.gpus:,}",
            f"{layout.tp}/{layout.pp}/{layout.dp}",
            f"{reported}",
            f"{est.hardware_tflops_per_gpu:.0f}",
            f"{error:+.1%}",
            f"{est.model_tflops_per_gpu:.0f}",
            f"{est.memory_gib_per_gpu:.1f} of {est.memory_capacity_gib:.1f}",
        )
    console.print(table)
    for source, errs in errors.items():
        mean = sum(abs(e) for e in errs) / len(errs)
        console.print(f"{source}: mean |error| {mean:.1%}, largest {max(errs, key=abs):+.1%}")


if __name__ == "__main__":
    main()
