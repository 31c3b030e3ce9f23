"""Policy names as the CLI and the library accept them."""

from __future__ import annotations

from collections.abc import Callable

from corral.errors import InputError
from corral.scheduling.fifo import Fifo, FifoBackfill
from corral.scheduling.las import Las
from corral.scheduling.policy import Policy
from corral.scheduling.preemptive import Srtf
from corral.scheduling.sjf import Sjf

POLICIES: dict[str, Callable[[], Policy]] = {
    "fifo": Fifo,
    "fifo-backfill": FifoBackfill,
    "sjf": Sjf,
    "srtf": Srtf,
    "las": Las,
}


def make_policy(name: str) -> Policy:
    key = name.strip().lower()
    if key not in POLICIES:
        raise InputError(f"unknown policy '{name}'; known: {', '.join(POLICIES)}", field="policy")
    return POLICIES[key]()
