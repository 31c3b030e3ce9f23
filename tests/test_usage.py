"""Accounting (report/usage.py), one function for both faces: a schedule worked by hand, the
per-run ledger added up exactly for every job of random worlds, a live run and its replay in
the simulator giving equal figures, and the CLI's contract on a run table and on a live
cluster."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from corral.cli import app
from corral.fleet import Fleet, Segment
from corral.live.reconciler import Config
from corral.live.routes.usage import run_rows as live_rows
from corral.quota import CohortSpec, QueueSpec
from corral.report.usage import held_over_time, usage
from corral.scheduling.registry import make_policy
from corral.sim.engine import Engine
from corral.sim.metrics import run_rows
from tests.conftest import flat_fleet
from tests.support.live import replay
from tests.support.worlds import engine, table, worlds

CONTRACT = {
    "group",
    "gpu_hours_held",
    "gpu_hours_kept",
    "gpu_hours_lost",
    "goodput",
    "jobs",
    "wait_p50_s",
    "wait_p99_s",
}


def test_a_preempted_job_is_accounted_by_hand():
    # One host of 4 GPUs. a (4 GPUs, 100 s of work, a checkpoint every 30 s) starts at 0; b
    # (priority 1, 20 s) preempts it at 40: a keeps its checkpoint at 30 and loses 10 s;
    # b runs 40-60; a runs its last 70 s from 60 to 130.
    jobs = table(
        [
            dict(submit_s=0, gpus=4, duration_s=100, queue="a", checkpoint_interval_s=30),
            dict(submit_s=40, gpus=4, duration_s=20, queue="b", priority=1),
        ]
    )
    result = Engine(flat_fleet(1, 4), jobs, make_policy("priority")).run()
    (a, b) = usage(run_rows(result), by="queue")
    assert a["gpu_hours_held"] == pytest.approx(4 * (40 + 70) / 3600)
    assert a["gpu_hours_kept"] == pytest.approx(4 * 100 / 3600)
    assert a["gpu_hours_lost"] == pytest.approx(4 * 10 / 3600)
    assert a["gpu_hours_lost_by"] == pytest.approx({"preempted": 4 * 10 / 3600, "completed": 0.0})
    assert a["goodput"] == pytest.approx(100 / 110)
    assert (a["jobs"], a["jobs_by_state"], a["wait_p50_s"]) == (1, {"succeeded": 1}, 0.0)
    assert (b["gpu_hours_held"], b["goodput"], b["wait_p99_s"]) == (pytest.approx(80 / 3600), 1.0, 0.0)
    # a window over [50, 100) holds b's last 10 s and 40 s of a's last run
    (a, b) = usage(run_rows(result), by="queue", since_s=50, until_s=100)
    assert (a["gpu_hours_held"], b["gpu_hours_held"]) == (
        pytest.approx(4 * 40 / 3600),
        pytest.approx(4 * 10 / 3600),
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds(quotas=False))
def test_every_jobs_runs_add_up_to_its_ledger_exactly(world):
    """With failures and preemptions: what a job's runs kept is its work, and what they held
    less what they kept is what the ledger says it lost, restarted and wrote."""
    fleet, jobs = world
    sim = engine(fleet, jobs, "priority", failure_seed=3)
    result = sim.run()
    by_job = {g["group"]: g for g in usage(run_rows(result), by="job")}
    cluster = sim.cluster
    for j, job_id in enumerate(jobs.job_id):
        g, gpus = by_job[job_id], int(jobs.gpus[j])
        assert g["gpu_hours_kept"] * 3600 == pytest.approx(gpus * jobs.duration_s[j], rel=1e-9)
        spent = cluster.lost[j] + cluster.restarting[j] + cluster.writing[j]
        assert g["gpu_hours_lost"] * 3600 == pytest.approx(gpus * spent, rel=1e-9, abs=1e-6)


def test_a_live_run_and_its_replay_in_the_simulator_account_alike(tmp_path):
    jobs = table(
        [
            dict(submit_s=0, gpus=8, duration_s=30, queue="a", priority=0),
            dict(submit_s=5, gpus=4, duration_s=10, queue="b", priority=2),
            dict(submit_s=7, gpus=4, duration_s=12, queue="b", priority=1),
            dict(submit_s=9, gpus=2, duration_s=6, queue="a", priority=0),
        ]
    )
    queues = (QueueSpec("a", 8, cohort="c"), QueueSpec("b", 8, cohort="c"))
    _, _, db = replay(
        f"sqlite:///{tmp_path}/live.db", [8], jobs, "priority", Config("priority", queues, (CohortSpec("c"),))
    )
    with Session(db) as session:
        live = usage(live_rows(session), by="queue", nominal_gpus={"a": 8, "b": 8})
    db.dispose()
    fleet = Fleet("x", [Segment("default", 1, 8, 1, 1)], "default", list(queues), [CohortSpec("c")])
    sim = usage(
        run_rows(Engine(fleet, jobs, make_policy("priority")).run()),
        by="queue",
        nominal_gpus={"a": 8, "b": 8},
    )
    assert any(g["gpu_hours_lost_by"].get("preempted") is not None for g in live)  # (a preemption to account)
    assert len(live) == len(sim)
    for got, want in zip(live, sim, strict=True):
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert got[key] == (pytest.approx(value) if not isinstance(value, str) else value), key


def test_the_cli_on_a_run_table_keeps_the_contract(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["trace", "example", "philly", "--out", "philly.csv"]).exit_code == 0
    done = runner.invoke(
        app, ["simulate", "--workload", "philly.csv", "--fleet", "philly", "--policy", "fair", "--out", "out"]
    )
    assert done.exit_code == 0, done.output
    result = runner.invoke(app, ["usage", "--runs", "out/runs-fair.csv", "--by", "queue", "--json"])
    assert result.exit_code == 0, result.output
    groups = json.loads(result.output)
    assert groups and all(g.keys() >= CONTRACT for g in groups)
    assert sum(g["jobs"] for g in groups) > 0 and all(0 < g["goodput"] <= 1 for g in groups)
    table = runner.invoke(
        app, ["usage", "--runs", "out/runs-fair.csv", "--by", "queue", "--out", "usage.parquet"]
    )
    assert table.exit_code == 0 and (tmp_path / "usage.parquet").exists()
    bad = runner.invoke(app, ["usage", "--runs", "out/runs-fair.csv", "--by", "colour"])
    assert bad.exit_code == 2 and "--by colour" in bad.output


def test_the_cli_on_a_live_cluster_keeps_the_contract(monkeypatch):
    """Against a canned answer of GET /v1/usage/runs: one run still going, one completed."""
    import corral.cli.usage as cli_usage

    answer = {
        "runs": {
            "job_id": ["1", "2"],
            "run": [1, 1],
            "start_s": [100.0, 110.0],
            "end_s": [160.0, None],
            "gpus": [2, 4],
            "ended": ["completed", "running"],
            "kept_s": [60.0, None],
            "queue": ["a", "a"],
            "team": ["t", "t"],
            "user": ["ada", "bob"],
            "kind": ["experiment"] * 2,
            "submit_s": [90.0, 100.0],
            "state": ["succeeded", "running"],
        },  # fmt: skip
        "nominal_gpus": {"a": 2},
        "now_s": 200.0,
    }
    monkeypatch.setattr(cli_usage, "_call", lambda *args, **kwargs: json.loads(json.dumps(answer)))
    result = CliRunner().invoke(
        app, ["usage", "--by", "queue", "--json", "--server", "http://x", "--token", "t"]
    )
    assert result.exit_code == 0, result.output
    (g,) = json.loads(result.output)
    assert g.keys() >= CONTRACT
    assert g["gpu_hours_held"] == pytest.approx((2 * 60 + 4 * 90) / 3600)
    assert g["gpu_hours_running"] == pytest.approx(4 * 90 / 3600) and g["goodput"] == pytest.approx(1.0)
    # 6 GPUs held over 110-160 and 4 over 160-200, against a nominal 2
    assert g["gpu_hours_borrowed"] == pytest.approx((4 * 50 + 2 * 40) / 3600)
    assert (g["wait_p50_s"], g["jobs_by_state"]) == (10.0, {"running": 1, "succeeded": 1})
    assert not math.isnan(g["gpu_hours_lost"])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds(quotas=False))
def test_the_hours_over_time_add_up_to_the_hours_held(world):
    fleet, jobs = world
    rows = run_rows(engine(fleet, jobs, "las", failure_seed=5).run())
    until = max(rows["end_s"]) + 1.0
    edges, series = held_over_time(rows, "queue", -1.0, until, bins=7)
    assert len(edges) == 8 and edges[0] == -1.0 and edges[-1] == until
    held = {g["group"]: g["gpu_hours_held"] for g in usage(rows, by="queue")}
    assert {g: pytest.approx(float(h.sum())) for g, h in series.items()} == held


def test_plot_without_the_plot_extra_is_refused_before_any_work(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # (import matplotlib raises ImportError)
    result = CliRunner().invoke(app, ["usage", "--runs", str(tmp_path / "none.csv"), "--plot", "x.png"])
    assert result.exit_code == 2 and "field 'plot'" in result.output and "[plot]" in result.output


def test_plot_draws_the_hours_by_group(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["trace", "example", "philly", "--out", "philly.csv"]).exit_code == 0
    simulate = [
        "simulate",
        "--workload",
        "philly.csv",
        "--fleet",
        "philly",
        "--policy",
        "fifo",
        "--out",
        "out",
    ]
    assert runner.invoke(app, simulate).exit_code == 0
    result = runner.invoke(
        app, ["usage", "--runs", "out/runs-fifo.csv", "--by", "queue", "--plot", "usage.png"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "usage.png").stat().st_size > 1000
