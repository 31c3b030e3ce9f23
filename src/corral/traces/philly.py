"""Microsoft's Philly trace (ATC'19) as reduced by the Pollux (OSDI'21) artifact:
`timestamp,duration,num_gpus,gpu_time,cluster`, one row per GPU job, cluster = virtual cluster.

Each VC becomes a queue; arrival times become seconds after the first job's submission.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from corral.errors import InputError
from corral.workload import JobTable, open_text, parse_integer, parse_number

PHILLY_COLUMNS = ("timestamp", "duration", "num_gpus", "gpu_time", "cluster")


def is_philly_header(header: list[str]) -> bool:
    return [h.strip() for h in header[:3]] == list(PHILLY_COLUMNS[:3])


def read_philly(path: str | Path) -> JobTable:
    """Parse a Philly-format file; every bad row is an error with its line and field."""
    path = Path(path)
    source = str(path)
    stamps: list[float] = []
    durations: list[float] = []
    gpus: list[int] = []
    queues: list[str] = []
    lines: list[int] = []
    with open_text(path) as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in ("timestamp", "duration", "num_gpus", "cluster") if c not in header]
        if missing:
            raise InputError(
                f"missing column(s): {', '.join(missing)}", source=source, line=1, field=missing[0]
            )
        for row in reader:
            line = reader.line_num
            try:
                stamp = datetime.strptime(row["timestamp"].strip(), "%Y-%m-%d %H:%M:%S")
            except (ValueError, AttributeError):
                raise InputError(
                    f"not a timestamp 'YYYY-MM-DD HH:MM:SS': {row['timestamp']!r}",
                    source=source,
                    line=line,
                    field="timestamp",
                ) from None
            duration = parse_number(row["duration"] or "", source, line, "duration", minimum=0.0, strict=True)
            size = parse_integer(row["num_gpus"] or "", source, line, "num_gpus", minimum=1)
            vc = (row["cluster"] or "").strip()
            if not vc:
                raise InputError("empty virtual cluster", source=source, line=line, field="cluster")
            stamps.append(stamp.replace(tzinfo=UTC).timestamp())
            durations.append(duration)
            gpus.append(size)
            queues.append(vc)
            lines.append(line)
    if not stamps:
        raise InputError("no jobs in the trace", source=source)
    submit = np.asarray(stamps)
    submit -= submit.min()
    n = len(stamps)
    return JobTable(
        job_id=[f"philly-{i}" for i in range(n)],
        submit_s=submit,
        gpus=np.asarray(gpus, dtype=np.int64),
        duration_s=np.asarray(durations),
        queue=queues,
        user=[""] * n,
        kind=["experiment"] * n,
        priority=np.zeros(n, dtype=np.int64),
        preemptible=np.ones(n, dtype=bool),
        source=source,
        line=np.asarray(lines, dtype=np.int64),
    )
