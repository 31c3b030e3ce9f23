"""Policy names as the CLI and the library accept them."""

from __future__ import annotations

from collections.abc import Callable

from corral.errors import InputError
from corral.scheduling.fifo import Fifo, FifoBackfill
from corral.scheduling.ftf import FinishTimeFair
from corral.scheduling.las import Las
from corral.scheduling.policy import Policy
from corral.scheduling.preemptive import Srtf
from corral.scheduling.sharing import Parts, Shared
from corral.scheduling.sjf import Sjf

WEEK_S = 7 * 24 * 3600.0  # Slurm's default PriorityDecayHalfLife

POLICIES: dict[str, Callable[[], Policy]] = {
    "fifo": Fifo,
    "fifo-backfill": FifoBackfill,
    "sjf": Sjf,
    "srtf": Srtf,
    "las": Las,
    "ftf": FinishTimeFair,
    "quota-fifo": lambda: Shared("quota-fifo", Parts("fifo")),
    "fair": lambda: Shared("fair", Parts("fair", reclaim=True, backfill=True)),
    "fair-decay": lambda: Shared(
        "fair-decay", Parts("fair", reclaim=True, backfill=True, half_life_s=WEEK_S)
    ),
    "priority": lambda: Shared(
        "priority", Parts("priority", reclaim=True, priority_preemption=True, backfill=True)
    ),
}


def make_policy(name: str) -> Policy:
    key = name.strip().lower()
    if key not in POLICIES:
        raise InputError(f"unknown policy '{name}'; known: {', '.join(POLICIES)}", field="policy")
    return POLICIES[key]()
