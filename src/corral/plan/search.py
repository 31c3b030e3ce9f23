"""Search the parallel layouts of a model on a GPU count: every valid combination of TP, PP,
CP, DP (and EP for experts), micro-batch, schedule, ZeRO stage and recomputation, the ones
that do not fit dropped, the rest ranked by predicted throughput. Each estimate is a fraction
of a millisecond, so the search is exhaustive rather than heuristic.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from corral.errors import InputError
from corral.hardware import GPU
from corral.plan.layout import RECOMPUTE, Layout
from corral.plan.model import Transformer
from corral.plan.network import Network
from corral.plan.step import StepEstimate, estimate_step

MICRO_BATCHES = (1, 2, 4)
ZERO_STAGES = (1, 3)


@dataclass(frozen=True)
class SearchResult:
    ranked: list[StepEstimate]  # fitting layouts, fastest first
    tried: int  # candidate layouts estimated
    invalid: int  # rejected by the layout rules (divisibility, batch too small)
    too_big: int  # valid but over the GPU's memory


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def candidates(model: Transformer, gpu: GPU, gpus: int, seq: int) -> list[Layout]:
    """Every layout worth estimating. TP stays inside the NVLink domain (it communicates on
    every layer); CP is used only for sequences longer than 8K (below that its exchange is not
    worth it) and up to one CP rank per 8K tokens, as Llama 3 does."""
    if gpus < 1:
        raise InputError("GPU count must be >= 1", field="gpus")
    tps = [t for t in _divisors(gpus) if t <= gpu.nvlink_domain_gpus]
    cps = [c for c in _divisors(gpus) if c == 1 or (seq > 8192 and c <= seq // 8192)]
    eps = _divisors(model.experts) if model.is_moe else [1]
    out = []
    for tp, cp in itertools.product(tps, cps):
        for pp in _divisors(gpus // (tp * cp) if gpus % (tp * cp) == 0 else 0):
            if pp > model.layers:
                continue
            dp = gpus // (tp * cp * pp)
            for ep, mbs, zero, rc in itertools.product(eps, MICRO_BATCHES, ZERO_STAGES, RECOMPUTE):
                if dp % ep or (zero == 3 and pp > 1):
                    continue  # ZeRO-3 with a pipeline regathers weights per micro-batch: never wins
                schedules = (None, 1) if pp > 1 else (None,)
                for v in schedules:
                    out.append(Layout(tp, pp, cp, dp, ep, mbs, v, zero, rc))
    return out


def search(
    model: Transformer,
    gpu: GPU,
    gpus: int,
    seq: int,
    batch_tokens: float,
    network: Network | None = None,
    precision: str = "bf16",
) -> SearchResult:
    """Estimate every candidate; keep those that fit, best tokens per second first."""
    fitting: dict[Layout, StepEstimate] = {}
    tried = invalid = too_big = 0
    for layout in candidates(model, gpu, gpus, seq):
        tried += 1
        try:
            est = estimate_step(model, gpu, gpus, layout, seq, batch_tokens, network, precision)
        except InputError:
            invalid += 1
            continue
        if not est.fits:
            too_big += 1
            continue
        # The auto schedule may pick v = 1 too: keep one estimate per concrete layout.
        fitting[replace(layout, virtual_stages=est.virtual_stages)] = est
    ranked = sorted(fitting.values(), key=lambda e: (-e.tokens_per_s, e.memory_gib_per_gpu))
    return SearchResult(ranked, tried, invalid, too_big)
