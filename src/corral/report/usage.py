"""Who used the GPUs, and how well: one accounting over runs, for both faces.

A run is one start of one job on its GPUs until it stopped (a simulation's
`runs-<policy>.csv`, or a live cluster's attempts). Per group of jobs it gives the GPU-hours
held, the GPU-hours of work kept (what a run's checkpoints saved, or all of a run that
completed), the GPU-hours lost (held less kept: work since the last checkpoint, restarts,
checkpoint writes), by how the run ended, goodput (kept over held), the jobs by end state,
the waits to a first start, and, per queue where nominal quotas are given, the GPU-hours
held beyond them.

Columns of the run table: job_id, run, start_s, end_s (NaN: still running), gpus, ended,
kept_s, queue, team, user, kind, submit_s, state (the job's).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

GROUPS = ("team", "queue", "user", "kind", "job")
HOUR_S = 3600.0


def usage(
    runs: dict[str, list[Any]],
    by: str = "queue",
    since_s: float = -math.inf,
    until_s: float = math.inf,
    nominal_gpus: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Per group (`by`: team, queue, user, kind or job), over the runs' overlap with
    [`since_s`, `until_s`): a run cut by the window counts the share of it inside (its kept
    work pro rata). A run still going counts as held, not kept nor lost (`gpu_hours_running`)."""
    key = "job_id" if by == "job" else by
    n = len(runs["job_id"])
    groups: dict[str, dict[str, Any]] = {}
    first_start: dict[str, float] = {}
    for i in range(n):
        start, end = float(runs["start_s"][i]), float(runs["end_s"][i])
        going = math.isnan(end)
        stop = min(until_s, end) if not going else until_s
        if going and math.isinf(stop):
            raise ValueError("a run still going needs an end to the window (until_s)")
        job = runs["job_id"][i]
        first_start[job] = min(first_start.get(job, math.inf), start)
        lo, hi = max(start, since_s), stop
        if hi <= lo and not (hi == lo == start):  # (outside the window; a run of no length counts)
            continue
        share = 1.0 if going or end == start else (hi - lo) / (end - start)
        gpus = float(runs["gpus"][i])
        g = groups.setdefault(str(runs[key][i]), _empty())
        held = gpus * (hi - lo) / HOUR_S
        g["gpu_hours_held"] += held
        if going:
            g["gpu_hours_running"] += held
        else:
            kept = gpus * float(runs["kept_s"][i]) * share / HOUR_S
            g["gpu_hours_kept"] += kept
            why = runs["ended"][i]
            g["gpu_hours_lost_by"][why] = g["gpu_hours_lost_by"].get(why, 0.0) + held - kept
        g["_jobs"][job] = (runs["state"][i], float(runs["submit_s"][i]))
        g["_runs"].append((lo, hi, gpus))
    out = []
    for name, g in sorted(groups.items()):
        g["gpu_hours_lost"] = g["gpu_hours_held"] - g["gpu_hours_kept"] - g["gpu_hours_running"]
        done = g["gpu_hours_held"] - g["gpu_hours_running"]
        g["goodput"] = g["gpu_hours_kept"] / done if done > 0 else None
        states: dict[str, int] = {}
        waits = []
        for job, (state, submit) in g.pop("_jobs").items():
            states[state] = states.get(state, 0) + 1
            waits.append(first_start[job] - submit)
        g["jobs"] = sum(states.values())
        g["jobs_by_state"] = dict(sorted(states.items()))
        g["wait_p50_s"] = float(np.percentile(waits, 50)) if waits else None
        g["wait_p99_s"] = float(np.percentile(waits, 99)) if waits else None
        spans = g.pop("_runs")
        if by == "queue" and nominal_gpus is not None and name in nominal_gpus:
            g["nominal_gpus"] = nominal_gpus[name]
            g["gpu_hours_borrowed"] = _above(spans, nominal_gpus[name]) / HOUR_S
        out.append({"group": name, **g})
    return out


def _empty() -> dict[str, Any]:
    return {
        "gpu_hours_held": 0.0,
        "gpu_hours_kept": 0.0,
        "gpu_hours_running": 0.0,
        "gpu_hours_lost_by": {},
        "_jobs": {},
        "_runs": [],
    }


def _above(spans: list[tuple[float, float, float]], level: float) -> float:
    """GPU-seconds held above `level` GPUs at once, over (start, end, gpus) spans."""
    events = sorted([(lo, gpus) for lo, _, gpus in spans] + [(hi, -gpus) for _, hi, gpus in spans])
    total, held, last = 0.0, 0.0, None
    for t, delta in events:
        if last is not None:
            total += max(0.0, held - level) * (t - last)
        held += delta
        last = t
    return total


def held_over_time(
    runs: dict[str, list[Any]], by: str, since_s: float, until_s: float, bins: int = 48
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """GPU-hours held per group in each of `bins` equal spans of [`since_s`, `until_s`):
    the edges, and per group its hours per span (a run split across the spans it covers;
    one still going runs to `until_s`). Summed over spans, a group's hours are what `usage`
    says it held."""
    key = "job_id" if by == "job" else by
    edges = np.linspace(since_s, until_s, bins + 1)
    out: dict[str, np.ndarray] = {}
    for i in range(len(runs["job_id"])):
        start, end = float(runs["start_s"][i]), float(runs["end_s"][i])
        end = until_s if math.isnan(end) else end
        lo, hi = np.maximum(edges[:-1], start), np.minimum(edges[1:], end)
        span = np.clip(hi - lo, 0.0, None)
        if start == end:  # (a run of no length holds nothing)
            continue
        group = out.setdefault(str(runs[key][i]), np.zeros(bins))
        group += float(runs["gpus"][i]) * span / HOUR_S
    return edges, dict(sorted(out.items()))
