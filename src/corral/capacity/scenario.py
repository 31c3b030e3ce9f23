"""fungible-fleet: meta-24k (24,576 H100s) shared for two weeks by an LLM chat service, a
code assistant, a ranking service, the research teams and one elastic pre-training run. Can
moving GPUs between serving and training keep serving's SLO and give training more?

Sizes are stated choices, not measurements: serving peaks at about 11,000 GPUs with
headroom (chat ~4,000, code ~2,000 at 10:1 weekday swing, ranking ~3,300 from Alibaba's DLRM
trace), research keeps 8,192 GPUs (16 teams x 512), and the pre-training job runs on 2,048
to 12,288 GPUs in data-parallel replicas of 256 (TP 8 x PP 16 x 2).
"""

from __future__ import annotations

import json
from pathlib import Path

from corral.capacity.broker import BROKERS, Broker
from corral.capacity.demand import Diurnal, dlrm_demand, llm_demand
from corral.capacity.sim import CapacityFleet, CapacityResult, Service, simulate_capacity
from corral.capacity.training import ElasticJob
from corral.errors import InputError

FLEET_GPUS = 24_576
RESEARCH_GPUS = 8_192
STEP_S = 300.0
HISTORY_DAYS = 7


def fungible_fleet(days: float = 14.0, seed: int = 0) -> CapacityFleet:
    if not days >= 2:
        raise InputError(f"fungible-fleet needs at least 2 days, got {days}", field="days")
    # A week of history before day 0 (a Monday) for the forecasts to learn from.
    total = days + HISTORY_DAYS
    chat = llm_demand("conv", 6000.0, Diurnal(1.0, 2.0, 0.8, 0.0), total, STEP_S, seed)
    code = llm_demand("code", 4300.0, Diurnal(1.0, 10.0, 0.3, 0.0, peak_hour=11.0), total, STEP_S, seed + 1)
    ranking = dlrm_demand(1.0, total, STEP_S)
    cut = int(HISTORY_DAYS * 86400 / STEP_S)
    services = tuple(
        Service(name, curve[cut:], per, startup, floor, history_gpus=curve[:cut])
        for name, curve, per, startup, floor in (
            ("llm-chat", chat, 8, 600.0, 16),
            ("code-assistant", code, 8, 600.0, 8),
            ("ranking", ranking, 1, 120.0, 256),
        )
    )
    training = ElasticJob("pretrain", min_gpus=2048, max_gpus=12_288, step_gpus=256, buffer_gpus=1024)
    return CapacityFleet(FLEET_GPUS, RESEARCH_GPUS, services, training, STEP_S)


def run_brokers(fleet: CapacityFleet, brokers: list[str]) -> list[CapacityResult]:
    for name in brokers:
        if name not in BROKERS:
            raise InputError(f"unknown broker '{name}'; known: {', '.join(BROKERS)}", field="broker")
    return [simulate_capacity(fleet, Broker(name)) for name in brokers]


def write_outputs(
    results: list[CapacityResult], out: Path, research: dict[str, dict[str, float]] | None = None
) -> list[Path]:
    """metrics.json (per broker) and, with matplotlib installed (the `plot` extra), a
    stacked plot of GPUs by class for each broker; each file written whole to a temporary
    name first."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    metrics = {r.broker: r.metrics() | (research or {}).get(r.broker, {}) for r in results}
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=1) + "\n")
    tmp.replace(out / "metrics.json")
    written.append(out / "metrics.json")
    try:
        import matplotlib
    except ImportError:
        return written
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(12, 3.2 * len(results)), sharex=True, squeeze=False)
    for ax, r in zip(axes[:, 0], results, strict=True):
        days = [t * r.step_s / 86400 for t in range(r.demand.shape[1])]
        layers = [r.provisioned[i] for i in range(len(r.service_names))]
        labels = [f"{n} (held)" for n in r.service_names]
        layers += [r.training_gpus, r.best_effort_gpus, [r.research_gpus] * len(days)]
        labels += ["pre-training (elastic)", "research, preemptible", "research quota"]
        ax.stackplot(days, *layers, labels=labels, alpha=0.85)
        ax.plot(days, r.demand.sum(axis=0), color="black", lw=0.8, label="serving demand")
        m = r.metrics()
        ax.set_title(
            f"{r.broker}: SLO {m['slo_attainment']:.2%}, training goodput "
            f"{m['training_goodput_gpu_hours'] / 1e6:.2f}M GPU-h, utilisation {m['gpu_utilization']:.1%}",
            fontsize=10,
        )
        ax.set_ylabel("GPUs")
        ax.set_ylim(0, r.fleet_gpus)
    axes[0, 0].legend(loc="upper left", fontsize=7, ncol=4)
    axes[-1, 0].set_xlabel("day (day 0 is a Monday)")
    fig.tight_layout()
    tmp_png = out / "fleet-by-class.tmp.png"
    fig.savefig(tmp_png, dpi=110)
    plt.close(fig)
    tmp_png.replace(out / "fleet-by-class.png")
    written.append(out / "fleet-by-class.png")
    return written
