"""Scaling laws: the published optima, fits that recover known constants, IsoFLOP profiles,
and `corral plan scaling`'s contract."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from corral.cli import app
from corral.errors import InputError
from corral.plan.model import PRESETS
from corral.plan.scaling import (
    LAWS,
    fit_frontier,
    fit_loss_law,
    isoflop_profiles,
    load_law,
    model_for_params,
    read_points,
    synthetic_sweep,
)

runner = CliRunner()


def cli(command: str, *more: str):
    """`corral plan scaling COMMAND...` (`more`: arguments with spaces or paths)."""
    return runner.invoke(app, ["plan", "scaling", *command.split(), *more])


EPOCH = LAWS["epoch-2024"]


def test_epoch_constants_at_5_76e23_give_72b_on_1_33t_tokens() -> None:
    """REFERENCE.md section 5 (Besiroglu et al. 2024): about 72B parameters on 1.33T tokens."""
    params, tokens = EPOCH.optimal(5.76e23)
    assert params == pytest.approx(72e9, rel=0.01)
    assert tokens == pytest.approx(1.33e12, rel=0.01)
    assert 6 * params * tokens == pytest.approx(5.76e23)


def test_llama3_law_at_3_8e25_gives_about_402b_on_16_55t() -> None:
    """Llama 3 paper, Figure 3: D* = 0.299 C^0.537; the paper extrapolates 402B parameters on
    16.55T tokens at 3.8e25 FLOPs. With C = 6 N D the law gives 16.3T tokens and 389B."""
    params, tokens = LAWS["llama3"].optimal(3.8e25)
    assert tokens == pytest.approx(16.55e12, rel=0.03)
    assert params == pytest.approx(402e9, rel=0.05)


@pytest.fixture(scope="module")
def fitted():
    return fit_loss_law(synthetic_sweep(EPOCH), bootstrap=40, seed=0)


def test_a_fit_to_noisy_points_recovers_the_constants_within_its_intervals(fitted) -> None:
    intervals = fitted.intervals()
    truth = {"E": EPOCH.E, "A": EPOCH.A, "B": EPOCH.B, "alpha": EPOCH.alpha, "beta": EPOCH.beta}
    for name, value in truth.items():
        low, high = intervals[name]
        assert low <= value <= high, (name, value, low, high)
    assert fitted.alpha == pytest.approx(EPOCH.alpha, rel=0.05)
    assert fitted.beta == pytest.approx(EPOCH.beta, rel=0.05)


def test_the_fitted_optimum_and_its_loss_interval_hold_the_truth(fitted) -> None:
    flops = 1e24  # (two decades past the largest budget fitted)
    params, _ = fitted.optimal(flops)
    true_params, true_tokens = EPOCH.optimal(flops)
    assert params == pytest.approx(true_params, rel=0.15)
    low, high = fitted.loss_interval(flops)
    assert low <= EPOCH.loss(true_params, true_tokens) <= high


def test_isoflop_profiles_recover_the_frontier_exponent() -> None:
    """Approach 2 on points from a known law: N_opt grows as C^(beta / (alpha + beta))."""
    points = synthetic_sweep(EPOCH, noise=0.001)
    profiles = isoflop_profiles(points)
    assert len(profiles) == 6 and all(p.points == 9 for p in profiles)
    frontier = fit_frontier(profiles)
    assert frontier.a == pytest.approx(EPOCH.beta / (EPOCH.alpha + EPOCH.beta), abs=0.01)
    assert frontier.optimal(1e21)[0] == pytest.approx(EPOCH.optimal(1e21)[0], rel=0.1)


def test_a_model_for_a_size_has_the_llama_shape() -> None:
    model = model_for_params(8.03e9)
    llama = PRESETS["llama3-8b"]
    assert (model.layers, model.d_model, model.ffn, model.kv_heads) == (
        llama.layers,
        llama.d_model,
        llama.ffn,
        8,
    )
    for size in (1e9, 70e9, 405e9, 1e12):
        assert model_for_params(size).total_params == pytest.approx(size, rel=0.05)


def write_points(tmp_path, rows: list[str]):
    path = tmp_path / "runs.csv"
    path.write_text("\n".join(["params,tokens,loss", *rows]) + "\n")
    return path


def test_points_files_are_checked_line_by_line(tmp_path) -> None:
    good = [f"{n},{d},3.0" for n, d in [(1e8, 2e9), (2e8, 1e9), (4e8, 5e8), (8e8, 2.5e8), (1.6e9, 1.25e8)]]
    points = read_points(write_points(tmp_path, good))
    assert len(points) == 5 and points.flops[0] == 6 * 1e8 * 2e9
    with pytest.raises(InputError) as err:
        read_points(write_points(tmp_path, [*good[:2], "3e8,abc,3.0", *good[2:]]))
    assert (err.value.line, err.value.field) == (4, "tokens")
    with pytest.raises(InputError) as err:
        read_points(write_points(tmp_path, [*good, "1e9,1e9,-1"]))
    assert (err.value.line, err.value.field) == (7, "loss")
    with pytest.raises(InputError, match="at least 5"):
        read_points(write_points(tmp_path, good[:3]))
    (tmp_path / "bad.csv").write_text("params,loss\n1,2\n")
    with pytest.raises(InputError, match="tokens"):
        read_points(tmp_path / "bad.csv")


def test_cli_optimal_json_contract() -> None:
    out = cli("optimal --flops 5.76e23 --law epoch-2024 --json")
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["params"] == pytest.approx(72.25e9, rel=0.01) and data["flops"] == 5.76e23
    assert data["tokens"] == pytest.approx(1.33e12, rel=0.01)
    assert data["loss"] == pytest.approx(EPOCH.loss(data["params"], data["tokens"]))
    frontier = json.loads(cli("optimal --flops 3.8e25 --law llama3 --json").stdout)
    assert "loss" not in frontier and frontier["tokens"] == pytest.approx(16.29e12, rel=0.01)
    bad = cli("optimal --flops 1e24 --law nope")
    assert bad.exit_code != 0 and "unknown law" in bad.output


def test_cli_fit_writes_a_law_that_optimal_reads(tmp_path) -> None:
    csv = tmp_path / "runs.csv"
    assert cli("example --out", str(csv)).exit_code == 0
    points = read_points(csv)
    assert len(points) == 54 and points.loss == pytest.approx(synthetic_sweep(EPOCH).loss, rel=1e-4)
    law_file = tmp_path / "law.json"
    out = cli("fit --bootstrap 10 --json", str(csv), "--out", str(law_file))
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["alpha"] == pytest.approx(EPOCH.alpha, rel=0.05)
    assert load_law(str(law_file)).samples
    optimal = cli("optimal --flops 1e22 --json --law", str(law_file))
    data = json.loads(optimal.stdout)
    low, high = data["loss_interval_90"]
    assert low < high and low <= data["loss"] * 1.01 and high >= data["loss"] * 0.99
    iso = cli("isoflop --json", str(csv))
    assert json.loads(iso.stdout)["frontier"]["a"] == pytest.approx(0.513, abs=0.02)


def test_cli_prices_the_optimal_run_on_a_fleet_slice() -> None:
    out = cli("optimal --flops 3.8e25 --law llama3 --gpu h100 --gpus 16384 --json")
    assert out.exit_code == 0, out.output
    run = json.loads(out.stdout)["run"]
    assert run["model"]["params"] == pytest.approx(389e9, rel=0.05)
    # GPU-hours = GPUs x wall-clock days x 24
    assert run["gpu_hours"] == pytest.approx(16384 * run["days"] * 24, rel=1e-6)
    assert 0.2 < run["mfu"] < 0.6
    half = cli("optimal --flops 3.8e25 --gpu h100")
    assert half.exit_code != 0 and "--gpus" in half.output
