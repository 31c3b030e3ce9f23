"""Reservations and maintenance windows: hosts held for one queue, or emptied for
maintenance, over a window of time, as Slurm's `scontrol create reservation` holds nodes.

Every policy plans around them through placement, which is where a job is refused hosts it
may not use (`barred`):

- from the window's notice (`notice_s` before its start) to its start, a job may start on
  the reserved hosts only if, by the user's estimate, it ends by the start (a job with no
  estimate counts as running a year, so it never does);
- inside the window only the reservation's queue may use them; nobody may use a maintenance
  window's.

At the window's start the jobs still on its hosts that may not be there are stopped and
wait again (they save first, as a drain stops them); at its end the hosts are everyone's.
The mechanism that drives the policy (mechanism/driver.py) applies these, so both faces do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from corral.errors import InputError
from corral.windows import ReservationSpec


@dataclass(frozen=True)
class Reservation:
    """A reservation placed on hosts (numbers in the cluster state)."""

    spec: ReservationSpec
    hosts: np.ndarray

    @property
    def start_s(self) -> float:
        return self.spec.start_s

    @property
    def end_s(self) -> float:
        return self.spec.end_s


def pick_hosts(
    spec: ReservationSpec, pool_hosts: np.ndarray, host_gpus: np.ndarray, names: list[str]
) -> np.ndarray:
    """The hosts `spec` holds: those it names (by number in the pool, or by name), or the
    pool's last hosts, as many as its GPUs need. Raises InputError if it cannot."""
    if spec.hosts:
        out = []
        for host in spec.hosts:
            if host in names:
                out.append(names.index(host))
            elif host.isdigit() and int(host) < len(pool_hosts):
                out.append(int(pool_hosts[int(host)]))
            else:
                raise InputError(
                    f"reservation '{spec.name}': no host {host} in pool '{spec.pool}'", field="hosts"
                )
        return np.array(sorted(set(out)), dtype=np.int64)
    taken: list[int] = []
    held = 0
    for host in pool_hosts[::-1].tolist():
        if held >= spec.gpus:
            break
        taken.append(host)
        held += int(host_gpus[host])
    if held < spec.gpus:
        raise InputError(
            f"reservation '{spec.name}' asks {spec.gpus} GPUs but pool '{spec.pool}' has {held}", field="gpus"
        )
    return np.array(sorted(taken), dtype=np.int64)


class Reservations:
    """The reservations of a cluster, and what they bar each job from."""

    def __init__(self) -> None:
        self.items: list[Reservation] = []

    def __bool__(self) -> bool:
        return bool(self.items)

    def add(self, reservation: Reservation) -> None:
        self.items.append(reservation)

    def barred(self, queue: str, expected_s: float, now_s: float) -> np.ndarray | None:
        """The hosts a job of `queue` that would run `expected_s` more may not start on at
        `now_s` (None: none)."""
        barred = [
            r.hosts
            for r in self.items
            if r.start_s - r.spec.notice_s <= now_s < r.end_s
            and not (now_s + expected_s <= r.start_s if now_s < r.start_s else queue == r.spec.queue)
        ]
        if not barred:
            return None
        return barred[0] if len(barred) == 1 else np.unique(np.concatenate(barred))

    def boundaries(self) -> list[float]:
        """When a window starts or ends, in order."""
        return sorted({t for r in self.items for t in (r.start_s, r.end_s)})

    def starting(self, now_s: float) -> list[Reservation]:
        return [r for r in self.items if r.start_s == now_s]

    def ending(self, now_s: float) -> list[Reservation]:
        return [r for r in self.items if r.end_s == now_s]
