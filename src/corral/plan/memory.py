"""Memory per GPU: weights, gradients and optimizer states by precision and ZeRO stage,
activations by layout and recomputation, and the transient buffers (gathered K/V for context
parallelism, logits). Every pipeline rank is counted and the worst one decides whether the
layout fits.

Activations follow Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large
Transformer Models"), counted tensor by tensor for grouped-query attention, gated MLPs and
flash attention (which stores no score matrix); with sequence parallelism every stored
activation is split by TP. States follow the ZeRO paper (Rajbhandari et al. 2020): BF16
weights and gradients, 12 bytes of FP32 Adam state per parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

from corral.plan import pipeline
from corral.plan.layout import Shape
from corral.plan.model import Transformer

GIB = 2.0**30
WEIGHT_BYTES = 2
GRAD_BYTES = 2
FP32_GRAD_BYTES = 4
ADAM_BYTES = 12


@dataclass(frozen=True)
class RankParams:
    """Parameters one GPU of a pipeline rank holds before ZeRO sharding, split by how they
    shard: dense weights over DP x CP, expert weights over DP x CP / EP."""

    dense: float
    expert: float

    @property
    def total(self) -> float:
        return self.dense + self.expert


def rank_params(model: Transformer, shape: Shape, rank: int) -> RankParams:
    lay = shape.layout
    layers = shape.layers_by_rank[rank]
    expert = layers * (model.experts + model.shared_experts) * model.expert_params if model.is_moe else 0
    dense = layers * model.layer_params - expert
    if rank == 0:
        dense += model.embedding_params
    if rank == len(shape.layers_by_rank) - 1:
        dense += model.d_model + (model.head_params if not model.tied_embeddings or lay.pp > 1 else 0)
    return RankParams(dense / lay.tp, expert / (lay.tp * lay.ep))


def stored_activation_elements(model: Transformer, recompute: str) -> float:
    """Elements kept per token per layer for the backward pass, in units of d_model (before
    the TP split): what a layer must hold between its forward and backward."""
    d = model.d_model
    qkv = 1 + 2 * model.kv_heads * model.head_dim / d
    if model.is_moe:
        width = (model.active_experts + model.shared_experts) * model.moe_ffn / d
    else:
        width = model.ffn / d
    gates = 2 if model.swiglu else 1  # gate and up, or the one up projection
    if recompute == "full":
        return 1.0  # the layer's input only; the whole forward runs again
    if recompute == "selective":
        # block inputs, Q/K/V and the MLP's pre-activation; norms, the activation function
        # and the attention core are recomputed
        return 1 + qkv + 1 + gates * width
    if recompute == "pointwise":
        # what a compiler's min-cut partitioner (torch.compile) or fused norm and gate kernels
        # keep: the GEMM and attention inputs and outputs it cannot rebuild cheaply, i.e. the
        # block inputs, Q/K/V, the attention output and the MLP's pre-activation; the norms'
        # outputs and the activation function's output are rebuilt from them
        return 1 + qkv + 1 + 1 + gates * width
    # none: block input, norm output, Q/K/V, attention output; block input, norm output,
    # pre-activation and activation output of the MLP
    return (1 + 1 + qkv + 1) + (1 + 1 + gates * width + width)


def in_flight(shape: Shape, rank: int) -> float:
    """Micro-batches' worth of a rank's layers alive at its peak, under its schedule."""
    return pipeline.in_flight(len(shape.layers_by_rank), shape.virtual_stages, shape.micro_batches, rank)


@dataclass(frozen=True)
class Memory:
    weights_gib: float
    gradients_gib: float
    optimizer_gib: float
    activations_gib: float
    buffers_gib: float
    rank: int

    @property
    def total_gib(self) -> float:
        return (
            self.weights_gib
            + self.gradients_gib
            + self.optimizer_gib
            + self.activations_gib
            + self.buffers_gib
        )


def rank_memory(model: Transformer, shape: Shape, rank: int) -> Memory:
    lay = shape.layout
    params = rank_params(model, shape, rank)
    dp_dense = lay.dp * lay.cp
    dp_expert = dp_dense // lay.ep
    sharded = params.dense / dp_dense + params.expert / dp_expert
    weights = sharded if lay.zero >= 3 else params.total
    grads = sharded if lay.zero >= 2 else params.total
    optimizer = sharded if lay.zero >= 1 else params.total
    tokens = lay.micro_batch * shape.seq / lay.cp
    per_layer = (
        WEIGHT_BYTES * tokens * model.d_model * stored_activation_elements(model, lay.recompute) / lay.tp
    )
    activations = per_layer * shape.layers_by_rank[rank] * in_flight(shape, rank)
    # Transient: one layer's full activations while it is recomputed or run, CP's gathered K
    # and V (and their gradients), ZeRO-3's gathered layer, the last rank's logits (BF16 and
    # FP32 for the loss).
    working = WEIGHT_BYTES * tokens * model.d_model * stored_activation_elements(model, "none") / lay.tp
    kv_width = max(1, model.kv_heads // lay.tp) * model.head_dim
    cp_kv = 2 * 2 * WEIGHT_BYTES * lay.micro_batch * shape.seq * kv_width if lay.cp > 1 else 0.0
    gathered = WEIGHT_BYTES * model.layer_params / lay.tp if lay.zero >= 3 else 0.0
    logits = 0.0
    if rank == len(shape.layers_by_rank) - 1:
        logits = tokens * model.vocab / lay.tp * (WEIGHT_BYTES + 4)
    return Memory(
        weights * WEIGHT_BYTES / GIB,
        grads * (FP32_GRAD_BYTES if lay.fp32_grads else GRAD_BYTES) / GIB,
        optimizer * ADAM_BYTES / GIB,
        activations / GIB,
        (working + cp_kv + gathered + logits) / GIB,
        rank,
    )


def peak_memory(model: Transformer, shape: Shape) -> Memory:
    """The pipeline rank that needs the most memory."""
    return max(
        (rank_memory(model, shape, r) for r in range(len(shape.layers_by_rank))), key=lambda m: m.total_gib
    )
