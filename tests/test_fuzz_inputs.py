"""Any input either loads or is refused with the project's input error: no traceback from
the job-table, Philly, Parquet and fleet readers, whatever bytes a file holds, and the CLI
exits 2 with one line."""

from __future__ import annotations

import contextlib
import gzip
import os
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from corral.cli import app
from corral.errors import InputError
from corral.fleet import load_fleet
from corral.traces import read_jobs

HEADER = "job_id,submit_s,gpus,duration_s,queue"
PHILLY = "timestamp,duration,num_gpus,gpu_time,cluster"
FLEET = '[[pools]]\nname = "a"\nhosts = 2\n'

cells = st.one_of(
    st.sampled_from(
        ["", "1", "-1", "0", "1e30", "inf", "nan", "1e308", "3.5", "x", "12345678901234567890123"]
    ),
    st.text(string.printable, max_size=6),
)
rows = st.lists(st.lists(cells, min_size=1, max_size=7).map(",".join), max_size=5)
whole_rows = st.lists(st.lists(cells, min_size=5, max_size=5).map(",".join), min_size=1, max_size=5)
raw = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda r: ("\n".join([HEADER, *r]) + "\n").encode(), rows),
    st.builds(lambda r: ("\n".join([HEADER, *r]) + "\n").encode(), whole_rows),
    st.builds(lambda r: ("\n".join([PHILLY, *r]) + "\n").encode(), whole_rows),
    st.builds(lambda r: ("\ufeff" + "\n".join([HEADER, *r]) + "\n").encode("utf-16"), rows),
)


def loads_or_refuses(read, path) -> None:
    with contextlib.suppress(InputError):
        read(str(path))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw, st.sampled_from(["jobs.csv", "jobs.csv.gz", "jobs.parquet", "jobs.txt"]), st.booleans())
def test_job_readers_load_or_refuse_any_bytes(tmp_path, data, name, gzipped):
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if gzipped else data)
    loads_or_refuses(read_jobs, path)


toml_values = st.sampled_from(
    ['"a"', "2", "-1", "0", "1" * 23, "1e30", "inf", "nan", "[]", "{}", "true", '"x[/]"']
)
toml_keys = st.sampled_from(
    ["name", "hosts", "gpus_per_host", "gpus_per_hosts", "hosts_per_rack", "quota_gpus"]
)
tomls = st.one_of(
    st.binary(max_size=120),
    st.builds(
        lambda lines: (FLEET + "\n".join(lines) + "\n").encode(),
        st.lists(st.builds(lambda k, v: f"{k} = {v}", toml_keys, toml_values), max_size=4),
    ),
    st.builds(
        lambda lines: ("\n".join(lines) + "\n").encode(),
        st.lists(
            st.sampled_from(["[[pools]]", "[[queues]]", "[[cohorts]]", 'name = "a"', "hosts = 1"]), max_size=8
        ),
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tomls)
def test_fleet_reader_loads_or_refuses_any_bytes(tmp_path, data):
    path = tmp_path / "fleet.toml"
    path.write_bytes(data)
    loads_or_refuses(load_fleet, path)


def test_a_folder_where_a_file_belongs_is_refused_in_one_line(tmp_path):
    runner = CliRunner()
    for args in (
        ["simulate", "--workload", str(tmp_path), "--fleet", "1x4", "--policy", "fifo"],
        ["simulate", "--workload", str(tmp_path / "x.csv"), "--fleet", str(tmp_path), "--policy", "fifo"],
        ["trace", "stats", str(tmp_path)],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


STAMP = "2017-10-09 07:01:55"


def _parquet_bytes() -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.table({"job_id": ["a"], "submit_s": [0.0], "gpus": [1], "duration_s": [1.0]}), sink)
    return sink.getvalue()


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("big.csv", f"{HEADER}\na,0,1e30,10,q\n".encode()),
        ("prio.csv", f"{HEADER},priority\na,0,1,10,q,12345678901234567890123\n".encode()),
        ("philly-inf.csv", f"{PHILLY}\n{STAMP},100,inf,0,vc\n".encode()),
        ("philly-nan.csv", f"{PHILLY}\n{STAMP},100,nan,0,vc\n".encode()),
        ("philly-big.csv", f"{PHILLY}\n{STAMP},100,1e30,0,vc\n".encode()),
        ("philly-forever.csv", f"{PHILLY}\n{STAMP},inf,1,0,vc\n".encode()),
        ("badbyte.csv", f"{HEADER}\na\x80,0,1,10,q\n".encode("latin-1")),
        ("utf16.csv", f"{HEADER}\na,0,1,10,q\n".encode("utf-16")),
        ("gzipped.csv", gzip.compress(f"{HEADER}\na,0,1,10,q\n".encode(), mtime=0)),
        ("parquet.csv", _parquet_bytes()),
    ],
)
def test_inputs_that_crashed_are_refused_with_the_file(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InputError) as err:
        read_jobs(str(path))
    assert name in str(err.value)


def test_a_byte_order_mark_is_read_as_excel_writes_it(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(f"\ufeff{HEADER}\na,0,1,10,q\n".encode())
    assert read_jobs(str(path)).job_id == ["a"]


def test_command_lines_that_crashed_exit_2_without_a_traceback(tmp_path):
    huge = tmp_path / "huge.toml"
    huge.write_text('[[pools]]\nname = "a"\nhosts = ' + "1" * 23 + "\n")
    runner = CliRunner()
    for args in (
        ["fleet", "show", str(huge)],
        ["simulate", "--scenario", "research-fleet", "--days", "1", "--seed", "-1"],
        ["reliability", "ettr", "--gpus", "8", "--rate", "inf"],
        [
            "plan",
            "search",
            "--model",
            "llama3-8b",
            "--gpu",
            "h100",
            "--gpus",
            "8",
            "--seq",
            "1",
            "--batch-tokens",
            "1e308",
        ],
        ["plan", "train", "--model", "llama3-8b", "--gpu", "h100", "--gpus", "8", "--batch-tokens", "1e308"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), args


def test_fleet_files_refuse_typos_and_duplicates(tmp_path):
    cases = {
        'name = "x"\nhosts = 2\ngpus_per_hosts = 4\n': "unknown key(s) ['gpus_per_hosts']",
        '[[pools]]\nname = "a"\nhosts = 2\n[[queues]]\nname = "q"\nnominal_gpus = 4\n'
        '[[queues]]\nname = "q"\nnominal_gpus = 4\n': "queue 'q' is given more than once",
    }
    for i, (text, says) in enumerate(cases.items()):
        path = tmp_path / f"f{i}.toml"
        path.write_text(text)
        with pytest.raises(InputError) as err:
            load_fleet(str(path))
        assert says in str(err.value) and str(path) in str(err.value)


def test_numbers_that_gave_nonsense_are_refused(tmp_path):
    from corral.fleet import load_fleet as fleet
    from corral.simulate import simulate
    from corral.state.placement import PlacementConfig

    path = tmp_path / "far.csv"
    path.write_text(f"{HEADER}\na,1e308,1,10,q\n")
    with pytest.raises(InputError, match="submit_s"):
        read_jobs(str(path))
    path.write_text(f"{HEADER}\na,0,1,10,q\nb,5,1,10,q\n")
    jobs = read_jobs(str(path))
    with pytest.raises(InputError, match="load"):
        jobs.with_load(1e-300, 4)
    for relax in (-5.0, float("nan"), float("inf")):
        with pytest.raises(InputError, match="relax-after"):
            PlacementConfig(relax)
    with pytest.raises(InputError, match="given more than once"):
        simulate(jobs, fleet("1x4"), ["fifo", "fifo"])


def test_csv_tables_as_people_write_them(tmp_path):
    path = tmp_path / "spaced.csv"
    path.write_text("job_id, submit_s, gpus, duration_s, queue\na, 0, 1, 10, q\n")
    jobs = read_jobs(str(path))
    assert (jobs.job_id, jobs.queue, jobs.gpus.tolist()) == (["a"], ["q"], [1])
    for text, says in (
        ("job_id;submit_s;gpus;duration_s;queue\na;0;1;10;q\n", "separated by semicolons"),
        ("job_id\tsubmit_s\tgpus\tduration_s\tqueue\na\t0\t1\t10\tq\n", "separated by tabs"),
        ("job_id,submit_s,gpus,gpus,duration_s,queue\na,0,1,2,10,q\n", "column 'gpus' appears twice"),
    ):
        path.write_text(text)
        with pytest.raises(InputError, match=says):
            read_jobs(str(path))


# Every command with small inputs, and every option given a value drawn from trouble: the
# CLI either does the work (exit 0) or says what is wrong (exit 2), never a traceback.
ODD = ["", "0", "-1", "1", "2", "1.5", "nan", "inf", "-inf", "1e308", "1e-300", "x", "[/]", "1T", "9" * 23]
GOOD = ["fifo", "las", "fair", "priority", "8", "64", "0.5", "4M", "1T"]  # (so that some lines run)
COMMANDS = {
    ("simulate", "--workload", "{jobs}", "--fleet", "1x8"): [
        "--policy", "--load", "--relax-after", "--out", "--reasons", "--seed", "--days", "--fleet",
    ],
    ("explain", "a", "--workload", "{jobs}", "--fleet", "1x8"): ["--policy", "--load", "--fleet"],
    ("trace", "stats", "{jobs}"): ["--fleet"],
    ("trace", "import", "{jobs}"): ["--out"],
    ("workload", "synth"): ["--jobs", "--rate", "--out", "--seed", "--queues", "--max-gpus"],
    ("fleet", "show"): [],
    ("plan", "train", "--model", "llama3-8b", "--gpu", "h100"): [
        "--gpus", "--tp", "--pp", "--dp", "--cp", "--seq", "--batch-tokens", "--tokens", "--flops",
    ],
    ("plan", "search", "--model", "llama3-8b", "--gpu", "h100"): [
        "--gpus", "--seq", "--batch-tokens", "--top",
    ],
    ("plan", "recipe"): ["--failure-rate"],
    ("reliability", "ettr"): ["--gpus", "--rate", "--checkpoint-s", "--restart-s", "--write-s"],
    ("usage", "--runs", "{runs}"): ["--by", "--since", "--until", "--out", "--runs"],
}  # fmt: skip


@st.composite
def command_lines(draw):
    base = draw(st.sampled_from(sorted(COMMANDS)))
    args = list(base)
    for option in draw(st.lists(st.sampled_from(COMMANDS[base] or ["--help"]), max_size=4, unique=True)):
        args.append(option)
        if option != "--help":
            args.append(draw(st.sampled_from(ODD + GOOD)))
    if base in (("fleet", "show"), ("plan", "recipe")):
        args.append(draw(st.sampled_from(["1x8", "meta-24k", "llama3-405b", *ODD])))
    for option, value in (("--jobs", "20"), ("--rate", "60"), ("--out", "{tmp}/out.csv")):
        if option in COMMANDS[base] and option not in args:  # (so that the work is done, too)
            args += [option, value]
    return args


@settings(
    max_examples=int(os.environ.get("CORRAL_FUZZ_EXAMPLES", 150)),
    # the same command lines every run in the suite (it must pass every time); set
    # CORRAL_FUZZ_EXPLORE=1 (and more examples) to look for new ones
    derandomize="CORRAL_FUZZ_EXPLORE" not in os.environ,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(command_lines())
def test_no_command_line_gives_a_traceback(tmp_path, args):
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(f"{HEADER}\na,0,2,100,q\nb,10,8,50,q\n")
    runs = tmp_path / "runs.csv"  # (a run table: a run completed, one preempted, one going)
    runs.write_text(
        "job_id,run,start_s,end_s,gpus,ended,kept_s,queue,team,user,kind,submit_s,state\n"
        "a,1,0,100,2,completed,100,q,t,u,experiment,0,succeeded\n"
        "b,1,10,40,8,preempted,20,q,t,u,experiment,10,running\nb,2,60,,8,running,,q,t,u,experiment,10,running\n"
    )
    args = [
        a.replace("{jobs}", str(jobs)).replace("{runs}", str(runs)).replace("{tmp}", str(tmp_path))
        for a in args
    ]
    with contextlib.chdir(tmp_path):  # (a relative --out such as `x` is written there)
        result = CliRunner().invoke(app, args)
    assert result.exit_code in (0, 2), (args, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
    if result.exit_code == 2:
        assert "Traceback" not in result.output


SUBMIT_OPTIONS = ["--gpus", "--queue", "--priority", "--estimate", "--grace", "--name", "--min-gpus"]
option_names = st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12).map(lambda s: "--" + s)


@settings(max_examples=40, deadline=None)
@given(option_names, st.sampled_from(["", "--", "sleep"]), st.sampled_from(["submit", "service create"]))
def test_an_unknown_option_is_refused_before_any_server_is_asked(option, before, command):
    """`corral submit --priorty 5 -- sleep 1` used to run `--priorty 5 sleep 1` as the job.
    Any option before the command that corral does not know exits 2 naming it, before the
    server (here one nothing listens on) is contacted; after `--`, or after the command's
    first word, it is the command's own."""
    known = option in SUBMIT_OPTIONS or any(p.opts and option in p.opts for p in _params(command))
    args = [*command.split(), "--gpus" if command == "submit" else "--replica-rps", "1"]
    if command == "service create":
        args.insert(2, "chat")
    env = {"CORRAL_SERVER": "http://127.0.0.1:1", "CORRAL_TOKEN": "t", "COLUMNS": "200"}
    result = CliRunner().invoke(app, [*args, option, "5", *([before] if before else []), "true"], env=env)
    if known:
        return
    assert result.exit_code == 2, (option, result.output)
    assert f"No such option: {option}" in result.output and "cannot reach" not in result.output
    separator = [before] if before and command == "submit" else ["--"]  # (service create: `--` only)
    after = CliRunner().invoke(app, [*args, *separator, "true", option], env=env)
    assert "No such option" not in after.output and "cannot reach the server" in after.output


def _params(command: str) -> list:
    import typer.main

    group = typer.main.get_command(app)
    for word in command.split():
        group = group.commands[word]  # type: ignore[attr-defined]
    return group.params


def test_a_misspelt_option_is_named_with_the_nearest_known_one():
    env = {"CORRAL_SERVER": "http://127.0.0.1:1", "CORRAL_TOKEN": "t", "COLUMNS": "200"}
    result = CliRunner().invoke(app, ["submit", "--gpus", "1", "--priorty", "5", "--", "sleep", "1"], env=env)
    assert result.exit_code == 2 and "No such option: --priorty" in result.output
    assert "--priority" in result.output
