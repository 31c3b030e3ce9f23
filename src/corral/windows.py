"""Reservations and maintenance windows as a fleet file or the API gives them: which hosts,
for which queue (or for maintenance), when. How they bind is state/reservations.py's."""

from __future__ import annotations

import math
from dataclasses import dataclass

from corral.errors import InputError

DEFAULT_NOTICE_S = 86_400.0  # a day: jobs that would still run at the start stay off before it


@dataclass(frozen=True)
class ReservationSpec:
    """A reservation as a fleet file or the API gives it: whole `hosts` of `pool` (their
    numbers in the pool, or node names live), or `gpus` GPUs (the pool's last hosts, enough
    of them), for `queue`, or for maintenance when `queue` is None."""

    name: str
    start_s: float
    duration_s: float
    pool: str = "default"
    hosts: tuple[str, ...] = ()
    gpus: int = 0
    queue: str | None = None
    notice_s: float = DEFAULT_NOTICE_S

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    @property
    def maintenance(self) -> bool:
        return self.queue is None


def spec_from(data: dict, source: str, where: str) -> ReservationSpec:
    """A reservation from a fleet file's table (`where` names it in errors)."""
    known = {"name", "start_s", "duration_s", "pool", "hosts", "gpus", "queue", "maintenance", "notice_s"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"{where}: unknown key '{unknown[0]}'", source=source, field=unknown[0])

    def number(key: str, default: float | None = None) -> float:
        value = data.get(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            raise InputError(f"{where}: {key} must be a number of at least 0", source=source, field=key)
        return float(value)

    hosts = data.get("hosts", [])
    if not isinstance(hosts, list) or not all(
        isinstance(h, int | str) and not isinstance(h, bool) for h in hosts
    ):
        raise InputError(
            f"{where}: hosts must be a list of host numbers or names", source=source, field="hosts"
        )
    gpus = data.get("gpus", 0)
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
        raise InputError(f"{where}: gpus must be a whole number", source=source, field="gpus")
    if bool(hosts) == bool(gpus):
        raise InputError(f"{where}: give hosts or gpus (one of them)", source=source, field="hosts")
    maintenance = data.get("maintenance", False)
    queue = data.get("queue")
    if (queue is None) != bool(maintenance):
        raise InputError(
            f"{where}: give queue or maintenance = true (one of them)", source=source, field="queue"
        )
    duration = number("duration_s")
    if duration <= 0:
        raise InputError(f"{where}: duration_s must be more than 0", source=source, field="duration_s")
    return ReservationSpec(
        name=str(data.get("name", where)),
        start_s=number("start_s"),
        duration_s=duration,
        pool=str(data.get("pool", "default")),
        hosts=tuple(str(h) for h in hosts),
        gpus=int(gpus),
        queue=None if queue is None else str(queue),
        notice_s=number("notice_s", DEFAULT_NOTICE_S),
    )
