"""Importers: each turns one public trace format into the canonical job table, and
`read_jobs`, which takes any of them or the canonical table itself."""

from __future__ import annotations

import csv
from pathlib import Path

from corral.errors import reading
from corral.job_columns import read_canonical
from corral.traces import philly
from corral.workload import JobTable, open_text


def read_jobs(path: str | Path) -> JobTable:
    """Read a canonical job table (CSV or Parquet), or a Philly-format trace."""
    path = Path(path)
    with reading(path):
        if path.suffix != ".parquet" and path.is_file():
            with open_text(path) as handle:
                header = next(csv.reader(handle), None)
            if header is not None and philly.is_philly_header(header):
                return philly.read_philly(path)
        return read_canonical(path)
