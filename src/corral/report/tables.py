"""Rich tables for the comparison, the per-queue breakdown and trace statistics."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from rich.table import Table

__all__ = ["Table", "by_size", "comparison", "duration", "key_values", "per_queue", "reliability", "sharing"]


def duration(seconds: float) -> str:
    """Seconds as a short human duration: 45s, 12.5m, 3.2h, 4.1d."""
    if seconds != seconds:  # NaN
        return "-"
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{round(seconds) + 0:.0f}s"  # (+ 0: -0.3 s prints 0s, not -0s)


def clock_time(epoch_s: float) -> str:
    """A live cluster's time (seconds since the epoch) as people read it, in local time."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch_s))


def interval(seconds: float) -> str:
    """How often something recurs: every 2.3h; never (infinite); continuously (0)."""
    if math.isinf(seconds):
        return "never"
    return "continuously" if seconds == 0 else f"every {duration(seconds)}"


def count(value: float) -> str:
    """A large count with a decimal suffix, as people write token totals: 252M, 2.87T, 15.6T."""
    for suffix, size in (("P", 1e15), ("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:,.0f}"


# The comparison's columns, most wanted first: a narrow terminal shows a prefix of them.
COMPARISON: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = (
    ("policy", lambda r: r["policy"]),
    ("avg JCT", lambda r: duration(r["avg_jct_s"])),
    ("median JCT", lambda r: duration(r["median_jct_s"])),
    ("p99 JCT", lambda r: duration(r["p99_jct_s"])),
    ("avg delay", lambda r: duration(r["avg_wait_s"])),
    ("GPU util", lambda r: f"{r['gpu_utilization']:.1%}"),
    ("preempt", lambda r: f"{r['preemptions']:,}"),
    ("jobs", lambda r: f"{r['jobs']:,}"),
    ("p95 JCT", lambda r: duration(r["p95_jct_s"])),
    ("p99 delay", lambda r: duration(r["p99_wait_s"])),
    ("makespan", lambda r: duration(r["makespan_s"])),
    ("events", lambda r: f"{r['events']:,}"),
    ("wall", lambda r: f"{r['wall_s']:.2f}s"),
)
COLUMN_WIDTH = 11  # a cell of the comparison with its borders, enough for "82,247" or "10.4h"


def comparison(rows: list[dict[str, Any]], title: str, width: int | None = None) -> Table:
    """One row per policy; in `width` columns of terminal, the columns that fit, most wanted
    first, rather than every cell cut short."""
    policy_width = max([len("policy"), *(len(r["policy"]) for r in rows)]) + 3
    room = len(COMPARISON) if width is None else max(4, 1 + (width - policy_width) // COLUMN_WIDTH)
    shown = COMPARISON[:room]
    table = Table(title=title, title_justify="left")
    for name, _ in shown:
        table.add_column(name, justify="left" if name == "policy" else "right", no_wrap=True)
    best = min(r["avg_jct_s"] for r in rows)
    for r in rows:
        style = "bold green" if r["avg_jct_s"] == best and len(rows) > 1 else None
        table.add_row(*(cell(r) for _, cell in shown), style=style)
    if len(shown) < len(COMPARISON):
        hidden = ", ".join(name for name, _ in COMPARISON[room:])
        table.caption = f"(a wider terminal, or metrics.json with --out, also shows {hidden})"
    return table


def sharing(rows: list[dict[str, Any]]) -> Table:
    """What sharing cost: work lost to preemption, fragmentation, and Themis' fairness."""
    table = Table(
        title="sharing: preemption, fragmentation, finish-time fairness (rho)", title_justify="left"
    )
    cells = [
        [
            r["policy"],
            f"{r['preemptions']:,}",
            f"{r['lost_gpu_hours']:,.0f}",
            f"{r['restart_gpu_hours']:,.0f}",
            f"{r['fragmented_gpus']:,.1f}",
            f"{r['avg_rho']:.2f}",
            f"{r['p99_rho']:.1f}",
            f"{r['worst_queue_rho']:.2f}",
        ]
        for r in rows
    ]
    names = (
        "policy",
        "preempt",
        "lost GPU-h",
        "restart GPU-h",
        "frag. GPUs",
        "avg rho",
        "p99 rho",
        "worst queue rho",
    )
    table.add_column(names[0], overflow="fold")  # (a long policy spec folds rather than crowd out columns)
    for k, name in enumerate(names[1:], 1):
        # Numbers are never cut: the widest sets the column's least width, headers wrap.
        table.add_column(name, justify="right", min_width=max(len(row[k]) for row in cells))
    for row in cells:
        table.add_row(*row)
    return table


def by_size(policy: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{policy}: by gang size", title_justify="left")
    for name in ("GPUs", "jobs", "avg JCT", "p99 JCT", "avg wait", "max wait", "preempt", "lost GPU-h"):
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(
            r["gpus"],
            f"{r['jobs']:,}",
            duration(r["avg_jct_s"]),
            duration(r["p99_jct_s"]),
            duration(r["avg_first_wait_s"]),
            duration(r["max_first_wait_s"]),
            f"{r['preemptions']:,}",
            f"{r['lost_gpu_hours']:,.0f}",
        )
    return table


def per_queue(policy: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{policy}: by queue", title_justify="left")
    for name in ("queue", "pool", "jobs", "GPU-hours", "avg JCT", "p99 JCT", "avg delay", "preempt"):
        table.add_column(name, justify="left" if name in ("queue", "pool") else "right")
    for r in rows:
        table.add_row(
            r["queue"],
            r["pool"],
            f"{r['jobs']:,}",
            f"{r['gpu_hours']:,.0f}",
            duration(r["avg_jct_s"]),
            duration(r["p99_jct_s"]),
            duration(r["avg_wait_s"]),
            f"{r['preemptions']:,}",
        )
    return table


def key_values(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    for k, v in rows:
        table.add_row(k, v)
    return table


def reliability(policy: str, fleet: dict[str, Any], jobs: list[dict[str, Any]]) -> Table:
    """Each training job's effective training time, then the fleet's failure totals."""
    table = Table(title=f"{policy}: failures and effective training time", title_justify="left")
    for name in (
        "job",
        "GPUs",
        "days",
        "ETTR",
        "unexpected",
        "planned",
        "lost GPU-h",
        "restart",
        "checkpointing",
        "interval",
    ):
        table.add_column(name, justify="left" if name == "job" else "right")
    for j in jobs:
        table.add_row(
            j["job_id"],
            f"{j['gpus']:,}",
            f"{j['elapsed_days']:.1f}",
            f"{j['ettr']:.3f}",
            f"{j['unexpected_interruptions']}",
            f"{j['planned_interruptions']}",
            f"{j['lost_gpu_hours']:,.0f}",
            duration(j["restart_hours"] * 3600),
            duration(j["checkpoint_hours"] * 3600),
            duration(j["checkpoint_interval_s"]),
        )
    lost = fleet["lost_gpu_hours_by_cause"]
    top = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(lost.items(), key=lambda kv: -kv[1])[:4])
    table.caption = (
        f"{fleet['failures']} host failures; goodput {fleet['goodput']:.3f}, availability "
        f"{fleet['availability']:.4f}; lost GPU-hours by cause: {top or 'none'}"
    )
    table.caption_justify = "left"
    return table
