"""How fast one matrix multiply runs, from its shape: the achieved fraction of a GPU's
datasheet peak for an (m x k) @ (k x n) product.

A GEMM kernel cuts the output into tiles, one per thread block, and runs them in waves of one
tile per streaming multiprocessor. Three things keep it below the best case:

- wave quantisation: the last wave runs part-empty, so 133 tiles on 132 SMs take two waves;
- tile fill: a 4,100-row output pads to 33 tiles of 128 rows, the last nearly empty;
- the K loop's fixed cost: loading the pipeline and writing the tile back are paid once per
  tile whatever k is, so a short reduction (k = d / TP of a narrow layer) wastes a larger share.

Smaller tiles waste less of a small problem but reuse each loaded element less, so the
model takes the best tile for each shape, each at its own rate.

The best case is the sustained rate of large GEMMs within a training step (`SUSTAINED`),
below the datasheet even at the best shapes: one number per GPU and precision, each
calibrated on one published training run.
A GEMM whose arithmetic intensity is too low for the GPU is bound by HBM instead (roofline).
"""

from __future__ import annotations

import functools
import math

from corral.hardware import GPU

# SMs per GPU, from NVIDIA's architecture whitepapers (A100: 108; H100 SXM5: 132; B200: 148
# as exposed to CUDA).
SMS = {"a100": 108, "h100": 132, "h200": 132, "b200": 148, "gb200": 148}

# Output tiles (rows, columns) a GEMM library chooses between, largest first: 128 x 256 and
# 256 x 128 for large problems on Ampere and Hopper, smaller ones where the big tiles would
# leave most of the GPU idle (cuBLAS picks per shape; the model takes the best).
TILES = ((128, 256), (256, 128), (128, 128), (64, 128), (128, 64), (64, 64))
# A smaller tile reuses each loaded element less: 2 tm tn / (tm + tn) FLOPs per element
# loaded. Its rate relative to the largest tile's is taken as I / (I + I0), normalised, with
# I0 the reuse at which a tile runs at half speed. Judgement: 128 x 128 tiles keep 95%, 64 x 64
# 79% (CUTLASS's profiler shows small tiles 10-25% slower at large shapes).
HALF_SPEED_REUSE = 32.0

# The K loop's fixed cost, in units of k: a tile pays about this many k-steps' worth of time
# to fill its software pipeline and write its result (CUTLASS multistage kernels keep 3-4
# stages of 64-wide k-slices in flight). Judgement, checked against the size trend of the
# validation rows (docs/planning.md).
K_OVERHEAD = 256

# The sustained fraction of datasheet peak of large GEMMs in a training step, per GPU and
# precision, each fitted to one published run (`published.calibrate`; the rows are marked
# `calibrates` in plan/published.py): A100 BF16 on MT-NLG 530B on 2,240 GPUs, H100 BF16 on
# Llama 3 405B on 8,192, H100 FP8 on NeMo's Llama 2 70B on 64. Below the best-case GEMM
# rates (about 0.86 of peak on A100 and 0.80 on H100 for BF16 in Bekman's "maximum
# achievable matmul FLOPS" measurements) by what a whole step loses besides shapes: power
# and clock limits, kernels that share the GPU with communication, launch gaps.
SUSTAINED = {
    ("a100", "bf16"): 0.556,
    ("h100", "bf16"): 0.633,
    ("h100", "fp8"): 0.543,
}
DEFAULT_GPU = "h100"  # (GPUs with no calibration of their own borrow H100's fractions)


def sustained(gpu: GPU, precision: str) -> float:
    key = (gpu.name, precision)
    if key in SUSTAINED:
        return SUSTAINED[key]
    return SUSTAINED.get((DEFAULT_GPU, precision), SUSTAINED[(DEFAULT_GPU, "bf16")])


def tile_rate(tile_m: int, tile_n: int) -> float:
    """A tile's rate relative to the largest tile's, from how often it reuses what it loads."""

    def speed(m: int, n: int) -> float:
        reuse = 2 * m * n / (m + n)
        return reuse / (reuse + HALF_SPEED_REUSE)

    return speed(tile_m, tile_n) / speed(*TILES[0])


def shape_efficiency(gpu: GPU, m: float, n: float, k: float) -> float:
    """The fraction of the best case a GEMM of this shape reaches: wave quantisation, tile
    fill and the K loop's fixed cost, on the best tile for the shape."""
    return _shape_efficiency(SMS.get(gpu.name, SMS[DEFAULT_GPU]), max(1.0, m), max(1.0, n), max(1.0, k))


@functools.lru_cache(maxsize=65536)
def _shape_efficiency(sms: int, m: float, n: float, k: float) -> float:
    """(A layout search asks for the same few shapes thousands of times.)"""
    best = 0.0
    for tile_m, tile_n in TILES:
        tiles_m, tiles_n = math.ceil(m / tile_m), math.ceil(n / tile_n)
        tiles = tiles_m * tiles_n
        wave = tiles / (math.ceil(tiles / sms) * sms)
        fill = (m / (tiles_m * tile_m)) * (n / (tiles_n * tile_n))
        best = max(best, wave * fill * tile_rate(tile_m, tile_n))
    return best * k / (k + K_OVERHEAD)


def gemm_s(
    gpu: GPU, peak_flops: float, precision: str, m: float, n: float, k: float, hbm_efficiency: float
) -> float:
    """Seconds for an (m x k) @ (k x n) product: compute at the shape's efficiency, or the
    HBM traffic of reading both operands and writing the result, whichever is longer."""
    flops = 2.0 * m * n * k
    compute = flops / (peak_flops * sustained(gpu, precision) * shape_efficiency(gpu, m, n, k))
    element = 1.0 if precision == "fp8" else 2.0
    traffic = element * (m * k + k * n) + 2.0 * m * n
    return max(compute, traffic / (gpu.hbm_bytes_per_s * hbm_efficiency))


def linear_s(
    gpu: GPU, peak_flops: float, precision: str, tokens: float, k: float, n: float, hbm: float
) -> float:
    """Forward and backward of a linear layer on `tokens` rows, `k` in and `n` out: the forward
    (tokens x k) @ (k x n), the input gradient (tokens x n) @ (n x k) and the weight gradient
    (k x tokens) @ (tokens x n), each at its own shape."""
    return (
        gemm_s(gpu, peak_flops, precision, tokens, n, k, hbm)
        + gemm_s(gpu, peak_flops, precision, tokens, k, n, hbm)
        + gemm_s(gpu, peak_flops, precision, k, n, tokens, hbm)
    )
