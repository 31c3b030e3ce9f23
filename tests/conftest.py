"""Helpers shared by the tests: tiny fleets and job tables written by hand."""

from __future__ import annotations

import numpy as np
import pytest

from corral.fleet import Fleet, Segment
from corral.workload import JobTable


def make_jobs(rows: list[tuple], queue: str = "default") -> JobTable:
    """rows: (submit_s, gpus, duration_s[, queue[, preemptible]])."""
    n = len(rows)
    return JobTable(
        job_id=[f"j{i}" for i in range(n)],
        submit_s=np.array([r[0] for r in rows], dtype=float),
        gpus=np.array([r[1] for r in rows], dtype=np.int64),
        duration_s=np.array([r[2] for r in rows], dtype=float),
        queue=[r[3] if len(r) > 3 else queue for r in rows],
        user=[""] * n,
        kind=["experiment"] * n,
        priority=np.zeros(n, dtype=np.int64),
        preemptible=np.array([r[4] if len(r) > 4 else True for r in rows], dtype=bool),
    )


def flat_fleet(hosts: int, gpus_per_host: int, hosts_per_rack: int | None = None) -> Fleet:
    return Fleet(
        "test",
        [Segment("default", hosts, gpus_per_host, hosts_per_rack or hosts, racks_per_pod=1_000)],
    )


@pytest.fixture
def two_hosts_of_four() -> Fleet:
    return flat_fleet(2, 4)
