"""Sweeps: loads and seeds as documented, one row per (policy, load, seed) with the
contract's columns, resumable, failures reported without losing the others, and the same
metrics as a single `corral simulate`."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from corral import simulate, sweep
from corral.cli import app
from corral.errors import InputError
from corral.sim.metrics import summary
from corral.sweeps import loads_from, perturb
from corral.synth import synth_jobs
from corral.workload import write_jobs

COLUMNS = {"policy", "load", "seed", "avg_jct_s", "p99_jct_s", "avg_wait_s", "gpu_utilization", "wall_s"}


@pytest.fixture
def inputs(tmp_path):
    jobs = tmp_path / "jobs.csv"
    write_jobs(synth_jobs(300, 200.0, seed=3, max_gpus=16), jobs)
    fleet = tmp_path / "fleet.toml"
    fleet.write_text("hosts = 4\ngpus_per_host = 8\n")
    return str(jobs), str(fleet)


def test_loads_are_read_as_the_docs_say() -> None:
    assert loads_from("0.5:1.0:0.1") == [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert loads_from("0.8") == [0.8]
    for bad in ("0.5:1.0", "1.0:0.5:0.1", "a", "0:1:0.5", "0.5:1:0"):
        with pytest.raises(InputError):
            loads_from(bad)


def test_seed_zero_replays_the_trace_and_others_move_arrivals_by_half_a_gap() -> None:
    jobs = synth_jobs(200, 100.0, seed=1)
    assert perturb(jobs, 0) is jobs
    moved = perturb(jobs, 5)
    gap = (jobs.submit_s.max() - jobs.submit_s.min()) / (len(jobs) - 1)
    assert np.all(np.abs(moved.submit_s - jobs.submit_s) <= gap / 2 + 1e-9)
    assert np.any(moved.submit_s != jobs.submit_s)
    assert np.array_equal(perturb(jobs, 5).submit_s, moved.submit_s)
    assert moved.submit_s.min() >= jobs.submit_s.min()


def test_a_sweep_writes_one_row_per_run_and_resumes(inputs, tmp_path) -> None:
    workload, fleet = inputs
    out = tmp_path / "sweep"
    calls: list[int] = []
    table, failed = sweep(
        workload, fleet, ["fifo", "las"], [0.5, 1.0], 2, out, workers=2, progress=lambda d, t: calls.append(t)
    )
    assert failed == [] and table.num_rows == 8 and calls[-1] == 8
    stored = pq.read_table(out / "runs.parquet")
    assert set(stored.column_names) >= COLUMNS and stored.num_rows == 8
    keys = {(r["policy"], r["load"], r["seed"]) for r in stored.to_pylist()}
    assert keys == {(p, load, s) for p in ("fifo", "las") for load in (0.5, 1.0) for s in (0, 1)}
    calls.clear()
    again, _ = sweep(
        workload, fleet, ["fifo", "las"], [0.5, 1.0], 2, out, progress=lambda d, t: calls.append(t)
    )
    assert calls == [] and again.num_rows == 8  # (nothing new ran)
    more, _ = sweep(
        workload, fleet, ["fifo", "las"], [0.5, 1.0], 3, out, progress=lambda d, t: calls.append(t)
    )
    assert calls[-1] == 4 and more.num_rows == 12  # (only the third seed)


def test_a_sweep_row_is_what_simulate_gives(inputs, tmp_path) -> None:
    workload, fleet = inputs
    table, _ = sweep(workload, fleet, ["fifo"], [0.8], 1, tmp_path / "s", workers=1)
    (row,) = table.to_pylist()
    (result,) = simulate(workload, fleet, ["fifo"], load=0.8)
    expected = summary(result)
    for key in ("avg_jct_s", "p99_jct_s", "avg_wait_s", "gpu_utilization", "preemptions"):
        assert row[key] == pytest.approx(expected[key])


def test_a_failed_run_is_reported_and_the_others_kept(inputs, tmp_path) -> None:
    """A load that spreads arrivals past the simulator's clock fails in its worker."""
    workload, fleet = inputs
    table, failed = sweep(workload, fleet, ["fifo"], [1e-12, 0.8], 1, tmp_path / "s", workers=2)
    assert table.num_rows == 1 and table.to_pylist()[0]["load"] == 0.8
    assert len(failed) == 1 and failed[0][0].load == 1e-12 and "load" in failed[0][1]


def test_cli_sweep_contract(inputs, tmp_path) -> None:
    workload, fleet = inputs
    out = tmp_path / "cli"
    args = [
        "sweep",
        "--workload",
        workload,
        "--fleet",
        fleet,
        "--policy",
        "fifo",
        "--policy",
        "fifo-backfill",
    ]
    result = CliRunner().invoke(app, [*args, "--load", "0.5:1.0:0.5", "--seeds", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    stored = pq.read_table(out / "runs.parquet")
    assert set(stored.column_names) >= COLUMNS and stored.num_rows == 8
    bad = CliRunner().invoke(app, [*args, "--load", "0.5:x", "--out", str(out)])
    assert bad.exit_code != 0 and "load" in bad.output
    unknown = CliRunner().invoke(
        app, ["sweep", "--workload", workload, "--fleet", fleet, "--policy", "nope", "--load", "1"]
    )
    assert unknown.exit_code != 0 and "nope" in unknown.output


def test_a_sweep_on_ray_gives_the_same_rows(inputs, tmp_path) -> None:
    """On a Ray cluster started here (the runs as tasks), the same metrics as on local
    processes, and a failed task reported the same way."""
    import ray  # (the test extra installs it)

    workload, fleet = inputs
    try:
        on_ray, failed = sweep(
            workload, fleet, ["fifo", "las"], [1e-12, 0.5], 2, tmp_path / "ray", ray="local"
        )
    finally:
        ray.shutdown()
    local, _ = sweep(workload, fleet, ["fifo", "las"], [0.5], 2, tmp_path / "local", workers=2)

    def jct(table):
        return {(r["policy"], r["load"], r["seed"]): r["avg_jct_s"] for r in table.to_pylist()}

    assert jct(on_ray) == jct(local) and len(jct(local)) == 4
    assert len(failed) == 4 and all("load" in text for _, text in failed)


def test_plot_without_the_plot_extra_is_refused_before_the_sweep(tmp_path, monkeypatch):
    """`--plot` without matplotlib used to run the whole sweep, then refuse: it is refused
    first, with the install line for a checkout."""
    import sys

    from corral import sweeps

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # (import matplotlib raises ImportError)

    def never(*_, **__):
        raise AssertionError("the sweep ran")

    monkeypatch.setattr(sweeps, "sweep", never)
    result = CliRunner().invoke(
        app,
        [
            "sweep",
            "--workload",
            "x",
            "--fleet",
            "2x8",
            "--policy",
            "fifo",
            "--load",
            "0.5",
            "--plot",
            str(tmp_path / "p.png"),
        ],
    )
    assert result.exit_code == 2, result.output
    assert "field 'plot'" in result.output and "pip install -e '.[plot]'" in result.output
    assert not (tmp_path / "p.png").exists()
