"""A pre-training recipe: phases that change batch, sequence, GPU count and layout as a run
goes on, each estimated and summed. Llama 3 405B's is built in (Llama 3 paper, sections
3.4.1-3.4.2), so the planner can be checked against the 30.84M GPU-hours Meta reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from corral.config import BinaryCount, Count, build, read_mapping
from corral.errors import InputError
from corral.hardware import GPU, load_gpu
from corral.plan.estimate import Prices, Reliability, RunEstimate, estimate_run
from corral.plan.layout import Layout
from corral.plan.model import Transformer, load_model
from corral.plan.step import StepEstimate, estimate_step

MI = 2**20


@dataclass(frozen=True)
class Phase:
    """`tokens` trained with one layout, sequence length and batch."""

    name: str
    tokens: Count
    gpus: int
    seq: int
    batch_tokens: BinaryCount
    tp: int = 1
    pp: int = 1
    cp: int = 1
    dp: int = 1
    recompute: str = "selective"
    zero: int = 1

    @property
    def layout(self) -> Layout:
        return Layout(self.tp, self.pp, self.cp, self.dp, zero=self.zero, recompute=self.recompute)


@dataclass(frozen=True)
class Recipe:
    name: str
    model: str
    gpu: str
    phases: tuple[Phase, ...] = field(default_factory=tuple)


def _llama3_405b() -> Recipe:
    """Llama 3 paper 3.4.1: 4M-token batches of 4,096-token sequences for the first 252M
    tokens, 8M of 8,192 to 2.87T, then 16M; 15.6T tokens in all, of which ~800B are the long-
    context stages (3.4.2) that grow the context from 8K to 128K with CP = context / 8K
    (Table 4, row 3). Stated assumptions where the paper is silent: the early phases run on
    8,192 GPUs (Table 4, row 1), the later ones on 16,384, and the 800B tokens split evenly
    over four doublings (16K, 32K, 64K, 128K). FSDP shards optimizer states and gradients
    (ZeRO 2); up to 8K without activation checkpointing (3.3.2), counted as `pointwise`; the
    long-context phases with selective recompute, as the paper does not say."""
    asis = dict(recompute="pointwise", zero=2)
    short = [
        Phase("warm-up 4M x 4K", 252e6, 8192, 4096, 4 * MI, 8, 16, 1, 64, **asis),
        Phase("8M x 8K", 2.87e12 - 252e6, 8192, 8192, 8 * MI, 8, 16, 1, 64, **asis),
        Phase("16M x 8K", 14.8e12 - 2.87e12, 16384, 8192, 16 * MI, 8, 16, 1, 128, **asis),
    ]
    long = [
        Phase(f"long context {k}K", 200e9, 16384, k * 1024, 16 * MI, 8, 16, k // 8, 128 * 8 // k, zero=2)
        for k in (16, 32, 64, 128)
    ]
    return Recipe("llama3-405b", "llama3-405b", "h100", tuple(short + long))


RECIPES = {"llama3-405b": _llama3_405b()}
LLAMA3_405B_GPU_HOURS = 30.84e6  # Llama 3.1 model card, pre-training


def load_recipe(spec: str) -> Recipe:
    """A built-in recipe, or a TOML/JSON file: `name`, `model`, `gpu` and `[[phase]]` tables
    with the Phase fields."""
    if spec in RECIPES:
        return RECIPES[spec]
    path = Path(spec)
    if not path.exists():
        raise InputError(
            f"unknown recipe '{spec}'; built in: {', '.join(RECIPES)}, or a TOML/JSON file", field="recipe"
        )
    data = read_mapping(path, "recipe")
    raw = data.pop("phase", None)
    if not isinstance(raw, list) or not raw:
        raise InputError("needs at least one [[phase]] table", source=str(path), field="phase")
    phases = []
    for i, entry in enumerate(raw, 1):
        if not isinstance(entry, dict):
            raise InputError(f"phase {i} is not a table", source=str(path), field="phase")
        entry.setdefault("name", f"phase {i}")
        phases.append(build(Phase, entry, f"{path} phase {i}"))
    data["phases"] = tuple(phases)
    data.setdefault("name", path.stem)
    for key in ("model", "gpu"):
        if key not in data:
            raise InputError(f"missing '{key}'", source=str(path), field=key)
    return build(Recipe, data, str(path))


@dataclass(frozen=True)
class PhaseEstimate:
    phase: Phase
    step: StepEstimate
    run: RunEstimate


def estimate_recipe(
    recipe: Recipe,
    reliability: Reliability | None = None,
    prices: Prices | None = None,
    model: Transformer | None = None,
    gpu: GPU | None = None,
) -> list[PhaseEstimate]:
    """Each phase's step and run; a phase whose layout does not fit in memory is an error."""
    the_model = model or load_model(recipe.model)
    the_gpu = gpu or load_gpu(recipe.gpu)
    out = []
    for phase in recipe.phases:
        try:
            step = estimate_step(the_model, the_gpu, phase.gpus, phase.layout, phase.seq, phase.batch_tokens)
        except InputError as err:
            raise InputError(f"phase '{phase.name}': {err.message}", field=err.field) from None
        if not step.fits:
            raise InputError(
                f"phase '{phase.name}' needs {step.memory_gib_per_gpu:.1f} GiB per GPU, "
                f"{-step.memory_margin_gib:.1f} GiB more than the {the_gpu.name} offers",
                field="recompute",
            )
        out.append(PhaseEstimate(phase, step, estimate_run(step, phase.tokens, reliability, prices)))
    return out
