"""The column reader against the row reader: on every table both read they give the same
jobs; where the row reader refuses a table, the column reader is unsure of it too (so the
refusal names the file, line and field)."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.errors import InputError
from corral.job_columns import read_canonical
from corral.workload import OPTIONAL_COLUMNS, write_jobs

NUMBERS = [
    "0",
    "1",
    "2",
    "8",
    " 8",
    "8 ",
    "8.0",
    "8.5",
    "-1",
    "1e3",
    "1E3",
    "+4",
    ".5",
    "5.",
    "1_0",
    "1e12",
    "1e13",
    "inf",
    "-inf",
    "nan",
    "NaN",
    "0x10",
    "9007199254740993",
    "",
    "x",
    "٣",
    "1e",
]
WORDS = [
    "",
    "a",
    "b",
    " a",
    "a ",
    "A",
    "true",
    "false",
    "yes",
    "No",
    "T",
    "0",
    "1",
    "maybe",
    "experiment",
    "pretrain",
    "eval",
    "host",
    "Rack",
    "pod",
    "nvlink",
    "mesh",
    "a\x1c",
    "\x85a",
    "\u2003a",
    'q"x',
    "é",
]

cell = {
    "job_id": st.sampled_from(["j1", "j2", "j3", "j4", "", " j1", "j1 ", "j\u00a0", "\u00a0j5"]),
    "submit_s": st.sampled_from(NUMBERS),
    "gpus": st.sampled_from(NUMBERS),
    "duration_s": st.sampled_from(NUMBERS),
    "queue": st.sampled_from(WORDS),
    "user": st.sampled_from(WORDS),
    "kind": st.sampled_from(WORDS),
    "priority": st.sampled_from(NUMBERS),
    "preemptible": st.sampled_from(WORDS),
    "checkpoint_interval_s": st.sampled_from(NUMBERS),
    "restart_s": st.sampled_from(NUMBERS),
    "checkpoint_write_s": st.sampled_from(NUMBERS),
    "topology": st.sampled_from(WORDS),
    "note": st.sampled_from(WORDS),
}
REQUIRED = ["job_id", "submit_s", "gpus", "duration_s", "queue"]


@st.composite
def tables(draw):
    optional = draw(st.lists(st.sampled_from([*OPTIONAL_COLUMNS, "note"]), unique=True, max_size=4))
    header = REQUIRED + optional
    n = draw(st.integers(1, 4))
    rows = [[draw(cell[name]) for name in header] for _ in range(n)]
    # mostly valid values, so that tables both readers load are common
    for row in rows:
        for k, name in enumerate(header):
            if draw(st.integers(0, 3)):
                row[k] = {
                    "job_id": f"j{id(row)}",
                    "queue": "a",
                    "kind": "eval",
                    "topology": "",
                    "preemptible": "no",
                    "user": "u",
                    "note": "n",
                }.get(name, "4")
    return header, rows


def _same(a, b) -> None:
    for name in ("job_id", "queue", "user", "kind", "topology", "extra"):
        assert getattr(a, name) == getattr(b, name), name
    for name in (
        "submit_s",
        "gpus",
        "duration_s",
        "priority",
        "preemptible",
        "checkpoint_interval_s",
        "restart_s",
        "checkpoint_write_s",
        "line",
    ):
        left, right = getattr(a, name), getattr(b, name)
        assert left.dtype == right.dtype and np.array_equal(left, right), name


def _compare(path) -> None:
    try:
        reference = read_canonical(path, by_column=False)
    except InputError:
        with pytest.raises(InputError):
            read_canonical(path)
        return
    _same(read_canonical(path), reference)


def _csv(header, rows, separator: str) -> str:
    def quoted(value: str) -> str:
        return f'"{value.replace(chr(34), chr(34) * 2)}"' if any(c in value for c in ',"') else value

    return "\n".join(separator.join(quoted(v) for v in line) for line in [header, *rows]) + "\n"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tables(), st.sampled_from([",", ", "]), st.booleans())
def test_csv_by_column_reads_what_rows_read(tmp_path, table, separator, gzipped):
    header, rows = table
    text = _csv(header, rows, separator)
    path = tmp_path / ("t.csv.gz" if gzipped else "t.csv")
    path.write_bytes(gzip.compress(text.encode()) if gzipped else text.encode())
    _compare(path)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tables(), st.booleans())
def test_parquet_by_column_reads_what_rows_read(tmp_path, table, typed):
    """Parquet of strings, or of the types a dataframe would give (numbers where every value
    is one, booleans for flags)."""
    header, rows = table
    columns = {}
    for k, name in enumerate(header):
        values = [row[k] for row in rows]
        if typed and name not in ("job_id", "queue", "user", "kind", "topology", "note"):
            try:
                numbers = [float(v) for v in values]
                columns[name] = pa.array(numbers)
                continue
            except ValueError:
                pass
        columns[name] = pa.array(values, pa.string())
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table(columns), path)
    _compare(path)


def test_a_blank_line_or_a_bad_value_is_named_by_its_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("job_id,submit_s,gpus,duration_s,queue\na,0,1,5,q\n\nb,0,x,5,q\n")
    with pytest.raises(InputError, match="line 4") as err:
        read_canonical(path)
    assert err.value.field == "gpus"
    path.write_text("job_id,submit_s,gpus,duration_s,queue\na,0,1,5,q\nb,0,2,5,q\n")
    jobs = read_canonical(path)
    assert jobs.line.tolist() == [2, 3] and jobs.gpus.tolist() == [1, 2]
    assert not math.isnan(jobs.duration_s.sum())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tables(), st.sampled_from(["out.csv", "out.csv.gz", "out.parquet"]))
def test_what_corral_writes_it_reads_back(tmp_path, table, name):
    """`trace import` and `workload synth` write tables corral reads back unchanged: ids with
    commas and quotes, queue names with spaces, extra columns."""
    header, rows = table
    source = tmp_path / "in.csv"
    source.write_text(_csv(header, rows, ","))
    try:
        jobs = read_canonical(source)
    except InputError:
        return
    out = tmp_path / name
    write_jobs(jobs, out)
    back = read_canonical(out)
    back.line = jobs.line
    _same(back, jobs)


def test_an_id_with_a_comma_survives_csv_gz(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text('job_id,submit_s,gpus,duration_s,queue\n"a,b",0,1,5,"team, one"\n')
    out = tmp_path / "out.csv.gz"
    write_jobs(read_canonical(source), out)
    back = read_canonical(out)
    assert back.job_id == ["a,b"] and back.queue == ["team, one"]
