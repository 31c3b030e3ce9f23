"""Resizable (elastic) jobs: the optional job-table columns that declare them and the
scaling curve that says how fast one runs at a size it did not ask for.

A job is elastic when its table gives `min_gpus` < `max_gpus`. It asks for `gpus` (which
its `duration_s` refers to) when it waits; while it runs it may be resized to any whole
number of data-parallel steps of `step_gpus` between the two (default step: `min_gpus`).
Its throughput at n GPUs, relative to `gpus`, is (n / gpus) ** `scaling` (1: linear, the
default; under 1: each added replica helps less, as communication grows). A resize is a
checkpoint and a restart at the new size; the work left carries over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from corral.errors import InputError
from corral.workload import JobTable, parse_integer, parse_number

ELASTIC_COLUMNS = ("min_gpus", "max_gpus", "step_gpus", "scaling")


@dataclass(frozen=True)
class ElasticColumns:
    """Per job: the bounds, the step and the scaling exponent (rigid jobs: gpus, gpus,
    gpus, 1.0)."""

    min_gpus: list[int]
    max_gpus: list[int]
    step_gpus: list[int]
    scaling: list[float]


def elastic_columns(jobs: JobTable) -> ElasticColumns:
    """The elastic columns of `jobs` where given (blank: rigid), each checked against the
    job's `gpus`, naming the file, line and field of the first that is wrong."""
    n = len(jobs)
    gpus = jobs.gpus.tolist()
    out = ElasticColumns(list(gpus), list(gpus), list(gpus), [1.0] * n)
    given = {c: jobs.extra.get(c) for c in ELASTIC_COLUMNS}
    if not any(v is not None for v in given.values()):
        return out
    for i in range(n):
        line = jobs.where(i)  # (None: a job given by the API, not a file)
        text = {c: "" if v is None else str(v[i]).strip() for c, v in given.items()}
        if not any(text.values()):
            continue
        g, src, where = gpus[i], jobs.source, f"job '{jobs.job_id[i]}'"
        lo = parse_integer(text["min_gpus"] or str(g), src, line, "min_gpus", minimum=1)
        hi = parse_integer(text["max_gpus"] or str(g), src, line, "max_gpus", minimum=1)
        step = parse_integer(text["step_gpus"] or str(lo), src, line, "step_gpus", minimum=1)
        exponent = parse_number(text["scaling"] or "1", src, line, "scaling", 0.0, strict=True, most=1.0)
        if not lo <= g <= hi:
            message = f"{where}: needs min_gpus ({lo}) <= gpus ({g}) <= max_gpus ({hi})"
            raise InputError(message, source=src, line=line, field="min_gpus" if lo > g else "max_gpus")
        for name, size in (("min_gpus", lo), ("gpus", g), ("max_gpus", hi)):
            if size % step:
                message = f"{where}: {name} ({size}) is not a whole number of steps of {step} GPUs"
                raise InputError(message, source=src, line=line, field="step_gpus")
        out.min_gpus[i], out.max_gpus[i], out.step_gpus[i], out.scaling[i] = lo, hi, step, exponent
    return out


def speed(gpus: int, ref_gpus: int, exponent: float) -> float:
    """Work per second on `gpus` GPUs, relative to running on `ref_gpus` (1.0 when equal)."""
    return 1.0 if gpus == ref_gpus else math.pow(gpus / ref_gpus, exponent)
