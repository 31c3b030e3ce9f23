"""Where a parallel group's traffic flows and how long a collective takes on it.

The fabric has three tiers, as in Meta's RoCE clusters (Llama 3 paper, section 3.3.1):
NVLink inside the host or NVL domain; full-bisection scale-out inside a pod (3,072 GPUs);
and links between pods oversubscribed 1:7. A group whose members sit `stride` GPUs apart
runs its collective hierarchically: within each tier first, on the data left after it.

Each of a ring's n - 1 steps also pays a fixed latency, so a collective's achieved bus
bandwidth grows with its message as NCCL's does (nccl-tests' bus-bandwidth curves): on eight
NVLink GPUs a 6 MB all-gather reaches half the large-message rate, a 100 MB one 95%.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from corral.hardware import GPU
from corral.plan.efficiency import COLLECTIVE_EFFICIENCY, NETWORK_STEP_S, NVLINK_STEP_S


@dataclass(frozen=True)
class Network:
    nvlink_domain_gpus: int
    nvlink_bytes_per_s: float
    scale_out_bytes_per_s: float
    pod_gpus: int = 3072
    oversubscription: float = 7.0

    @classmethod
    def for_gpu(cls, gpu: GPU, **overrides: float) -> Network:
        net = cls(gpu.nvlink_domain_gpus, gpu.nvlink_bytes_per_s, gpu.scale_out_bytes_per_s)
        return replace(net, **{k: v for k, v in overrides.items() if v is not None})

    def _tiers(self) -> tuple[tuple[float, float, float], ...]:
        """(GPUs the tier spans, bus bandwidth per GPU, latency of one ring step) from the
        inside out."""
        return (
            (self.nvlink_domain_gpus, self.nvlink_bytes_per_s * COLLECTIVE_EFFICIENCY, NVLINK_STEP_S),
            (self.pod_gpus, self.scale_out_bytes_per_s * COLLECTIVE_EFFICIENCY, NETWORK_STEP_S),
            (
                math.inf,
                self.scale_out_bytes_per_s * COLLECTIVE_EFFICIENCY / self.oversubscription,
                NETWORK_STEP_S,
            ),
        )

    def gather_s(self, full_bytes: float, size: int, stride: int) -> float:
        """Ring all-gather (or reduce-scatter) of a tensor of `full_bytes` over `size` ranks
        `stride` GPUs apart: (n - 1) / n of the data crosses each tier's links, in n - 1
        steps that each pay the tier's latency."""
        seconds, left, data = 0.0, size, full_bytes
        for span, bandwidth, step_s in self._tiers():
            if left <= 1:
                break
            members = left if math.isinf(span) else min(left, max(1, int(span // stride)))
            if members > 1:
                seconds += (members - 1) * (step_s + data / members / bandwidth)
                data /= members
                left = -(-left // members)
                stride *= members
        return seconds

    def link_bytes_per_s(self, span_gpus: int) -> float:
        """Bus bandwidth between ranks whose group spans `span_gpus` GPUs."""
        for span, bandwidth, _ in self._tiers():
            if span_gpus <= span:
                return bandwidth
        raise AssertionError("the last tier spans everything")

    def step_s(self, span_gpus: int) -> float:
        """The latency of one transfer between ranks whose group spans `span_gpus` GPUs."""
        return NVLINK_STEP_S if span_gpus <= self.nvlink_domain_gpus else NETWORK_STEP_S

    def all_to_all_s(self, bytes_per_rank: float, size: int, stride: int) -> float:
        """Each rank sends (n - 1) / n of its buffer to the others, one peer at a time."""
        if size <= 1:
            return 0.0
        span = size * stride
        return (size - 1) * (self.step_s(span) + bytes_per_rank / size / self.link_bytes_per_s(span))
