"""Which hosts and jobs give way when capacity leaves a pool, and which spare replaces a lost
host: choices, so policy, kept apart from the mechanism that carries them out.

- Lending hosts to another use (serving) takes idle hosts, highest-numbered first (best fit
  packs jobs onto the lowest), and then stops the preemptible jobs that lose least.
- A lost host is replaced by a hot spare of its own pod; a job with no topology rule takes
  one from any pod of its pool when its own pod has none left.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from corral.scheduling.policy import View


def hosts_to_lend(view: View, pool: int, idle: np.ndarray, need: int) -> list[int]:
    """Up to `need` of the pool's hosts marked `idle` (per host of the fleet), highest first."""
    hosts = view.pool_hosts(pool)
    return hosts[idle[hosts]][::-1][:need].tolist()


def drain_order(view: View, running: Iterable[int]) -> list[int]:
    """The preemptible jobs among `running`, cheapest to stop first; never the others."""
    return view.cheapest_first(sorted(j for j in set(running) if view.preemptible[j])).tolist()


def spare_for(
    view: View, spares: dict[int, list[int]], host_pool: np.ndarray, job: int, pod: int
) -> int | None:
    """The spare host that replaces `job`'s lost host in `pod`, taken from `spares` (pod ->
    idle spare hosts, in order; `host_pool`: each host's pool), or None."""
    if spares.get(pod):
        return spares[pod].pop(0)
    if view.level[job] is None:
        for hosts in spares.values():
            if hosts and int(host_pool[hosts[0]]) == view.pool[job]:
                return hosts.pop(0)
    return None
