"""The research programme before a flagship: run costs by hand, the ladder's trade-off, the
job table, and `corral plan programme`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from corral.cli import app
from corral.hardware import gpu
from corral.plan.programme import Run, calendar_days, energy_mwh, job_table, plan_programme, run_hours
from corral.plan.scaling import LAWS
from corral.traces import read_jobs

H100 = gpu("h100")


def test_energy_of_runs_by_hand() -> None:
    """1,000 GPU-hours of H100 at 700 W, hosts 10.2 kW per 5.6 kW of GPUs, PUE 1.09."""
    runs = [Run("ladder", 1, 1, 1, 10, 100.0)]
    assert energy_mwh(runs, H100) == pytest.approx(1000 * 700 * 10.2 / 5.6 * 1.09 / 1e6)


def test_run_hours_and_calendar_by_hand() -> None:
    # 1e21 FLOPs on 64 H100 at 40% of 989 TFLOPs: 1e21 / (64 x 989e12 x 0.4) s = 10.97 h
    assert run_hours(1e21, 64, H100, 0.4) == pytest.approx(1e21 / (64 * 989e12 * 0.4) / 3600)
    runs = [Run("ladder", 1, 1, 1, 64, 10.0)] * 8 + [Run("ladder", 1, 1, 1, 64, 100.0)]
    # packed on 128 GPUs: (8 x 640 + 6,400) GPU-hours / 128 / 24 = 3.75 days; the long run 4.2
    assert calendar_days(runs, 128) == pytest.approx(100 / 24)
    assert calendar_days(runs, 64) == pytest.approx((8 * 640 + 6400) / 64 / 24)


@pytest.fixture(scope="module")
def programme():
    return plan_programme(
        1e25,
        LAWS["epoch-2024"],
        LAWS["chinchilla"],
        H100,
        share_gpus=512,
        run_gpus=64,
        levels=np.logspace(18, 21, 5),
        sizes=5,
        ablations=3,
        ablation_flops=1e19,
        bootstrap=20,
    )


def test_the_ladder_is_an_isoflop_grid_centred_on_the_prior(programme) -> None:
    assert len(programme.ladder) == 25 and len(programme.ablations) == 3
    for run in programme.ladder:
        assert 6 * run.params * run.tokens == pytest.approx(run.flops)
    middle = [r.params for r in programme.ladder if r.flops == pytest.approx(10**19.5)][2]
    assert middle == pytest.approx(LAWS["chinchilla"].optimal(10**19.5)[0])


def test_a_bigger_ladder_costs_more_and_narrows_the_flagships_interval(programme) -> None:
    rungs = programme.tradeoff
    assert [r.runs for r in rungs] == [15, 20, 25]
    assert all(a.gpu_hours < b.gpu_hours for a, b in zip(rungs, rungs[1:], strict=False))
    assert rungs[-1].width < rungs[0].width
    # the whole ladder's fit sizes the flagship near the truth's optimum
    assert programme.flagship_params == pytest.approx(LAWS["epoch-2024"].optimal(1e25)[0], rel=0.3)


def test_the_job_table_submits_the_flagship_when_the_ladder_ends(programme) -> None:
    flagship = Run("flagship", 1e25, 1e11, 1.7e13, 8192, 500.0)
    jobs = job_table(programme, flagship, "pretrain", 50)
    assert len(jobs) == 29 and jobs.job_id[-1] == "flagship"
    assert list(jobs.submit_s[:-1]) == [0.0] * 28
    assert jobs.submit_s[-1] == pytest.approx(programme.ladder_days * 86400)
    assert jobs.duration_s[-1] == 500.0 * 3600 and not jobs.preemptible[-1] and jobs.preemptible[0]


def test_cli_programme_json_and_job_table(tmp_path) -> None:
    out = tmp_path / "programme.csv"
    args = "plan programme --flagship 1e25 --min-flops 1e18 --max-flops 1e20 --levels 4 --sizes 4"
    args += " --ablations 2 --bootstrap 5 --flagship-gpus 8192 --share-gpus 512 --json --out"
    result = CliRunner().invoke(app, [*args.split(), str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ladder"]["runs"] == 16 and data["ablations"]["runs"] == 2
    assert data["ladder"]["energy_mwh"] == pytest.approx(
        data["ladder"]["gpu_hours"] * 700 * 10.2 / 5.6 * 1.09 / 1e6
    )
    assert data["end_day"] == pytest.approx(data["start_day"] + data["flagship"]["days"])
    assert len(data["tradeoff"]) == 2
    jobs = read_jobs(out)
    assert len(jobs) == 19 and set(jobs.kind) == {"experiment", "pretrain"}
    assert sum(j.startswith("ladder-") for j in jobs.job_id) == 16


def test_cli_programme_tells_a_multiple_of_the_last_flagship() -> None:
    args = "plan programme --flagship 2x --last-flops 5e24 --min-flops 1e18 --max-flops 1e20"
    args += " --levels 3 --sizes 3"
    args += " --ablations 0 --bootstrap 3 --flagship-gpus 4096 --json"
    data = json.loads(CliRunner().invoke(app, args.split()).stdout)
    assert data["flagship_flops"] == 1e25
    bad = CliRunner().invoke(app, ["plan", "programme", "--flagship", "tenx"])
    assert bad.exit_code != 0 and "flagship" in bad.output
