"""The constants of the performance model: what fraction of a datasheet rate each class of
work achieves in a real training step. One set serves every model, layout and GPU; none is
fitted per case. docs/planning.md says where each comes from and how far to trust it.
"""

from __future__ import annotations

# Matrix multiplies: their efficiency depends on each GEMM's shape and the GPU (plan/gemm.py).

# FP8 training casts every GEMM's input to FP8 in the forward pass and its output gradient in
# the backward pass: read two bytes, write one, per element (Transformer Engine's casts).
FP8_CAST_BYTES = 3

# Fused (flash) attention kernels: FlashAttention-2 reaches about 35% of H100 peak (Shah et
# al. 2024, FlashAttention-3, abstract), the generation of kernel Llama 3 was trained with.
# The backward pass does 2.5x the forward's matmul work (it recomputes the scores) while
# MFU accounting credits it 2x; the model charges the 2.5x.
ATTENTION_EFFICIENCY = 0.35
ATTENTION_BACKWARD_WORK = 2.5

# With TP communication overlap, each collective is split into chunks pipelined with the
# GEMM beside it; the first chunk (of Megatron's default 4-way split) waits in the open.
TP_OVERLAP_EXPOSED = 0.25

# Elementwise and normalisation kernels are bound by HBM bandwidth; STREAM-like kernels
# sustain about 80-90% of datasheet HBM bandwidth on H100.
HBM_EFFICIENCY = 0.8

# NCCL bus bandwidth of large collectives as a fraction of the link rate: ~360 GB/s of
# 450 GB/s per direction over H100 NVLink (nccl-tests all_gather/reduce_scatter), and
# ~40 GB/s of a 400 Gb/s NIC over RoCE.
COLLECTIVE_EFFICIENCY = 0.8

# The fixed latency of one step of a ring collective or one point-to-point transfer: about
# 2 us between GPUs of an NVLink domain and 8 us across the network with NCCL's low-latency
# protocols (nccl-tests' small-message times; judgement within that range).
NVLINK_STEP_S = 2e-6
NETWORK_STEP_S = 8e-6

# Bytes moved per element by elementwise work in one layer's forward pass, in units of
# d_model (or the MLP width) per token, read plus write, BF16: two RMSNorms (read x, write
# y), two residual adds (read two, write one), rotary embedding on Q and K (read, write) and
# the gated activation (read gate and up, write one). The backward pass moves twice as much.
NORM_ELEMENTS = 2 * 2
RESIDUAL_ELEMENTS = 2 * 3
ROTARY_ELEMENTS = 2  # x (1 + kv_dim / d_model) for Q and K
BACKWARD_ELEMENTWISE = 2.0

# Adam in mixed precision touches per parameter: FP32 master, first and second moments (read
# and write each, 24 bytes), the gradient (4) and the BF16 copy written back (2).
OPTIMIZER_BYTES_PER_PARAM = 30

# Memory the framework holds besides tensors the model accounts for: CUDA context, NCCL
# buffers and caching-allocator fragmentation, as a fraction of HBM kept free.
MEMORY_HEADROOM = 0.05
