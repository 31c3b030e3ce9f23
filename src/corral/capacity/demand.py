"""Serving demand over time, in GPUs needed per step, from three sources:

- a synthetic diurnal and weekly curve (peak/trough ratio, weekend dip, trend, noise);
- the Azure LLM inference traces (one hour of code and of conversation requests): their
  token sizes, through a stated per-replica throughput model, give the GPU-seconds a request
  costs, and their 5-minute request counts give the short-term burstiness laid over the
  daily curve;
- Alibaba's DLRM serving trace: GPUs its instances held, hour by hour over 31 days.

REFERENCE.md section 6: chat peaks at about 2x its trough on weekdays, code at about 10x.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources

import numpy as np

from corral.errors import InputError

DAY_S = 86400.0
WEEK_S = 7 * DAY_S


@cache
def serving_shapes() -> dict:
    """The packaged shapes (scripts/derive_data.py; sources in data/SOURCES.md)."""
    return json.loads(resources.files("corral.data").joinpath("serving_shapes.json").read_text())


@dataclass(frozen=True)
class Diurnal:
    """A weekly demand curve. `peak_gpus` is the weekday peak; the weekday trough is
    peak / `peak_to_trough`; weekends scale the whole day by `weekend`; `trend_per_week`
    grows demand geometrically; `noise` is the relative standard deviation of independent
    per-step noise. The curve is a raised cosine peaking at `peak_hour` local time."""

    peak_gpus: float
    peak_to_trough: float = 2.0
    weekend: float = 0.8
    trend_per_week: float = 0.0
    noise: float = 0.0
    peak_hour: float = 14.0

    def __post_init__(self) -> None:
        if not self.peak_gpus > 0:
            raise InputError("peak_gpus must be > 0", field="peak_gpus")
        if not self.peak_to_trough >= 1:
            raise InputError("peak_to_trough must be >= 1", field="peak_to_trough")
        if not 0 < self.weekend <= 1 or not self.noise >= 0:
            raise InputError("weekend must be in (0, 1] and noise >= 0", field="weekend")

    def curve(self, days: float, step_s: float, seed: int = 0) -> np.ndarray:
        t = np.arange(0.0, days * DAY_S, step_s)
        trough = self.peak_gpus / self.peak_to_trough
        phase = 2 * math.pi * ((t % DAY_S) / 3600.0 - self.peak_hour) / 24.0
        day = trough + (self.peak_gpus - trough) * 0.5 * (1 + np.cos(phase))
        weekday = (t // DAY_S) % 7  # day 0 is a Monday
        day = np.where(weekday >= 5, day * self.weekend, day)
        day = day * (1 + self.trend_per_week) ** (t / WEEK_S)
        if self.noise > 0:
            rng = np.random.default_rng(seed)
            day = day * np.clip(1 + self.noise * rng.standard_normal(len(t)), 0.0, None)
        return day


@dataclass(frozen=True)
class ReplicaModel:
    """What one serving replica delivers: prefill and decode tokens per second across its
    batch. The defaults are a stated assumption for a 70B-class model on 8 H100s with
    continuous batching (order of vLLM/TensorRT-LLM published throughputs)."""

    gpus: int = 8
    prefill_tokens_per_s: float = 40_000.0
    decode_tokens_per_s: float = 4_000.0

    def gpu_s_per_request(self, context_tokens: float, generated_tokens: float) -> float:
        return self.gpus * (
            context_tokens / self.prefill_tokens_per_s + generated_tokens / self.decode_tokens_per_s
        )


def llm_demand(
    kind: str,
    peak_requests_per_s: float,
    shape: Diurnal,
    days: float,
    step_s: float,
    seed: int = 0,
    replica: ReplicaModel | None = None,
) -> np.ndarray:
    """GPUs an LLM service needs per step: the diurnal request rate (peak given) times the
    GPU-seconds of the trace's mean request, with the trace's 5-minute burstiness laid over
    it. The trace is one deployment at a few requests per second; a service at rate r is
    many such streams, so the trace's relative deviations from its mean (drawn at random
    per step) shrink by sqrt(trace rate / r), as they would for independent streams."""
    trace = serving_shapes()["llm"].get(kind)
    if trace is None:
        raise InputError(f"unknown LLM trace '{kind}'; known: code, conv", field="kind")
    model = replica or ReplicaModel()
    per_request = model.gpu_s_per_request(trace["mean_context_tokens"], trace["mean_generated_tokens"])
    rate = replace(shape, peak_gpus=peak_requests_per_s, noise=0.0).curve(days, step_s)
    counts = np.array(trace["requests_per_5min"][:-1], dtype=float)  # the last bin is partial
    deviation = counts / counts.mean() - 1.0
    trace_rate = trace["requests"] / trace["span_s"]
    rng = np.random.default_rng(seed)
    burst = 1.0 + rng.choice(deviation, size=len(rate)) * np.sqrt(trace_rate / np.maximum(rate, trace_rate))
    return rate * per_request * burst


def dlrm_demand(scale: float, days: float, step_s: float) -> np.ndarray:
    """GPUs of the DLRM trace (hourly, held flat within the hour, repeated past its 31 days)
    times `scale`."""
    hourly = np.array(serving_shapes()["dlrm_gpus_hourly"], dtype=float)
    t = np.arange(0.0, days * DAY_S, step_s)
    return scale * hourly[(t // 3600).astype(int) % len(hourly)]
