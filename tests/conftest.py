"""Helpers shared by the tests: tiny fleets and job tables written by hand."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


POSTGRES = os.environ.get("CORRAL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextmanager
def empty_database(kind: str, folder: Path) -> Iterator[str]:
    """The URL of a fresh, empty database: a SQLite file in `folder`, or a new database on
    the PostgreSQL server, dropped afterwards (skipped where none answers, unless
    CORRAL_REQUIRE_POSTGRES is set, as in CI)."""
    if kind == "sqlite":
        yield f"sqlite:///{folder}/corral-{uuid.uuid4().hex[:8]}.db"
        return
    import psycopg

    try:
        admin = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as err:
        if os.environ.get("CORRAL_REQUIRE_POSTGRES"):
            raise
        pytest.skip(f"no PostgreSQL server at {POSTGRES}: {err}")
    name = f"corral_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield POSTGRES.rsplit("/", 1)[0] + "/" + name
    finally:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_kind(request) -> str:
    """Each database the live face runs on, for a test that makes several of its own."""
    return request.param


@pytest.fixture
def database_url(database_kind, tmp_path):
    """A fresh, empty database of each kind."""
    with empty_database(database_kind, tmp_path) as url:
        yield url
