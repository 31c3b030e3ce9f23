"""A parallel layout (TP x CP x PP x DP, with EP inside DP for experts) and the checks that
make it runnable on a model and a GPU count. Placement follows Llama 3's order [TP, CP, PP,
DP]: TP innermost on the NVLink domain, DP outermost across pods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from corral.errors import InputError
from corral.plan.model import Transformer

RECOMPUTE = ("none", "pointwise", "selective", "full")


@dataclass(frozen=True)
class Layout:
    """How a training step is cut up. `virtual_stages` 1 is the 1F1B schedule, more is
    Megatron's interleaved 1F1B; None picks two layers per virtual stage of the fullest
    pipeline stage. `zero` is the
    ZeRO stage of the data-parallel group (1: optimizer states sharded, 2: and gradients,
    3: and weights, gathered for every micro-batch). `tp_overlap` runs the TP collectives
    in chunks beside the GEMMs that produce and consume them (Megatron's `--tp-comm-overlap`,
    torchtitan's async TP) instead of between them. `fp32_grads` keeps gradients in an FP32
    buffer (Megatron's `main_grad`, for accumulation over micro-batches), full size below
    ZeRO 2 as Megatron's distributed optimizer keeps it."""

    tp: int = 1
    pp: int = 1
    cp: int = 1
    dp: int = 1
    ep: int = 1
    micro_batch: int = 1
    virtual_stages: int | None = None
    zero: int = 1
    recompute: str = "selective"
    tp_overlap: bool = False
    fp32_grads: bool = False

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.cp * self.dp


@dataclass(frozen=True)
class Shape:
    """A layout made concrete for one model and batch: layers per pipeline rank, the virtual
    stages, micro-batches per step and the real batch."""

    layout: Layout
    seq: int
    layers_by_rank: tuple[int, ...]
    virtual_stages: int
    micro_batches: int

    @property
    def batch_seqs(self) -> int:
        return self.micro_batches * self.layout.dp * self.layout.micro_batch

    @property
    def batch_tokens(self) -> int:
        return self.batch_seqs * self.seq


def layers_by_rank(layers: int, pp: int) -> tuple[int, ...]:
    """Even stages, or Llama 3's layout: the first and last stage hold one layer fewer, to
    make room for the embedding and the output head (Llama 3 paper, section 3.3.2)."""
    if layers % pp == 0:
        return (layers // pp,) * pp
    if pp >= 3 and (layers + 2) % pp == 0:
        per = (layers + 2) // pp
        return (per - 1,) + (per,) * (pp - 2) + (per - 1,)
    raise InputError(
        f"PP {pp} does not divide the {layers} layers (nor {layers} + 2, with one layer fewer on "
        "the first and last stage)",
        field="pp",
    )


# (Llama 3 took 16M tokens a step; past this a step's micro-batch count no longer fits a float)
MAX_BATCH_TOKENS = float(2**40)


def shape(model: Transformer, layout: Layout, gpus: int, seq: int, batch_tokens: float) -> Shape:
    """Check a layout against the model and GPU count, with a message that names the field."""
    for name in ("tp", "pp", "cp", "dp", "ep", "micro_batch"):
        if getattr(layout, name) < 1:
            raise InputError(f"{name} must be >= 1", field=name)
    if layout.gpus != gpus:
        raise InputError(
            f"TP {layout.tp} x PP {layout.pp} x CP {layout.cp} x DP {layout.dp} = {layout.gpus}, "
            f"not the {gpus} GPUs asked for",
            field="gpus",
        )
    if model.heads % layout.tp:
        raise InputError(f"TP {layout.tp} does not divide the {model.heads} attention heads", field="tp")
    if model.kv_heads % layout.tp and layout.tp % model.kv_heads:
        raise InputError(
            f"TP {layout.tp} neither divides nor is a multiple of the {model.kv_heads} KV heads", field="tp"
        )
    if model.ffn % layout.tp or model.moe_ffn % layout.tp:
        raise InputError(f"TP {layout.tp} does not divide the MLP width", field="tp")
    if seq < 1:
        raise InputError("sequence length must be >= 1", field="seq")
    if batch_tokens > MAX_BATCH_TOKENS:
        raise InputError(
            f"a batch of {batch_tokens:.3g} tokens is past any step's ({MAX_BATCH_TOKENS:.3g}, 2**40)",
            field="batch-tokens",
        )
    if layout.cp > 1 and seq % (2 * layout.cp):
        raise InputError(
            f"CP {layout.cp} needs the sequence ({seq}) to split into 2 x CP equal chunks "
            "(load-balanced causal attention)",
            field="cp",
        )
    if layout.ep > 1:
        if not model.is_moe:
            raise InputError("EP > 1 needs a mixture-of-experts model", field="ep")
        if model.experts % layout.ep or layout.dp % layout.ep:
            raise InputError(
                f"EP {layout.ep} must divide both the {model.experts} experts and DP {layout.dp}", field="ep"
            )
    if layout.zero not in (0, 1, 2, 3):
        raise InputError(f"ZeRO stage must be 0-3, not {layout.zero}", field="zero")
    if layout.recompute not in RECOMPUTE:
        raise InputError(
            f"recompute must be one of {', '.join(RECOMPUTE)}, not '{layout.recompute}'", field="recompute"
        )
    by_rank = layers_by_rank(model.layers, layout.pp)
    virtual = layout.virtual_stages
    if virtual is None:
        virtual = max(1, min(min(by_rank), max(by_rank) // 2)) if layout.pp > 1 else 1
    if virtual < 1 or virtual > min(by_rank):
        raise InputError(
            f"virtual stages must be between 1 and the {min(by_rank)} layers of the smallest stage",
            field="virtual_stages",
        )
    if virtual > 1 and layout.pp == 1:
        raise InputError("virtual stages need PP > 1", field="virtual_stages")
    if not batch_tokens > 0:
        raise InputError("the batch must hold at least one token", field="batch_tokens")
    batch_seqs = max(1, round(batch_tokens / seq))
    per_step = layout.dp * layout.micro_batch
    if batch_seqs < per_step:
        raise InputError(
            f"a batch of {batch_seqs} sequences cannot feed DP {layout.dp} x micro-batch "
            f"{layout.micro_batch}",
            field="batch_tokens",
        )
    return Shape(layout, seq, by_rank, virtual, math.ceil(batch_seqs / per_step))
