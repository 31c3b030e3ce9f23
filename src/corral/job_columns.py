"""Reading a job table a column at a time, from Arrow (pyarrow's CSV reader, or Parquet), with
no Python object per value but the job ids and one string per distinct queue, user, kind and
topology: five million jobs load in well under two gigabytes.

`read_canonical` reads a canonical table, CSV or Parquet. The column reader only vouches for
tables it can check whole: any value it cannot read or that breaks a rule raises `Unsure`,
and the file is read row by row instead (workload.py), which
names the file, line and field of the first bad value. The two agree on every table both
read (tests/test_job_columns.py).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from corral.errors import InputError
from corral.workload import (
    _FALSE,
    _TRUE,
    COLUMNS,
    KINDS,
    MAX_TIME_S,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    TOPOLOGIES,
    JobTable,
    _check_header,
    _from_rows,
    _text,
    open_text,
)

MAX_INTEGER = 2**53  # (past this a float no longer counts one by one)


class Unsure(Exception):
    """The table is not one this reader can vouch for: read it row by row."""


def read_csv_columns(path: Path, header: list[str]) -> JobTable:
    """A CSV job table (its `header` already read and checked) as typed columns; `Unsure` if
    any line is not a plain record of the header's width (blank lines, quoted line breaks,
    bad UTF-8), so that job k is on line k + 2."""
    from pyarrow import csv

    try:
        table = csv.read_csv(
            path,
            read_options=csv.ReadOptions(column_names=header, skip_rows=1),
            parse_options=csv.ParseOptions(newlines_in_values=False, ignore_empty_lines=False),
            convert_options=csv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError, OSError):
        raise Unsure from None
    columns = _CsvColumns({name: table.column(name) for name in header}, table.num_rows)
    del table  # (each column is let go once read: the columns hold the only reference)
    return from_arrow(columns, str(path), np.arange(2, columns.num_rows + 2, dtype=np.int64))


class _CsvColumns:
    """A CSV file's columns of text as the table `from_arrow` reads, each let go once read."""

    def __init__(self, columns: dict[str, pa.ChunkedArray], rows: int) -> None:
        self.columns = columns
        self.column_names = list(columns)
        self.num_rows = rows

    def column(self, name: str) -> pa.ChunkedArray:
        """The row reader skips the spaces after a comma (and so reads `a, "b"` as b): they
        are stripped here, and a value that would then start with a quote is left to it."""
        column = pc.utf8_ltrim(self.columns.pop(name), characters=" ")
        if pc.any(pc.starts_with(column, '"')).as_py():
            raise Unsure
        return column


def read_parquet_columns(path: Path) -> JobTable:
    """A Parquet job table as typed columns, read one column at a time; `Unsure` for anything
    the row reader should judge (a file pyarrow cannot read, nulls in a column without a
    default, extra columns that are not strings)."""
    import pyarrow.parquet as pq

    try:
        columns = _ParquetColumns(pq.ParquetFile(path))
    except Exception:  # pyarrow raises several types for corrupt files
        raise Unsure from None
    names = columns.column_names
    if len(set(names)) != len(names):
        raise Unsure
    for name in names:
        if name not in COLUMNS and not _is_text(columns.schema.field(name).type):
            raise Unsure
    return from_arrow(columns, str(path), np.arange(1, columns.num_rows + 1, dtype=np.int64))


class _ParquetColumns:
    """A Parquet file as the table `from_arrow` reads, a column read only when asked for and
    not kept: the whole table never sits in memory beside the jobs made of it."""

    def __init__(self, file: object) -> None:
        self.file = file
        self.schema = file.schema_arrow  # type: ignore[attr-defined]
        self.column_names = self.schema.names
        self.num_rows = file.metadata.num_rows  # type: ignore[attr-defined]

    def column(self, name: str) -> pa.ChunkedArray:
        try:
            return self.file.read(columns=[name]).column(0)  # type: ignore[attr-defined]
        except Exception:  # (a column pyarrow cannot read)
            raise Unsure from None


def from_arrow(table: _CsvColumns | _ParquetColumns, source: str, lines: np.ndarray) -> JobTable:
    """The job table of `table`, checked against the rules the row reader applies."""
    n = table.num_rows
    header = table.column_names
    if n == 0 or any(name not in header for name in REQUIRED_COLUMNS):
        raise Unsure
    column = _Columns(table)
    submit = column.numbers("submit_s")
    duration = column.numbers("duration_s")
    checkpoint = column.numbers("checkpoint_interval_s")
    restart = column.numbers("restart_s")
    write = column.numbers("checkpoint_write_s")
    for values in (submit, duration, checkpoint, restart, write):
        _require(np.isfinite(values) & (values >= 0.0))
    _require((submit <= MAX_TIME_S) & (duration <= MAX_TIME_S) & (duration > 0.0))
    gpus = column.integers("gpus")
    _require(gpus >= 1)
    priority = column.integers("priority")
    job_id = column.text("job_id")
    _require(pc.all(pc.not_equal(job_id, "")).as_py() and _distinct(job_id))
    queue = column.text("queue")
    _require(pc.all(pc.not_equal(queue, "")).as_py())
    kind = column.text("kind")
    _require(pc.all(pc.is_in(kind, pa.array(KINDS))).as_py())
    topology = pc.utf8_lower(column.text("topology"))
    _require(pc.all(pc.is_in(topology, pa.array(TOPOLOGIES))).as_py())
    jobs = JobTable(
        job_id.to_pylist(),
        submit,
        gpus,
        duration,
        _shared_strings(queue),
        _shared_strings(column.text("user")),
        _shared_strings(kind),
        priority,
        column.flags("preemptible"),
        source=source,
        line=lines,
        extra={name: _shared_strings(table.column(name)) for name in header if name not in COLUMNS},
        checkpoint_interval_s=checkpoint,
        restart_s=restart,
        checkpoint_write_s=write,
        topology=_shared_strings(topology),
    )
    pa.default_memory_pool().release_unused()  # (the Arrow copies are done with)
    return jobs


class _Columns:
    """A table's known columns, trimmed, with the row reader's default for an empty value."""

    def __init__(self, table: _CsvColumns | _ParquetColumns) -> None:
        self.table = table

    def _raw(self, name: str) -> pa.ChunkedArray | None:
        if name not in self.table.column_names:
            return None
        column = self.table.column(name)
        if column.null_count and OPTIONAL_COLUMNS.get(name) is None:
            raise Unsure  # (a null where there is no default is the row reader's to name)
        return column

    def text(self, name: str, column: pa.ChunkedArray | None = None) -> pa.ChunkedArray:
        """The column of text `name` (given as `column` where already read)."""
        column = self._raw(name) if column is None else column
        default = OPTIONAL_COLUMNS.get(name, "")
        if column is None:
            return pa.chunked_array([pa.array([default] * self.table.num_rows, pa.string())])
        if not _is_text(column.type):
            raise Unsure
        column = pc.utf8_trim_whitespace(pc.fill_null(column, ""))
        if default:
            column = pc.if_else(pc.equal(column, ""), default, column)
        return column

    def numbers(self, name: str) -> np.ndarray:
        column = self._raw(name)
        if column is None:
            return np.full(self.table.num_rows, float(OPTIONAL_COLUMNS[name]))
        if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
            if column.null_count:
                raise Unsure
            return column.cast(pa.float64()).to_numpy()
        try:
            return pc.cast(self.text(name, column), pa.float64()).to_numpy()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise Unsure from None

    def integers(self, name: str) -> np.ndarray:
        values = self.numbers(name)
        _require(np.isfinite(values))
        _require((values == np.trunc(values)) & (np.abs(values) < MAX_INTEGER))
        return values.astype(np.int64)

    def flags(self, name: str) -> np.ndarray:
        column = self._raw(name)
        if column is not None and pa.types.is_boolean(column.type):
            if column.null_count:
                raise Unsure
            return column.to_numpy(zero_copy_only=False)
        words = pc.utf8_lower(self.text(name) if column is None else self.text(name, column))
        true = pc.is_in(words, pa.array(sorted(_TRUE)))
        _require(pc.all(pc.or_(true, pc.is_in(words, pa.array(sorted(_FALSE))))).as_py())
        return true.to_numpy(zero_copy_only=False)


def _distinct(values: pa.ChunkedArray) -> bool:
    """Whether no value appears twice: neighbours differ once sorted (a hash set of five
    million ids would cost more memory than the whole table)."""
    ordered = values.take(pc.sort_indices(values))
    return not len(values) or not pc.any(pc.equal(ordered[1:], ordered[:-1])).as_py()


def _require(ok: np.ndarray | bool) -> None:
    if not np.all(ok):
        raise Unsure


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _shared_strings(column: pa.ChunkedArray) -> list[str]:
    """The column as a list holding one string object per distinct value."""
    encoded = pc.fill_null(column, "").combine_chunks().dictionary_encode()
    values = np.array(encoded.dictionary.to_pylist(), dtype=object)
    return values[encoded.indices.to_numpy()].tolist()


def read_canonical(path: str | Path, by_column: bool = True) -> JobTable:
    """Read a canonical job table (CSV or Parquet). `corral.traces.read_jobs` also takes the
    public trace formats. `by_column=False` reads row by row only (the reference the column
    reader is tested against)."""
    path = Path(path)
    if not path.exists():
        raise InputError("workload file not found", source=str(path))
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            if by_column:
                return read_parquet_columns(path)
        except Unsure:
            pass  # (read row by row, to name the first bad value)
        try:
            table = pq.read_table(path)
        except Exception as err:  # pyarrow raises several types for corrupt files
            raise InputError(f"not a readable Parquet file: {err}", source=str(path)) from None
        header = table.column_names
        columns = {name: table.column(name).to_pylist() for name in header}
        rows = [
            {k: ("" if columns[k][i] is None else _text(columns[k][i])) for k in header}
            for i in range(table.num_rows)
        ]
        return _from_rows(rows, header, str(path), first_line=1)
    with open_text(path) as handle:
        reader = csv.reader(handle, skipinitialspace=True)  # ("a, 0, 1" as Excel users write it)
        try:
            header = [name.strip() for name in next(reader)]
        except StopIteration:
            raise InputError("empty file: no header", source=str(path), line=1) from None
        _check_header(header, str(path))
        if by_column and not any(c in name for name in header for c in "\r\n"):
            try:
                return read_csv_columns(path, header)
            except Unsure:
                pass  # (read row by row, to name the first bad value)
        rows, lines = [], []
        for record in reader:
            if not record:
                continue
            if len(record) != len(header):
                raise InputError(
                    f"{len(record)} values for {len(header)} columns", source=str(path), line=reader.line_num
                )
            rows.append(dict(zip(header, record, strict=True)))
            lines.append(reader.line_num)
    return _from_rows(rows, header, str(path), lines=lines)
