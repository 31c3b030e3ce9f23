"""Time per training step of a layout: compute by op class, TP/CP/EP collectives on the
critical path, the pipeline bubble and its point-to-point hops, data-parallel reduction left
after overlap, and the optimizer. The result carries MFU, HFU, memory and whether it fits.

The slowest pipeline rank sets the pace; a step is m micro-batches of it, the schedule's
bubble and its point-to-point messages (`pipeline`). FSDP/ZeRO traffic overlaps with one
micro-batch of compute at each end of the step (prefetched gathers, reductions as gradients
are ready); what does not fit in that window is exposed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from corral.errors import InputError
from corral.hardware import GPU
from corral.plan import efficiency as eff
from corral.plan import gemm, pipeline
from corral.plan.flops import recompute_flops_per_token, training_flops_per_token
from corral.plan.layout import Layout, Shape
from corral.plan.layout import shape as make_shape
from corral.plan.memory import GIB, WEIGHT_BYTES, Memory, RankParams, peak_memory, rank_params
from corral.plan.model import Transformer
from corral.plan.network import Network

PRECISIONS = ("bf16", "fp8")


def peak_flops(gpu: GPU, precision: str) -> float:
    """Datasheet dense peak of the matmuls' precision."""
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}", field="precision")
    if precision == "fp8":
        if not gpu.fp8_flops:
            raise InputError(f"{gpu.name} has no FP8 tensor cores", field="precision")
        return gpu.fp8_flops
    return gpu.bf16_flops


@dataclass(frozen=True)
class StepEstimate:
    model: str
    gpu: str
    gpus: int
    layout: Layout
    seq: int
    batch_tokens: int
    micro_batches: int
    virtual_stages: int
    step_s: float
    compute_s: float
    tp_comm_s: float
    cp_comm_s: float
    ep_comm_s: float
    bubble_s: float
    pp_p2p_s: float
    dp_exposed_s: float
    optimizer_s: float
    model_flops_per_token: float
    hardware_flops_per_token: float
    memory: Memory
    memory_capacity_gib: float
    peak_flops: float  # datasheet dense peak of the precision trained in: MFU's denominator
    power_w: float

    @property
    def tokens_per_s(self) -> float:
        return self.batch_tokens / self.step_s

    @property
    def tflops_per_gpu(self) -> float:
        """Model FLOPs per second per GPU (MFU's count): `model_tflops_per_gpu`."""
        return self.model_tflops_per_gpu

    @property
    def model_tflops_per_gpu(self) -> float:
        """What the model needs per token (6 N + attention) at the achieved rate: recomputed
        work does not count (MFU)."""
        return self.model_flops_per_token * self.tokens_per_s / self.gpus / 1e12

    @property
    def hardware_tflops_per_gpu(self) -> float:
        """What the GPUs execute, recomputation included (HFU): the figure Megatron-style
        reports print, 1.33x the model count under full recompute."""
        return self.hardware_flops_per_token * self.tokens_per_s / self.gpus / 1e12

    @property
    def mfu(self) -> float:
        return self.model_flops_per_token * self.tokens_per_s / self.gpus / self.peak_flops

    @property
    def hfu(self) -> float:
        return self.hardware_flops_per_token * self.tokens_per_s / self.gpus / self.peak_flops

    @property
    def memory_gib_per_gpu(self) -> float:
        return self.memory.total_gib

    @property
    def fits(self) -> bool:
        return self.memory_margin_gib >= 0

    @property
    def memory_margin_gib(self) -> float:
        return self.memory_capacity_gib - self.memory.total_gib

    def as_dict(self) -> dict[str, object]:
        out = {k: v for k, v in asdict(self).items() if k not in ("layout", "memory")}
        out["layout"] = asdict(self.layout) | {"virtual_stages": self.virtual_stages}
        out["memory"] = asdict(self.memory) | {"total_gib": self.memory.total_gib}
        for name in (
            "tokens_per_s",
            "tflops_per_gpu",
            "model_tflops_per_gpu",
            "hardware_tflops_per_gpu",
            "mfu",
            "hfu",
            "memory_gib_per_gpu",
            "fits",
        ):
            out[name] = getattr(self, name)
        out["memory_margin_gib"] = self.memory_margin_gib
        return out


@dataclass(frozen=True)
class _RankTime:
    compute_s: float
    tp_s: float
    cp_s: float
    ep_s: float

    @property
    def total_s(self) -> float:
        return self.compute_s + self.tp_s + self.cp_s + self.ep_s


def _rank_time(
    model: Transformer, shape: Shape, rank: int, gpu: GPU, net: Network, precision: str
) -> _RankTime:
    """One micro-batch's forward and backward through one pipeline rank."""
    lay = shape.layout
    layers = shape.layers_by_rank[rank]
    tokens = lay.micro_batch * shape.seq / lay.cp
    d = model.d_model
    peak = peak_flops(gpu, precision)
    attention_peak = gpu.bf16_flops * eff.ATTENTION_EFFICIENCY
    hbm = gpu.hbm_bytes_per_s * eff.HBM_EFFICIENCY

    linears = _linears(model, lay, tokens)
    matmul_s = sum(
        count * gemm.linear_s(gpu, peak, precision, rows, k, n, eff.HBM_EFFICIENCY)
        for count, rows, k, n in linears
    )
    context = shape.seq / 2 if model.causal else shape.seq
    attention_fwd = 4 * tokens * context * model.heads * model.head_dim / lay.tp
    width = (model.active_experts + model.shared_experts) * model.moe_ffn if model.is_moe else model.ffn
    rotary = eff.ROTARY_ELEMENTS * (1 + model.kv_heads * model.head_dim / d)
    elementwise_fwd = (
        WEIGHT_BYTES
        * tokens
        * ((eff.NORM_ELEMENTS + eff.RESIDUAL_ELEMENTS + rotary) * d + (3 if model.swiglu else 2) * width)
        / lay.tp
    )
    attention_s = (1 + eff.ATTENTION_BACKWARD_WORK) * attention_fwd / attention_peak
    elementwise_s = (1 + eff.BACKWARD_ELEMENTWISE) * elementwise_fwd / hbm
    if precision == "fp8":  # every GEMM's input cast forward, its output gradient backward
        cast = sum(count * rows * (k + n) for count, rows, k, n in linears)
        elementwise_s += eff.FP8_CAST_BYTES * cast / hbm
    forward_passes = 1.0
    if lay.recompute == "pointwise":  # norms and the activation function run again
        elementwise_s += elementwise_fwd / hbm
    elif lay.recompute == "selective":
        attention_s += attention_fwd / attention_peak
        elementwise_s += elementwise_fwd / hbm
    elif lay.recompute == "full":  # (the layer's forward GEMMs again)
        matmul_s += sum(
            count * gemm.gemm_s(gpu, peak, precision, rows, n, k, eff.HBM_EFFICIENCY)
            for count, rows, k, n in linears
        )
        attention_s += attention_fwd / attention_peak
        elementwise_s += elementwise_fwd / hbm
        forward_passes = 2.0

    activation_bytes = WEIGHT_BYTES * tokens * d
    tp_s = (4 + 4 * forward_passes) * net.gather_s(activation_bytes, lay.tp, 1) if lay.tp > 1 else 0.0
    cp_s = 0.0
    if lay.cp > 1:
        kv_bytes = (
            2 * WEIGHT_BYTES * lay.micro_batch * shape.seq * max(1, model.kv_heads // lay.tp) * model.head_dim
        )
        cp_s = (1 + forward_passes) * net.gather_s(kv_bytes, lay.cp, lay.tp)
    ep_s = 0.0
    if lay.ep > 1:
        routed = WEIGHT_BYTES * tokens * model.active_experts * d / lay.tp
        ep_s = (2 + 2 * forward_passes) * net.all_to_all_s(routed, lay.ep, lay.tp)

    if lay.tp_overlap:  # (hidden behind the GEMMs, all but the chunk that starts the pipeline)
        tp_s = max(tp_s - matmul_s, tp_s * eff.TP_OVERLAP_EXPOSED)
    compute_s = layers * (matmul_s + attention_s + elementwise_s)
    if rank == len(shape.layers_by_rank) - 1:
        logits_bytes = 4 * tokens * model.vocab / lay.tp
        head_s = gemm.linear_s(gpu, peak, precision, tokens, d, model.vocab / lay.tp, eff.HBM_EFFICIENCY)
        compute_s += head_s + 3 * logits_bytes / hbm
    return _RankTime(compute_s, layers * tp_s, layers * cp_s, layers * ep_s)


def _linears(model: Transformer, lay: Layout, tokens: float) -> list[tuple[float, float, float, float]]:
    """One layer's linear layers on one GPU as (how many, rows, k in, n out): Q/K/V and the
    output projection sharded by TP; the MLP's up (and gate) and down projections; for a
    mixture of experts, each local expert's projections on the tokens routed to it (the
    tokens of the EP group spread over the experts) and the shared experts on every token."""
    d, tp = model.d_model, lay.tp
    gates = 2 if model.swiglu else 1
    qkv = (d + 2 * model.kv_heads * model.head_dim) / tp
    out: list[tuple[float, float, float, float]] = [(1, tokens, d, qkv), (1, tokens, d / tp, d)]
    if not model.is_moe:
        return out + [(1, tokens, d, gates * model.ffn / tp), (1, tokens, model.ffn / tp, d)]
    width = model.moe_ffn / tp
    local = model.experts / lay.ep
    routed = tokens * lay.ep * model.active_experts / model.experts
    out += [(local, routed, d, gates * width), (local, routed, width, d)]
    if model.shared_experts:
        shared = model.shared_experts * width
        out += [(1, tokens, d, gates * shared), (1, tokens, shared, d)]
    return out


def _dp_gather_s(params: RankParams, shape: Shape, net: Network) -> float:
    """One all-gather (or reduce-scatter) of the largest rank's BF16 weights over the DP x CP
    group: first across CP (neighbours), then across DP (replicas, outermost)."""
    lay = shape.layout
    seconds = 0.0
    for count, group in ((params.dense, lay.dp), (params.expert, lay.dp // lay.ep)):
        if count <= 0:
            continue
        full = WEIGHT_BYTES * count
        seconds += net.gather_s(full, lay.cp, lay.tp) + net.gather_s(
            full / lay.cp, group, lay.tp * lay.cp * lay.pp
        )
    return seconds


def estimate_step(
    model: Transformer,
    gpu: GPU,
    gpus: int,
    layout: Layout,
    seq: int,
    batch_tokens: float,
    network: Network | None = None,
    precision: str = "bf16",
) -> StepEstimate:
    """Predict one training step of `model` on `gpus` GPUs cut up as `layout`."""
    peak = peak_flops(gpu, precision)
    net = network or Network.for_gpu(gpu)
    shape = make_shape(model, layout, gpus, seq, batch_tokens)
    ranks = [_rank_time(model, shape, r, gpu, net, precision) for r in range(layout.pp)]
    slowest = max(ranks, key=lambda r: r.total_s)
    stage_s = slowest.total_s
    p, v, m = layout.pp, shape.virtual_stages, shape.micro_batches

    tokens = layout.micro_batch * seq / layout.cp
    hop_s = 0.0
    if p > 1:
        span = 2 * layout.tp * layout.cp
        hop_s = net.step_s(span) + WEIGHT_BYTES * tokens * model.d_model / layout.tp / net.link_bytes_per_s(
            span
        )
    bubble_s = pipeline.bubble_stages(p, v) * stage_s
    p2p_s = pipeline.p2p_messages(p, v, m) * hop_s

    params = max((rank_params(model, shape, r) for r in range(p)), key=lambda q: q.total)
    gather_s = _dp_gather_s(params, shape, net) if layout.dp * layout.cp > 1 else 0.0
    if layout.zero >= 3:
        dp_exposed_s = m * max(0.0, 3 * gather_s - stage_s)
    else:
        dp_exposed_s = max(0.0, gather_s - stage_s / 3) + max(0.0, gather_s - 2 * stage_s / 3)

    shard = layout.dp * layout.cp if layout.zero >= 1 else 1
    optimizer_s = (
        eff.OPTIMIZER_BYTES_PER_PARAM * params.total / shard / (gpu.hbm_bytes_per_s * eff.HBM_EFFICIENCY)
    )

    step_s = m * stage_s + bubble_s + p2p_s + dp_exposed_s + optimizer_s
    model_flops = training_flops_per_token(model, seq)
    hardware_flops = model_flops + recompute_flops_per_token(model, seq, layout.recompute)
    return StepEstimate(
        model=model.name,
        gpu=gpu.name,
        gpus=gpus,
        layout=layout,
        seq=seq,
        batch_tokens=shape.batch_tokens,
        micro_batches=m,
        virtual_stages=v,
        step_s=step_s,
        compute_s=m * slowest.compute_s,
        tp_comm_s=m * slowest.tp_s,
        cp_comm_s=m * slowest.cp_s,
        ep_comm_s=m * slowest.ep_s,
        bubble_s=bubble_s,
        pp_p2p_s=p2p_s,
        dp_exposed_s=dp_exposed_s,
        optimizer_s=optimizer_s,
        model_flops_per_token=model_flops,
        hardware_flops_per_token=hardware_flops,
        memory=peak_memory(model, shape),
        peak_flops=peak,
        power_w=gpu.power_w,
        memory_capacity_gib=gpu.memory_gib * (1 - eff.MEMORY_HEADROOM) * 2**30 / GIB,
    )
