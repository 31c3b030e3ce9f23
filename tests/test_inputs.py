"""Bad input is reported with file, line and field, exits non-zero, and writes nothing."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from corral.cli import app
from corral.errors import InputError
from corral.fleet import load_fleet
from corral.traces import read_jobs

HEADER = "job_id,submit_s,gpus,duration_s,queue\n"
runner = CliRunner()


def table(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    path = tmp_path / "jobs.csv"
    path.write_text(header + body)
    return path


@pytest.mark.parametrize(
    ("body", "line", "field", "words"),
    [
        ("a,0,1,10,q\nb,5,1,-3,q\n", 3, "duration_s", "must be > 0"),
        ("a,0,1.5,10,q\n", 2, "gpus", "not an integer"),
        ("a,0,x,10,q\n", 2, "gpus", "not an integer"),
        ("a,zero,1,10,q\n", 2, "submit_s", "not a number"),
        ("a,0,1,10,q\na,1,1,10,q\n", 3, "job_id", "duplicate"),
        ("a,0,0,10,q\n", 2, "gpus", ">= 1"),
        ("a,0,1,nan,q\n", 2, "duration_s", "finite"),
        ("a,0,1,10\n", 2, None, "4 values for 5 columns"),
    ],
)
def test_bad_rows_name_line_and_field(tmp_path, body, line, field, words):
    with pytest.raises(InputError) as err:
        read_jobs(table(tmp_path, body))
    assert err.value.line == line
    assert err.value.field == field
    assert words in str(err.value)
    assert "jobs.csv" in str(err.value)


def test_missing_column(tmp_path):
    with pytest.raises(InputError) as err:
        read_jobs(table(tmp_path, "a,0,1,q\n", header="job_id,submit_s,gpus,queue\n"))
    assert err.value.field == "duration_s" and err.value.line == 1


def test_unknown_kind_and_bad_flag(tmp_path):
    header = "job_id,submit_s,gpus,duration_s,queue,kind,preemptible\n"
    with pytest.raises(InputError, match="unknown kind"):
        read_jobs(table(tmp_path, "a,0,1,10,q,training,true\n", header))
    with pytest.raises(InputError, match="true or false"):
        read_jobs(table(tmp_path, "a,0,1,10,q,eval,maybe\n", header))


def test_philly_bad_row(tmp_path):
    path = tmp_path / "philly.csv"
    path.write_text(
        "timestamp,duration,num_gpus,gpu_time,cluster\n"
        "2017-10-09 07:01:55,66.0,1,66.0,11cb48\n"
        "2017-10-09 07:01:56,66.0,2.5,66.0,11cb48\n"
    )
    with pytest.raises(InputError) as err:
        read_jobs(path)
    assert (err.value.line, err.value.field) == (3, "num_gpus")


def test_unknown_fleet_preset_and_bad_toml(tmp_path):
    with pytest.raises(InputError, match="unknown fleet"):
        load_fleet("meta-1m")
    bad = tmp_path / "fleet.toml"
    bad.write_text('name = "x"\n[[pools]]\nname = "a"\nhosts = "many"\n')
    with pytest.raises(InputError) as err:
        load_fleet(str(bad))
    assert err.value.field == "pools[0].hosts"
    bad.write_text('name = "x"\nhosts = 4\ngpu = "tpu"\n')
    with pytest.raises(InputError, match="unknown GPU"):
        load_fleet(str(bad))
    bad.write_text('name = "x"\nhosts = 4 4\n')
    with pytest.raises(InputError) as err:
        load_fleet(str(bad))
    assert err.value.line == 2


@pytest.mark.parametrize(
    "body, field, words",
    [
        (
            '[[cohorts]]\nname = "a"\nparent = "b"\n[[cohorts]]\nname = "b"\nparent = "a"\n',
            "parent",
            "a -> b -> a",
        ),
        ('[[cohorts]]\nname = "a"\nparent = "nope"\n', "parent", "unknown parent"),
        ('[[queues]]\nname = "a"\nnominal_gpus = true\n', "queues[0].nominal_gpus", "valid number"),
        ('[[queues]]\nname = "a"\nnominal_gpus = inf\n', "queues[0].nominal_gpus", "finite"),
        ('[[queues]]\nname = ""\nnominal_gpus = 1\n', "queues[0].name", "at least 1"),
        ('[[cohorts]]\nname = "a"\nweight = -2\n', "cohorts[0].weight", "greater than or equal to 0"),
        ("gpus_per_host = 8.5\n", "pools[0].gpus_per_host", "valid integer"),
        ("racks_per_pod = 0\n", "pools[0].racks_per_pod", "greater than or equal to 1"),
    ],
)
def test_fleet_file_errors_name_the_file_and_key(tmp_path, body, field, words):
    bad = tmp_path / "lab.toml"
    bad.write_text("hosts = 4\n" + body)
    with pytest.raises(InputError) as err:
        load_fleet(str(bad))
    assert err.value.field == field and words in err.value.message and str(bad) in str(err.value)


def test_pool_of_mixed_host_sizes_is_refused(tmp_path):
    """Gangs larger than a host take whole hosts of the pool's size: a pool of 4- and 8-GPU
    hosts once placed a 16-GPU gang as 8 GPUs on each of two 4-GPU hosts and crashed."""
    mixed = tmp_path / "fleet.toml"
    pool = '[[pools]]\nname = "a"\nhosts = 2\ngpus_per_host = {}\n'
    mixed.write_text('name = "x"\n' + pool.format(4) + pool.format(8))
    with pytest.raises(InputError, match="pool 'a' mixes hosts of 4 and 8 GPUs") as err:
        load_fleet(str(mixed))
    assert err.value.field == "gpus_per_host"
    result, out = _simulate(tmp_path, table(tmp_path, "j,0,16,10,a\n"), fleet=str(mixed))
    assert result.exit_code == 2 and "mixes hosts" in result.output and not out.exists()
    split = tmp_path / "split.toml"
    split.write_text('name = "x"\n' + pool.format(4) + pool.replace('"a"', '"b"').format(8))
    assert load_fleet(str(split)).pool_gpus == [8, 16]


def _simulate(tmp_path, workload, fleet="2x4", policy="fifo"):
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["simulate", "--workload", str(workload), "--fleet", fleet, "--policy", policy, "--out", str(out)],
    )
    return result, out


def test_cli_job_larger_than_its_pool_fails_cleanly(tmp_path):
    result, out = _simulate(tmp_path, table(tmp_path, "a,0,1,10,q\nb,1,9,10,q\n"))
    assert result.exit_code == 2
    assert "line 3" in result.output and "'gpus'" in result.output and "only 8" in result.output
    assert not out.exists()


def test_text_from_users_prints_as_written(tmp_path):
    workload = table(tmp_path, "a[/b],0,1,10,team[red]a\n")
    out = tmp_path / "out"
    args = ["simulate", "--workload", str(workload), "--fleet", "1x4", "--policy", "fifo", "--by-queue"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "team[red]a" in result.output
    result = runner.invoke(
        app, ["explain", "x[/]y", "--policy", "fifo", "--workload", str(workload), "--fleet", "1x4"]
    )
    assert result.exit_code == 2 and "no job 'x[/]y'" in result.output
    result = runner.invoke(
        app, ["explain", "a[/b]", "--policy", "fifo", "--workload", str(workload), "--fleet", "1x4"]
    )
    assert result.exit_code == 0 and "a[/b]" in result.output
    duplicate = table(tmp_path, "[/x],0,1,10,q\n[/x],1,1,10,q\n")
    result, out = _simulate(tmp_path, duplicate)
    assert result.exit_code == 2 and "[/x]" in result.output and not out.exists()


def test_cli_unknown_policy_fails_cleanly(tmp_path):
    result, out = _simulate(tmp_path, table(tmp_path, "a,0,1,10,q\n"), policy="lottery")
    assert result.exit_code == 2
    assert "unknown policy 'lottery'" in result.output
    assert not out.exists()


def test_cli_policy_with_parameters_runs_and_names_its_files(tmp_path):
    spec = "las:thresholds=20,60:knob=0:order=reference"
    result, out = _simulate(tmp_path, table(tmp_path, "a,0,4,10,q\nb,1,4,5,q\n"), policy=spec)
    assert result.exit_code == 0, result.output
    assert (out / f"jobs-{spec}.csv").exists()
    assert json.loads((out / "metrics.json").read_text())[0]["policy"] == spec


def test_cli_bad_policy_parameter_fails_cleanly(tmp_path):
    result, out = _simulate(tmp_path, table(tmp_path, "a,0,1,10,q\n"), policy="las:knob=-1")
    assert result.exit_code == 2
    assert "policy las: knob='-1'" in result.output
    assert not out.exists()


def test_cli_queue_without_pool(tmp_path):
    fleet = tmp_path / "f.toml"
    fleet.write_text('[[pools]]\nname = "a"\nhosts = 1\n[[pools]]\nname = "b"\nhosts = 1\n')
    result, out = _simulate(tmp_path, table(tmp_path, "x,0,1,10,a\ny,0,1,10,c\n"), fleet=str(fleet))
    assert result.exit_code == 2 and "queue 'c' has no pool" in result.output and "line 3" in result.output


def test_cli_simulate_contract(tmp_path):
    workload = table(tmp_path, "a,0,4,10,q\nb,1,8,5,q\nc,2,1,3,q\n")
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "simulate",
            "--workload",
            str(workload),
            "--fleet",
            "2x4",
            "--policy",
            "fifo",
            "--policy",
            "fifo-backfill",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["policy"] for m in metrics] == ["fifo", "fifo-backfill"]
    keys = {
        "policy",
        "jobs",
        "avg_jct_s",
        "median_jct_s",
        "p99_jct_s",
        "avg_wait_s",
        "makespan_s",
        "gpu_utilization",
        "preemptions",
        "events",
        "wall_s",
    }
    assert keys <= set(metrics[0])
    # fifo: A 0-10, B 10-15, C 15-18 -> JCTs 10, 14, 16.
    assert metrics[0]["avg_jct_s"] == pytest.approx(40 / 3)
    assert metrics[0]["makespan_s"] == 18
    # busy GPU-s = 40 + 40 + 3 = 83 over 8 GPUs x 18 s
    assert metrics[0]["gpu_utilization"] == pytest.approx(83 / 144)
    import csv

    rows = list(csv.DictReader((out / "jobs-fifo-backfill.csv").open()))
    assert [r["job_id"] for r in rows] == ["a", "b", "c"]
    assert [float(r["start_s"]) for r in rows] == [0, 10, 2]
    assert [float(r["end_s"]) for r in rows] == [10, 15, 5]
    assert {"submit_s", "gpus", "queue", "preemptions", "hosts"} <= set(rows[0])


def test_trace_import_roundtrip_and_stats(tmp_path):
    philly = tmp_path / "philly.csv"
    philly.write_text(
        "timestamp,duration,num_gpus,gpu_time,cluster\n"
        "2017-10-09 07:00:00,100.0,1,100.0,vc1\n"
        "2017-10-09 08:00:00,50.0,8,400.0,vc2\n"
    )
    for suffix in ("csv", "parquet"):
        out = tmp_path / f"jobs.{suffix}"
        result = runner.invoke(app, ["trace", "import", str(philly), "--out", str(out)])
        assert result.exit_code == 0, result.output
        jobs = read_jobs(out)
        assert jobs.submit_s.tolist() == [0, 3600]
        assert jobs.queue == ["vc1", "vc2"] and jobs.gpus.tolist() == [1, 8]
    result = runner.invoke(app, ["trace", "stats", str(out), "--fleet", "1x10", "--json"])
    stats = json.loads(result.output)
    assert stats["jobs"] == 2 and stats["gpu_hours"] == pytest.approx(500 / 3600)
    # 500 GPU-s over 10 GPUs x 3600 s
    assert stats["offered_load"] == pytest.approx(500 / 36000)


def test_workload_synth_is_seeded(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    for path in (a, b):
        result = runner.invoke(
            app, ["workload", "synth", "--jobs", "500", "--rate", "60", "--seed", "7", "--out", str(path)]
        )
        assert result.exit_code == 0, result.output
    assert a.read_bytes() == b.read_bytes()
    jobs = read_jobs(a)
    assert len(jobs) == 500
    # Poisson at 60/h: 499 gaps of mean 60 s.
    assert jobs.span_s / 499 == pytest.approx(60, rel=0.15)
    assert (jobs.gpus == 1).mean() == pytest.approx(0.93, abs=0.05)


def test_outputs_are_checked_before_the_run(tmp_path):
    workload = table(tmp_path, "a,0,1,10,q\n")
    afile = tmp_path / "taken"
    afile.write_text("keep")
    result, _ = _simulate(tmp_path, workload)  # (a first run works)
    assert result.exit_code == 0
    args = ["simulate", "--workload", str(workload), "--fleet", "1x4", "--policy", "fifo"]
    result = runner.invoke(app, [*args, "--out", str(afile)])
    assert result.exit_code == 2 and "is a file" in result.output and afile.read_text() == "keep"
    for reasons, says in ((tmp_path / "why.json", "corral writes .csv"), (tmp_path, "is a folder")):
        result = runner.invoke(app, [*args, "--reasons", str(reasons)])
        assert result.exit_code == 2 and says in result.output, result.output
        assert not (tmp_path / "why.json").exists()


def test_a_second_run_replaces_the_first_and_an_interrupted_one_changes_nothing(tmp_path, monkeypatch):
    import corral.cli.simulate as cli_simulate

    workload = table(tmp_path, "a,0,1,10,q\n")
    out = tmp_path / "out"
    first, _ = _simulate(tmp_path, workload, policy="fifo")
    assert first.exit_code == 0
    second, _ = _simulate(tmp_path, workload, policy="sjf")
    assert second.exit_code == 0 and "replaced" in second.output
    assert sorted(p.name for p in out.iterdir()) == ["jobs-sjf.csv", "metrics.json", "runs-sjf.csv"]

    def interrupted(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_simulate, "write_run_record", interrupted)
    third, _ = _simulate(tmp_path, workload, policy="fifo")
    assert third.exit_code != 0
    assert sorted(p.name for p in out.iterdir()) == ["jobs-sjf.csv", "metrics.json", "runs-sjf.csv"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left


def test_data_files_follow_the_umask(tmp_path):
    workload = table(tmp_path, "a,0,1,10,q\n")
    old = os.umask(0o022)
    try:
        result, out = _simulate(tmp_path, workload)
    finally:
        os.umask(old)
    assert result.exit_code == 0
    for name in ("jobs-fifo.csv", "runs-fifo.csv", "metrics.json"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name


def test_version_and_help_defaults_people_can_read():
    from corral import __version__

    assert runner.invoke(app, ["--version"]).output.strip() == f"corral {__version__}"
    helptext = runner.invoke(app, ["reliability", "ettr", "--help"]).output
    assert "3.79" in helptext and "3.7887" not in helptext


def test_scenario_errors_name_every_scenario_and_every_ignored_flag():
    result = runner.invoke(app, ["simulate", "--scenario", "nope"])
    assert result.exit_code == 2 and "fungible-fleet" in result.output and "research-fleet" in result.output
    ignored = (("--policy", "fifo"), ("--load", "0.5"), ("--workload", "x.csv"), ("--by-queue", None))
    for flag, value in ignored:
        args = ["simulate", "--scenario", "fungible-fleet", flag] + ([value] if value else [])
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and f"{flag} does not apply" in result.output


def test_durations_never_print_minus_zero():
    from corral.report.tables import duration

    seconds = (-0.3, -0.0, 0.4, 45.0, -5.0, 5400.0)
    assert [duration(s) for s in seconds] == ["0s", "0s", "0s", "45s", "-5s", "1.5h"]


def test_trace_example_writes_the_shipped_trace_that_corral_then_reads(tmp_path):
    from corral.traces import read_jobs

    out = tmp_path / "philly.csv"
    result = runner.invoke(app, ["trace", "example", "philly", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("timestamp,duration,num_gpus,gpu_time,cluster\n")
    assert len(read_jobs(str(out))) == 82_247  # the Pollux artifact's reduction of Philly
    bad = runner.invoke(app, ["trace", "example", "philly", "--out", str(tmp_path / "p.parquet")])
    assert bad.exit_code == 2 and not (tmp_path / "p.parquet").exists()
    unknown = runner.invoke(app, ["trace", "example", "helios", "--out", str(out)])
    assert unknown.exit_code == 2 and "known: philly" in unknown.output


def test_plan_names_the_gpu_count_when_it_is_zero():
    for command in ("train", "search"):
        result = runner.invoke(app, ["plan", command, "--model", "llama3-8b", "--gpu", "h100", "--gpus", "0"])
        assert result.exit_code == 2 and "--gpus" in result.output and "dp" not in result.output


def test_the_comparison_fits_a_narrow_terminal_without_cutting_cells():
    from rich.console import Console

    from corral.report.tables import COMPARISON, comparison

    row = dict(
        policy="fifo", jobs=82_247, avg_jct_s=13_251.0, median_jct_s=1_164.0, p95_jct_s=50_000.0,
        p99_jct_s=259_200.0, avg_wait_s=115.0, p99_wait_s=3_000.0, makespan_s=5e6, gpu_utilization=0.25,
        preemptions=0, events=164_494, wall_s=1.5,
    )  # fmt: skip
    narrow = Console(width=80, record=True, markup=False)
    narrow.print(comparison([row], "t", 80))
    text = narrow.export_text()
    assert "…" not in text and "3.7h" in text and "also shows" in text
    assert all(len(line) <= 80 for line in text.splitlines())
    wide = Console(width=200, record=True)
    wide.print(comparison([row], "t", 200))
    text = wide.export_text()
    assert all(name in text for name, _ in COMPARISON) and "also shows" not in text


def test_the_sharing_table_fits_a_narrow_terminal_without_cutting_numbers():
    from rich.console import Console

    from corral.report.tables import sharing

    row = dict(
        preemptions=123_456, lost_gpu_hours=12_345.0, restart_gpu_hours=1_234.0, fragmented_gpus=12.3,
        avg_rho=1.23, p99_rho=12.3, worst_queue_rho=2.34,
    )  # fmt: skip
    for policy in ("fair-decay", "fair-decay:half_life=86400"):
        narrow = Console(width=80, record=True, markup=False)
        narrow.print(sharing([row | {"policy": policy}]))
        text = narrow.export_text()
        assert "…" not in text and "123,456" in text and "2.34" in text and "worst" in text
        assert all(len(line) <= 80 for line in text.splitlines())


def test_synth_sets_the_rate_from_a_load_over_the_arrival_window(tmp_path) -> None:
    """GPU-seconds asked / (fleet GPUs x arrival window) = 0.9 on meta-24k, with no job
    longer than the cap."""
    out = tmp_path / "contended.parquet"
    args = ["workload", "synth", "--jobs", "5000", "--load", "0.9", "--fleet", "meta-24k"]
    result = runner.invoke(app, [*args, "--max-duration", "2d", "--seed", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    jobs = read_jobs(str(out))
    assert jobs.offered_load(load_fleet("meta-24k").total_gpus) == pytest.approx(0.9, rel=1e-6)
    assert jobs.duration_s.max() <= 2 * 86400
    for bad in (["--rate", "10", "--load", "0.9", "--fleet", "meta-24k"], ["--load", "0.9"], []):
        wrong = runner.invoke(
            app, ["workload", "synth", "--jobs", "10", "--out", str(tmp_path / "x.csv"), *bad]
        )
        assert wrong.exit_code != 0 and "--rate" in wrong.output
    assert not (tmp_path / "x.csv").exists()


def test_the_lab_shape_is_the_contended_benchmarks_regime() -> None:
    """80% of jobs on 1 GPU, 0.1% gangs of 1,024, sizes in powers of two; durations
    log-normal with a median of 30 minutes (sigma 1.6: the 84th percentile near 2.5 h)."""
    import numpy as np

    from corral.synth import synth_jobs

    jobs = synth_jobs(200_000, 100.0, seed=1, shape="lab")
    assert (jobs.gpus == 1).mean() == pytest.approx(0.8, abs=0.005)
    assert (jobs.gpus == 1024).mean() == pytest.approx(0.001, abs=0.0003)
    assert set(np.unique(jobs.gpus)) <= {1, 2, 4, 8, 16, 32, 64, 128, 1024}
    assert np.median(jobs.duration_s) == pytest.approx(1800, rel=0.03)
    assert np.percentile(jobs.duration_s, 84.13) == pytest.approx(1800 * np.exp(1.6), rel=0.05)
    with pytest.raises(InputError, match="shape"):
        synth_jobs(10, 1.0, shape="nope")
