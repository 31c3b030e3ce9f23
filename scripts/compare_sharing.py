"""Philly trace on Philly's GPUs shared by its virtual clusters (philly-shared), under the
core and the sharing policies at offered loads 0.6, 0.8 and 1.0: the comparison in
docs/sharing.md and docs/sharing-philly.png.

    python scripts/compare_sharing.py            # about 3 minutes on 2 cores
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from corral.fleet import load_fleet  # noqa: E402
from corral.sim.metrics import summary  # noqa: E402
from corral.simulate import simulate  # noqa: E402
from corral.traces import read_jobs  # noqa: E402

LOADS = (0.6, 0.8, 1.0)
POLICIES = ("fifo", "quota-fifo", "las", "ftf", "fair", "priority")
DOCS = Path(__file__).resolve().parent.parent / "docs"


def main() -> None:
    fleet = load_fleet("philly-shared")
    with resources.as_file(resources.files("corral.data").joinpath("philly_pollux.csv.gz")) as path:
        jobs = read_jobs(str(path))
    rows = []
    for load in LOADS:
        for policy in POLICIES:
            (result,) = simulate(jobs, fleet, [policy], load=load)
            row = {"load": load, **summary(result)}
            rows.append(row)
            print(
                f"load {load} {policy:>10}: avg JCT {row['avg_jct_s'] / 3600:6.2f} h, "
                f"p99 rho {row['p99_rho']:7.1f}, worst queue rho {row['worst_queue_rho']:6.2f}, "
                f"{row['wall_s']:.1f} s",
                file=sys.stderr,
            )
    write_table(rows)
    plot(rows)


def write_table(rows: list[dict]) -> None:
    lines = [
        "| load | policy | avg JCT (h) | median JCT (h) | p99 JCT (h) | avg delay (h) | preemptions "
        "| avg rho | p99 rho | max rho | worst queue rho | wall (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['load']} | {r['policy']} | {r['avg_jct_s'] / 3600:.2f} | {r['median_jct_s'] / 3600:.2f} "
            f"| {r['p99_jct_s'] / 3600:.1f} | {r['avg_wait_s'] / 3600:.2f} | {r['preemptions']:,} "
            f"| {r['avg_rho']:.2f} | {r['p99_rho']:.1f} | {r['max_rho']:,.1f} | {r['worst_queue_rho']:.2f} "
            f"| {r['wall_s']:.1f} |"
        )
    print("\n".join(lines))  # the table in docs/sharing.md


def plot(rows: list[dict]) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for policy in POLICIES:
        mine = [r for r in rows if r["policy"] == policy]
        loads = [r["load"] for r in mine]
        axes[0].plot(loads, [r["avg_jct_s"] / 3600 for r in mine], marker="o", label=policy)
        axes[1].plot(loads, [r["worst_queue_rho"] for r in mine], marker="o", label=policy)
        axes[2].plot(loads, [r["max_rho"] for r in mine], marker="o", label=policy)
    axes[0].set(xlabel="offered load", ylabel="average JCT (hours)", title="Philly on philly-shared: JCT")
    axes[1].set(
        xlabel="offered load",
        ylabel="worst queue's mean rho",
        yscale="log",
        title="finish-time fairness (lower is fairer)",
    )
    axes[2].set(
        xlabel="offered load", ylabel="worst job's rho", yscale="log", title="Themis' measure: worst rho"
    )
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(DOCS / "sharing-philly.png", dpi=110)


if __name__ == "__main__":
    main()
