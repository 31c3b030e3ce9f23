"""Failures, checkpoints and effective training time: the closed forms against their worked
values, the failure process against its rate, the checkpoint arithmetic by replaying the
event log, simulation against formula, and the Llama 3 scenario against the paper."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from corral.cli import app
from corral.fleet import Fleet, Segment
from corral.reliability.ettr import best_interval_s, daly_interval_s, expected_ettr, mtbf_s, young_interval_s
from corral.reliability.failures import LLAMA3_RATE, LLAMA3_TABLE5, Cause, FailureModel
from corral.reliability.scenarios import TrainingRun, llama3_405b
from corral.scheduling.registry import make_policy
from corral.sim.engine import Engine
from corral.sim.metrics import job_reliability
from corral.synth import synth_jobs
from corral.workload import JobTable

DAY_S = 86400.0


def training(gpus, days, interval_s, restart_s, write_s, n=1):
    return JobTable(
        job_id=[f"train-{i}" for i in range(n)],
        submit_s=np.zeros(n),
        gpus=np.full(n, gpus),
        duration_s=np.full(n, days * DAY_S),
        queue=["a"] * n,
        user=[""] * n,
        kind=["pretrain"] * n,
        priority=np.zeros(n, dtype=np.int64),
        preemptible=np.zeros(n, dtype=bool),
        checkpoint_interval_s=np.full(n, float(interval_s)),
        restart_s=np.full(n, float(restart_s)),
        checkpoint_write_s=np.full(n, float(write_s)),
    )


def fleet_of(hosts, pods=1):
    return Fleet("t", [Segment("default", hosts, 8, 2, hosts // pods // 2)], "default")


# --- closed forms --------------------------------------------------------------------------


def test_daly_and_young_reproduce_the_worked_values():
    # REFERENCE.md section 4: delta = 5 min; M = 24 h -> 116.7 min, 6 h -> 56.7, 15 min -> 9.14.
    for mtbf, minutes in ((24 * 3600, 116.7), (6 * 3600, 56.7), (15 * 60, 9.14)):
        assert daly_interval_s(300, mtbf) / 60 == pytest.approx(minutes, abs=0.05)
    assert young_interval_s(300, 24 * 3600) == pytest.approx(math.sqrt(2 * 300 * 86400))


def test_llama3_rate_and_expected_ettr_by_hand():
    # 419 unexpected interruptions / (2,048 nodes x 54 days) = 3.79 per 1000 node-days.
    assert sum(LLAMA3_TABLE5.values()) == 419
    assert round(LLAMA3_RATE, 2) == 3.79
    assert mtbf_s(2048, LLAMA3_RATE) / 3600 == pytest.approx(3.09, abs=0.01)  # one every 3.09 h
    # lambda = 1/(3.09 h); (1 - lambda (600 + 1800)) / (1 + 60/3600)
    lam = 1 / mtbf_s(2048, LLAMA3_RATE)
    assert expected_ettr(2048, LLAMA3_RATE, 3600, 600, 60) == pytest.approx(
        (1 - lam * 2400) / (1 + 60 / 3600)
    )
    assert expected_ettr(10**6, LLAMA3_RATE, 3600, 600, 60) == 0.0  # clipped, never negative


# --- the failure process -------------------------------------------------------------------


def test_failures_match_the_configured_rate_and_cause_mix():
    """512 hosts for ~400 days at 3.79 per 1000 node-days: ~776 failures. Poisson sigma is
    ~28; we allow 10% (about 2.8 sigma), and 5 points on the largest cause's share."""
    hosts, days = 512, 400.0
    model = FailureModel(causes=tuple(Cause(c.name, c.count, 600.0) for c in FailureModel().causes), seed=3)
    r = Engine(fleet_of(hosts), training(8, days, 3600, 0, 0), make_policy("fifo"), failures=model).run()
    span_days = r.end_of_run_s / DAY_S
    expected = hosts * span_days * LLAMA3_RATE / 1000
    assert len(r.failures) == pytest.approx(expected, rel=0.10)
    share = sum(1 for f in r.failures if f[2] == "faulty GPU") / len(r.failures)
    assert share == pytest.approx(148 / 419, abs=0.05)


def test_failures_off_leave_results_identical_to_the_core():
    jobs = synth_jobs(400, 30.0, seed=2, queues=3, max_gpus=16)
    jobs.checkpoint_interval_s[:] = 600.0
    fleet = Fleet("t", [Segment("default", 8, 8, 2, 4)], "default")
    for policy in ("fifo", "las", "fair"):
        core = Engine(fleet, jobs, make_policy(policy)).run()
        quiet = Engine(
            fleet, jobs, make_policy(policy), failures=FailureModel(rate_per_1000_node_days=0)
        ).run()
        assert np.array_equal(core.end_s, quiet.end_s) and np.array_equal(core.start_s, quiet.start_s)
        assert quiet.interruptions.sum() == 0


def test_lost_work_is_the_work_since_the_last_completed_checkpoint():
    """Replay the log: after each (re)start, a failure at elapsed e (past the restart cost)
    loses e's useful part beyond the last completed (interval + write) cycle; a job without
    an interval saves nothing on failure; a planned stop loses nothing; work is conserved."""
    jobs = training(16, 30, 0, 120, 0, n=4)
    jobs.checkpoint_interval_s[:] = [0.0, 1800.0, 3600.0, 7200.0]
    jobs.checkpoint_write_s[:] = [0.0, 30.0, 0.0, 60.0]
    model = FailureModel(rate_per_1000_node_days=200, maintenance_per_day=2, spares_per_pod=4, seed=5)
    r = Engine(fleet_of(24, 2), jobs, make_policy("fifo"), failures=model, record=True).run()
    started: dict[int, float] = {}
    runs: dict[int, int] = {}
    useful_done = [0.0] * len(jobs)
    fails = 0
    for t, kind, job, extra in r.log:
        dt, w = float(jobs.checkpoint_interval_s[job]), float(jobs.checkpoint_write_s[job])
        overhead = float(jobs.restart_s[job]) if runs.get(job, 0) > 1 else 0.0  # not the first run
        e = max(0.0, t - started.get(job, t) - overhead)
        if dt > 0:
            k = math.floor(e / (dt + w) + 1e-9)
            useful, saved = k * dt + min(e - k * (dt + w), dt), k * dt
        else:
            useful, saved = e, 0.0
        if kind == "start":
            started[job] = t
            runs[job] = runs.get(job, 0) + 1
        elif kind == "fail":
            cause, lost = extra
            fails += 1
            if cause == "planned":
                assert lost == 0.0
                useful_done[job] += useful
            else:
                assert lost == pytest.approx(useful - saved, abs=1e-6)
                useful_done[job] += saved
        elif kind == "end":
            useful_done[job] += useful
    assert fails > 20
    assert useful_done == pytest.approx(jobs.duration_s.tolist(), rel=1e-9)
    assert r.interruptions.sum() == fails


# --- simulation against formula, and the papers --------------------------------------------


def test_simulated_ettr_agrees_with_the_formula_within_two_points():
    """Where the formula's assumptions hold (failures rare against the interval, spares
    always at hand, no maintenance): 256 hosts, 1-hour interval, 10-minute restart, 1-minute
    write, ~300 failures."""
    run = TrainingRun(
        "t",
        256,
        4,
        280.0,
        restart_s=600,
        write_s=60,
        interval_s=3600,
        maintenance_per_day=0,
        spares_per_pod=16,
        seed=1,
    )
    (r,) = [Engine(run.fleet(), run.jobs(), make_policy("fifo"), failures=run.failures()).run()]
    sim = job_reliability(r, 0)["ettr"]
    assert r.unexpected[0] > 200
    assert sim == pytest.approx(expected_ettr(256, LLAMA3_RATE, 3600, 600, 60), abs=0.02)


def test_llama3_405b_lands_near_the_paper():
    """Llama 3 (section 3.3.4): 419 unexpected interruptions in 54 days on 16,384 GPUs,
    effective training time above 90%."""
    run = llama3_405b()
    r = Engine(run.fleet(), run.jobs(), make_policy("fifo"), failures=run.failures()).run()
    job = job_reliability(r, 0)
    assert 52 <= job["elapsed_days"] <= 56
    assert 380 <= job["unexpected_interruptions"] <= 460
    assert job["ettr"] > 0.90
    assert 30 <= job["planned_interruptions"] <= 80  # the paper: 47


def test_daly_interval_beats_a_fixed_one_at_100k_scale():
    base = TrainingRun("t", 4096, 8, 2.0, restart_s=180, interval_s=3600, seed=2)
    daly = TrainingRun("t", 4096, 8, 2.0, restart_s=180, checkpoint="daly", seed=2)
    adaptive = TrainingRun("t", 4096, 8, 2.0, restart_s=180, checkpoint="adaptive", seed=2)
    ettr = {}
    for name, run in (("fixed", base), ("daly", daly), ("adaptive", adaptive)):
        r = Engine(run.fleet(), run.jobs(), make_policy("fifo"), failures=run.failures()).run()
        ettr[name] = job_reliability(r, 0)["ettr"]
    assert ettr["daly"] > ettr["fixed"] + 0.05
    assert ettr["adaptive"] == pytest.approx(ettr["daly"], abs=0.03)


# --- command line and bad input ------------------------------------------------------------


def test_cli_contract(tmp_path):
    runner = CliRunner()
    done = runner.invoke(app, ["simulate", "--scenario", "llama3-405b", "--out", str(tmp_path)])
    assert done.exit_code == 0, done.output
    (row,) = json.loads((tmp_path / "metrics.json").read_text())
    job = row["training_jobs"]["llama3-405b"]
    for key in ("interruptions", "unexpected_interruptions", "ettr", "lost_gpu_hours"):
        assert key in job
    assert row["reliability"]["failures"] >= job["unexpected_interruptions"]
    done = runner.invoke(
        app,
        [
            "reliability",
            "ettr",
            "--gpus",
            "16384",
            "--rate",
            "3.79",
            "--checkpoint-s",
            "3600",
            "--restart-s",
            "600",
            "--write-s",
            "60",
            "--json",
        ],
    )
    assert done.exit_code == 0
    assert json.loads(done.output)["ettr"] == pytest.approx(expected_ettr(2048, 3.79, 3600, 600, 60))
    bad = runner.invoke(app, ["reliability", "ettr", "--gpus", "8", "--rate", "-1"])
    assert bad.exit_code == 2 and "rate" in bad.output


def test_ettr_at_its_limits():
    # 2,048 hosts at 3.79 per 1000 node-days: lambda = 2048 x 3.79 / 1000 / 86400 per second.
    lam = 2048 * 3.79 / 1000 / 86400
    # Free checkpoints are taken continuously: only the restarts are lost, and a tiny write
    # cost lands just below that, never at half of it.
    free = expected_ettr(2048, 3.79, 0.0, 300, 0.0)
    assert free == pytest.approx(1 - lam * 300)
    assert best_interval_s(0.0, mtbf_s(2048, 3.79)) == 0.0
    nearly = expected_ettr(2048, 3.79, best_interval_s(0.001, mtbf_s(2048, 3.79)), 300, 0.001)
    assert free - 0.002 < nearly < free
    # A job that never fails never checkpoints and keeps everything.
    assert best_interval_s(15.0, mtbf_s(2048, 0.0)) == math.inf
    assert expected_ettr(2048, 0.0, math.inf, 300, 15.0) == 1.0
    with pytest.raises(ValueError):
        expected_ettr(2048, 3.79, 0.0, 300, 15.0)  # an interval of 0 with a write cost


def test_ettr_command_at_its_limits():
    runner = CliRunner()

    def ettr(*args):
        return runner.invoke(app, ["reliability", "ettr", "--gpus", "16384", *args])

    free = ettr("--write-s", "0", "--json")
    assert json.loads(free.output)["ettr"] == pytest.approx(expected_ettr(2048, LLAMA3_RATE, 0.0, 300, 0.0))
    never = ettr("--rate", "0", "--json")
    assert "Infinity" not in never.output and "NaN" not in never.output
    assert json.loads(never.output)["mtbf_s"] is None and json.loads(never.output)["ettr"] == 1.0
    for flag, value in (("--checkpoint-s", "inf"), ("--rate", "inf"), ("--write-s", "nan")):
        bad = ettr(flag, value)
        assert bad.exit_code == 2 and flag.strip("-") in bad.output and "Traceback" not in bad.output
    table = ettr()
    assert "16,384" in table.output and "2,048" in table.output and "e+" not in table.output


def test_bad_failure_models_and_impossible_spares_are_refused():
    from corral.errors import InputError

    with pytest.raises(InputError, match="checkpoint"):
        FailureModel(checkpoint="sometimes")
    with pytest.raises(InputError, match="rate"):
        FailureModel(rate_per_1000_node_days=-1)
    with pytest.raises(InputError, match="spares"):
        Engine(
            fleet_of(4), training(8, 1, 0, 0, 0), make_policy("fifo"), failures=FailureModel(spares_per_pod=4)
        )
    with pytest.raises(InputError, match="besides the spares"):
        Engine(
            fleet_of(4),
            training(32, 1, 0, 0, 0),
            make_policy("fifo"),
            failures=FailureModel(spares_per_pod=1),
        )
