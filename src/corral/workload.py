"""The canonical job table: what asks for GPUs, in one columnar form every importer produces.

Columns carry their units in their names. The table is columnar (numpy arrays and lists),
not a list of objects. Files are read (job_columns.py) a column at a time where they can be,
and row by row here where that reader is unsure, to name the file, line and field of a bad
value.
"""

from __future__ import annotations

import gzip
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from corral.errors import InputError

REQUIRED_COLUMNS = ("job_id", "submit_s", "gpus", "duration_s", "queue")
OPTIONAL_COLUMNS = {
    "user": "",
    "kind": "experiment",
    "priority": "0",
    "preemptible": "true",
    "checkpoint_interval_s": "0",
    "restart_s": "0",
    "checkpoint_write_s": "0",
    "topology": "",
}
COLUMNS = REQUIRED_COLUMNS + tuple(OPTIONAL_COLUMNS)
KINDS = ("experiment", "pretrain", "finetune", "eval")
# A gang may require that all its GPUs share one of these domains ("" = no requirement).
TOPOLOGIES = ("", "host", "nvlink", "rack", "pod", "cluster")
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


# Times past this (about 31,700 years in seconds) would leave a float too coarse to tell a
# second apart, and a schedule's arithmetic would lose short jobs.
MAX_TIME_S = 1e12


@dataclass
class JobTable:
    """Jobs as columns. `line` is where each job came from in `source`, for error messages.

    `checkpoint_interval_s` is how often a job saves its state while running (0: it saves
    on preemption, so it loses nothing, but a failure loses its whole run); `restart_s` is
    what a restart after preemption or failure costs before useful work resumes;
    `checkpoint_write_s` is how long each checkpoint blocks training; `topology` is the
    domain all its GPUs must share.
    """

    job_id: list[str]
    submit_s: np.ndarray
    gpus: np.ndarray
    duration_s: np.ndarray
    queue: list[str]
    user: list[str]
    kind: list[str]
    priority: np.ndarray
    preemptible: np.ndarray
    source: str = "<memory>"
    line: np.ndarray | None = None
    extra: dict[str, list[str]] = field(default_factory=dict)
    checkpoint_interval_s: np.ndarray = None  # type: ignore[assignment]
    restart_s: np.ndarray = None  # type: ignore[assignment]
    topology: list[str] = None  # type: ignore[assignment]
    checkpoint_write_s: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        n = len(self.job_id)
        if self.checkpoint_interval_s is None:
            self.checkpoint_interval_s = np.zeros(n)
        if self.restart_s is None:
            self.restart_s = np.zeros(n)
        if self.checkpoint_write_s is None:
            self.checkpoint_write_s = np.zeros(n)
        if self.topology is None:
            self.topology = [""] * n

    def __len__(self) -> int:
        return len(self.job_id)

    def where(self, i: int) -> int | None:
        return None if self.line is None else int(self.line[i])

    @property
    def gpu_seconds(self) -> float:
        return float((self.gpus * self.duration_s).sum())

    @property
    def span_s(self) -> float:
        return float(self.submit_s.max() - self.submit_s.min()) if len(self) else 0.0

    def offered_load(self, fleet_gpus: int) -> float:
        """GPU-seconds asked / (fleet GPUs x trace span): 1.0 keeps every GPU busy on average."""
        span = self.span_s
        return math.inf if span <= 0 else self.gpu_seconds / (fleet_gpus * span)

    def with_load(self, load: float, fleet_gpus: int) -> JobTable:
        """Rescale arrival times (keeping order and the first arrival) so the offered load is `load`."""
        if not load > 0 or not math.isfinite(load):
            raise InputError(f"load must be a positive number, got {load}", field="load")
        current = self.offered_load(fleet_gpus)
        if not math.isfinite(current):
            raise InputError("cannot rescale the load of a trace whose jobs all arrive at once", field="load")
        t0 = float(self.submit_s.min())
        with np.errstate(over="ignore"):
            scaled = t0 + (self.submit_s - t0) * (current / load)
        if not scaled.max() <= MAX_TIME_S:
            too_long = f"load {load:g} spreads arrivals over more than {MAX_TIME_S:.0e} s"
            raise InputError(too_long, field="load")
        return JobTable(**{**self.__dict__, "submit_s": scaled})


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _check_header(header: list[str], source: str) -> None:
    """Refuse a header corral would misread: another separator, or a column named twice."""
    if len(header) == 1:
        for separator, name in ((";", "semicolons"), ("\t", "tabs")):
            if separator in header[0]:
                raise InputError(
                    f"columns separated by {name}; corral reads comma-separated CSV", source=source, line=1
                )
    twice = sorted({name for name in header if header.count(name) > 1})
    if twice:
        raise InputError(f"column '{twice[0]}' appears twice", source=source, line=1, field=twice[0])


def open_text(path: Path) -> TextIO:
    """Open a text table, gzip-compressed when its name ends in .gz."""
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return path.open(encoding="utf-8-sig", newline="")  # (utf-8-sig: Excel's byte-order mark)


def _from_rows(
    rows: list[dict[str, str]],
    header: list[str],
    source: str,
    first_line: int = 2,
    lines: list[int] | None = None,
) -> JobTable:
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InputError(f"missing column(s): {', '.join(missing)}", source=source, line=1, field=missing[0])
    if lines is None:
        lines = list(range(first_line, first_line + len(rows)))
    n = len(rows)
    if n == 0:
        raise InputError("no jobs in the table", source=source)
    submit = np.empty(n)
    duration = np.empty(n)
    gpus = np.empty(n, dtype=np.int64)
    priority = np.empty(n, dtype=np.int64)
    preemptible = np.empty(n, dtype=bool)
    checkpoint = np.empty(n)
    restart = np.empty(n)
    write = np.empty(n)
    job_id, queue, user, kind, topology = [], [], [], [], []
    seen: dict[str, int] = {}
    extra_names = [c for c in header if c not in COLUMNS]
    extra: dict[str, list[str]] = {c: [] for c in extra_names}
    for i, row in enumerate(rows):
        line = lines[i]

        def get(name: str, row: dict[str, str] = row) -> str:
            value = row.get(name)
            return OPTIONAL_COLUMNS.get(name, "") if value is None else value.strip()

        jid = get("job_id")
        if not jid:
            raise InputError("empty job id", source=source, line=line, field="job_id")
        if jid in seen:
            raise InputError(
                f"duplicate job id '{jid}' (first on line {seen[jid]})",
                source=source,
                line=line,
                field="job_id",
            )
        seen[jid] = line
        job_id.append(jid)
        submit[i] = parse_number(get("submit_s"), source, line, "submit_s", minimum=0.0, most=MAX_TIME_S)
        duration[i] = parse_number(
            get("duration_s"), source, line, "duration_s", minimum=0.0, strict=True, most=MAX_TIME_S
        )
        gpus[i] = parse_integer(get("gpus"), source, line, "gpus", minimum=1)
        priority[i] = parse_integer(get("priority") or "0", source, line, "priority", minimum=None)
        flag = get("preemptible").lower() or "true"
        if flag not in _TRUE | _FALSE:
            raise InputError(
                f"expected true or false, got '{flag}'", source=source, line=line, field="preemptible"
            )
        preemptible[i] = flag in _TRUE
        q = get("queue")
        if not q:
            raise InputError("empty queue", source=source, line=line, field="queue")
        queue.append(q)
        user.append(get("user"))
        k = get("kind") or "experiment"
        if k not in KINDS:
            raise InputError(
                f"unknown kind '{k}'; expected one of {', '.join(KINDS)}",
                source=source,
                line=line,
                field="kind",
            )
        kind.append(k)
        checkpoint[i] = parse_number(
            get("checkpoint_interval_s") or "0", source, line, "checkpoint_interval_s", 0.0
        )
        restart[i] = parse_number(get("restart_s") or "0", source, line, "restart_s", minimum=0.0)
        write_s = get("checkpoint_write_s") or "0"
        write[i] = parse_number(write_s, source, line, "checkpoint_write_s", minimum=0.0)
        topo = get("topology").lower()
        if topo not in TOPOLOGIES:
            raise InputError(
                f"unknown topology '{topo}'; expected empty or one of {', '.join(TOPOLOGIES[1:])}",
                source=source,
                line=line,
                field="topology",
            )
        topology.append(topo)
        for c in extra_names:
            extra[c].append(row.get(c, ""))
    return JobTable(
        job_id,
        submit,
        gpus,
        duration,
        queue,
        user,
        kind,
        priority,
        preemptible,
        source=source,
        line=np.asarray(lines, dtype=np.int64),
        extra=extra,
        checkpoint_interval_s=checkpoint,
        restart_s=restart,
        checkpoint_write_s=write,
        topology=topology,
    )


def parse_number(
    text: str, source: str, line: int, name: str, minimum: float, strict: bool = False, most: float = math.inf
) -> float:
    """A finite number of at least `minimum` (more than it when `strict`) and at most `most`,
    or an input error."""
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"not a number: '{text}'", source=source, line=line, field=name) from None
    if not math.isfinite(value):
        raise InputError(f"not a finite number: '{text}'", source=source, line=line, field=name)
    if value < minimum or (strict and value == minimum):
        relation = ">" if strict else ">="
        raise InputError(f"must be {relation} {minimum:g}, got {text}", source=source, line=line, field=name)
    if value > most:
        raise InputError(f"must be <= {most:g}, got {text}", source=source, line=line, field=name)
    return value


def parse_integer(text: str, source: str, line: int, name: str, minimum: int | None) -> int:
    """A whole number (written as one or as a float), or an input error."""
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"not an integer: '{text}'", source=source, line=line, field=name) from None
    if not math.isfinite(value) or value != int(value):
        raise InputError(f"not an integer: '{text}'", source=source, line=line, field=name)
    if abs(value) >= 2**53:  # (past this a float no longer counts one by one)
        raise InputError(f"too large: {text}", source=source, line=line, field=name)
    if minimum is not None and value < minimum:
        raise InputError(f"must be >= {minimum}, got {text}", source=source, line=line, field=name)
    return int(value)


def concat_jobs(tables: list[JobTable], source: str = "<combined>") -> JobTable:
    """One table of the jobs of `tables`, in order (their ids must not clash); an extra
    column one table lacks is empty for its jobs."""
    names = list(dict.fromkeys(k for t in tables for k in t.extra))
    return JobTable(
        job_id=[j for t in tables for j in t.job_id],
        submit_s=np.concatenate([t.submit_s for t in tables]),
        gpus=np.concatenate([t.gpus for t in tables]),
        duration_s=np.concatenate([t.duration_s for t in tables]),
        queue=[q for t in tables for q in t.queue],
        user=[u for t in tables for u in t.user],
        kind=[k for t in tables for k in t.kind],
        priority=np.concatenate([t.priority for t in tables]),
        preemptible=np.concatenate([t.preemptible for t in tables]),
        source=source,
        extra={k: [v for t in tables for v in t.extra.get(k, [""] * len(t.job_id))] for k in names},
        checkpoint_interval_s=np.concatenate([t.checkpoint_interval_s for t in tables]),
        restart_s=np.concatenate([t.restart_s for t in tables]),
        topology=[x for t in tables for x in t.topology],
        checkpoint_write_s=np.concatenate([t.checkpoint_write_s for t in tables]),
    )


def write_jobs(jobs: JobTable, path: str | Path) -> None:
    """Write the canonical table as CSV or Parquet (by extension), atomically."""
    import pyarrow as pa

    table = pa.table(
        {
            "job_id": jobs.job_id,
            "submit_s": jobs.submit_s,
            "gpus": jobs.gpus,
            "duration_s": jobs.duration_s,
            "queue": jobs.queue,
            "user": jobs.user,
            "kind": jobs.kind,
            "priority": jobs.priority,
            "preemptible": jobs.preemptible,
            "checkpoint_interval_s": jobs.checkpoint_interval_s,
            "restart_s": jobs.restart_s,
            "checkpoint_write_s": jobs.checkpoint_write_s,
            "topology": jobs.topology,
            **jobs.extra,
        }
    )
    write_table(table, Path(path))


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: Path, data: bytes) -> None:
    """Write a file whole, through a temporary name, with the umask's permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_table(table: object, path: Path) -> None:
    """Write a pyarrow table to CSV, CSV.gz or Parquet via a temporary file, so a failure
    leaves no half-written output."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~current_umask())  # (mkstemp makes it 0600; follow the umask)
    try:
        if path.suffix == ".parquet":
            pq.write_table(table, tmp)
        elif path.name.endswith(".csv.gz"):
            import pyarrow as pa

            with pa.CompressedOutputStream(tmp, "gzip") as stream:
                pcsv.write_csv(table, stream, pcsv.WriteOptions(quoting_style="needed"))
        else:
            pcsv.write_csv(table, tmp, pcsv.WriteOptions(quoting_style="needed"))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
