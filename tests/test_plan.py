"""The planner: parameter counts, FLOPs, memory and step time by hand, the Llama 3 405B
validation (Table 4 and the model card's GPU-hours), the run estimate, the layout search,
and the `corral plan` contract."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from corral.cli import app
from corral.config import parse_count
from corral.errors import InputError
from corral.hardware import gpu, load_gpu
from corral.plan import pipeline
from corral.plan.estimate import HOST_OVERHEAD, PUE, Reliability, estimate_run, tokens_for_flops
from corral.plan.flops import recompute_flops_per_token, training_flops_per_token
from corral.plan.layout import Layout, layers_by_rank, shape
from corral.plan.memory import GIB, in_flight, rank_memory
from corral.plan.model import PRESETS, load_model
from corral.plan.network import Network
from corral.plan.recipe import LLAMA3_405B_GPU_HOURS, RECIPES, estimate_recipe, load_recipe
from corral.plan.search import search
from corral.plan.step import estimate_step
from corral.reliability.ettr import daly_interval_s, expected_ettr, mtbf_s

runner = CliRunner()
H100 = gpu("h100")
L405 = PRESETS["llama3-405b"]
MI = 2**20


# -- model ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params"),
    [
        # Parameter counts of the released checkpoints (Hugging Face model cards / safetensors index).
        ("llama3-8b", 8_030_261_248),
        ("llama3-70b", 70_553_706_496),
        ("llama3-405b", 405_853_388_800),
        ("mixtral-8x7b", 46_702_792_704),
    ],
)
def test_preset_parameter_counts_are_exact(name: str, params: int) -> None:
    assert PRESETS[name].total_params == params


def test_moe_active_parameters_are_fewer_than_total() -> None:
    mixtral = PRESETS["mixtral-8x7b"]
    # Mixtral paper: 47B parameters, 13B active per token (12.9B in the released model).
    assert mixtral.active_params == 12_879_925_248
    assert mixtral.active_params < mixtral.total_params
    dense = PRESETS["llama3-8b"]
    assert dense.active_params == dense.total_params


def test_model_from_toml_matches_preset_and_rejects_unknown_keys(tmp_path) -> None:
    good = tmp_path / "m.toml"
    good.write_text(
        "[model]\nlayers = 32\nd_model = 4096\nffn = 14336\nheads = 32\nkv_heads = 8\nvocab = 128256\n"
    )
    assert load_model(str(good)).total_params == PRESETS["llama3-8b"].total_params
    bad = tmp_path / "bad.toml"
    bad.write_text(
        "layers = 32\nd_model = 4096\nffn = 14336\nheads = 32\nkv_heads = 8\nvocab = 1\nwidth = 3\n"
    )
    with pytest.raises(InputError) as err:
        load_model(str(bad))
    assert err.value.field == "width" and str(bad) in str(err.value)
    odd = tmp_path / "odd.toml"
    odd.write_text("layers = 32\nd_model = 4096\nffn = 14336\nheads = 30\nkv_heads = 8\nvocab = 1\n")
    with pytest.raises(InputError, match="heads"):
        load_model(str(odd))


def test_gpu_from_file(tmp_path) -> None:
    spec = tmp_path / "mi300x.toml"
    spec.write_text(
        "[gpu]\nbf16_flops = 1307e12\nfp8_flops = 2615e12\nmemory_gib = 192\nhbm_bytes_per_s = 5.3e12\n"
        "power_w = 750\nnvlink_domain_gpus = 8\nnvlink_bytes_per_s = 448e9\nscale_out_bytes_per_s = 50e9\n"
    )
    g = load_gpu(str(spec))
    assert g.name == "mi300x" and g.memory_gib == 192
    est = estimate_step(PRESETS["llama3-8b"], g, 8, Layout(dp=8), 8192, MI)
    assert est.peak_flops == 1307e12
    spec.write_text("[gpu]\nbf16_flops = 1\n")
    with pytest.raises(InputError, match="mi300x.toml"):
        load_gpu(str(spec))


# -- FLOPs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["llama3-8b", "llama3-70b", "llama3-405b"])
@pytest.mark.parametrize("seq", [4096, 8192, 131072])
def test_flops_per_token_is_6n_plus_attention(name: str, seq: int) -> None:
    m = PRESETS[name]
    # REFERENCE.md sec. 2: 6 N + 12 L H Q T, N the non-embedding weights (the head multiplies).
    n = m.total_params - m.vocab * m.d_model
    # ... less the norms, which are elementwise: 2 per layer and the final one.
    n -= (2 * m.layers + 1) * m.d_model
    expected = 6 * n + 12 * m.layers * m.heads * m.head_dim * seq
    assert training_flops_per_token(m, seq) == pytest.approx(expected, rel=1e-12)
    causal = training_flops_per_token(m, seq, causal_accounting=True)
    assert causal == pytest.approx(6 * n + 6 * m.layers * m.d_model * seq, rel=1e-12)


def test_llama3_405b_total_compute_matches_the_paper() -> None:
    # Llama 3 paper: 3.8e25 FLOPs for 405B parameters on 15.6T tokens (6 N D = 3.8e25).
    assert training_flops_per_token(L405, 8192) * 15.6e12 == pytest.approx(3.8e25, rel=0.10)


def test_recomputation_changes_hardware_flops_not_model_flops() -> None:
    est = {
        rc: estimate_step(L405, H100, 16384, Layout(8, 16, 1, 128, recompute=rc), 8192, 16 * MI)
        for rc in ("none", "selective", "full")
    }
    assert len({e.model_flops_per_token for e in est.values()}) == 1
    assert est["none"].hardware_flops_per_token == est["none"].model_flops_per_token
    assert est["none"].hfu == pytest.approx(est["none"].mfu)
    assert (
        est["none"].hardware_flops_per_token
        < est["selective"].hardware_flops_per_token
        < est["full"].hardware_flops_per_token
    )
    # full recomputation re-runs every layer's forward: 2 N_layers + the causal attention forward
    layers_n = L405.layers * (L405.attention_params + L405.mlp_params)
    attention_fwd = 4 * L405.layers * L405.d_model * 8192 / 2
    assert recompute_flops_per_token(L405, 8192, "full") == pytest.approx(2 * layers_n + attention_fwd)
    assert est["full"].step_s > est["selective"].step_s > est["none"].step_s
    # Both counts are printed: the model's (MFU's, `tflops_per_gpu`) and the hardware's (HFU's),
    # which Megatron-style reports print: 1.31-1.33x under full recompute on such rows.
    full = est["full"]
    assert full.tflops_per_gpu == full.model_tflops_per_gpu
    ratio = full.hardware_tflops_per_gpu / full.model_tflops_per_gpu
    assert ratio == pytest.approx(full.hardware_flops_per_token / full.model_flops_per_token)
    assert 1.31 <= ratio <= 1.33
    assert full.hfu / full.mfu == pytest.approx(ratio)


# -- layout --------------------------------------------------------------------------------


def test_llama3_pipeline_split_puts_one_layer_fewer_on_the_ends() -> None:
    # Llama 3 paper 3.3.2: 126 layers on 16 stages, first and last one fewer.
    assert layers_by_rank(126, 16) == (7,) + (8,) * 14 + (7,)
    assert layers_by_rank(32, 4) == (8, 8, 8, 8)
    with pytest.raises(InputError) as err:
        layers_by_rank(126, 10)
    assert err.value.field == "pp"


@pytest.mark.parametrize(
    ("layout", "gpus", "seq", "field", "words"),
    [
        (Layout(tp=3, pp=1, dp=1), 3, 8192, "tp", "heads"),
        (Layout(tp=8, pp=10, dp=16), 1280, 8192, "pp", "layers"),
        (Layout(tp=8, pp=16, dp=128), 16000, 8192, "gpus", "16000"),
        (Layout(tp=8, pp=16, cp=3, dp=2), 768, 8192, "cp", "sequence"),
        (Layout(tp=8, pp=16, dp=4, ep=2), 512, 8192, "ep", "mixture"),
        (Layout(tp=8, pp=16, dp=4, recompute="some"), 512, 8192, "recompute", "selective"),
        (Layout(tp=8, pp=16, dp=4, zero=4), 512, 8192, "zero", "0-3"),
        (Layout(tp=8, pp=16, dp=4, virtual_stages=8), 512, 8192, "virtual_stages", "smallest"),
    ],
)
def test_invalid_layouts_are_rejected_naming_the_field(layout, gpus, seq, field, words) -> None:
    with pytest.raises(InputError) as err:
        shape(L405, layout, gpus, seq, 16 * MI)
    assert err.value.field == field
    assert words in str(err.value)


def test_batch_too_small_for_data_parallel_is_rejected() -> None:
    with pytest.raises(InputError) as err:
        # 128 sequences cannot feed DP 128 x 2 sequences per micro-batch
        shape(L405, Layout(8, 16, 1, 128, micro_batch=2), 16384, 8192, 1 * MI)
    assert err.value.field == "batch_tokens"


# -- memory --------------------------------------------------------------------------------


def test_memory_by_hand_llama3_8b_on_one_gpu() -> None:
    m = PRESETS["llama3-8b"]
    s = shape(m, Layout(zero=0, recompute="selective"), 1, 8192, 8192)
    mem = rank_memory(m, s, 0)
    params = m.total_params
    assert mem.weights_gib == pytest.approx(2 * params / GIB)
    assert mem.gradients_gib == pytest.approx(2 * params / GIB)
    assert mem.optimizer_gib == pytest.approx(12 * params / GIB)
    # Selective: per token and layer, block input + Q/K/V (1 + 2 x 1024/4096) + attention
    # output + gate and up (2 x 14336/4096) = 10.5 d_model elements of 2 bytes; 32 layers:
    # 2 x 8192 x 4096 x 10.5 x 32 bytes = 21 GiB.
    assert mem.activations_gib == pytest.approx(21.0)


def test_zero_stages_shard_states_over_data_parallel() -> None:
    m = PRESETS["llama3-8b"]
    mems = {z: rank_memory(m, shape(m, Layout(dp=8, zero=z), 8, 8192, 8 * 8192), 0) for z in (0, 1, 2, 3)}
    full = 2 * m.total_params / GIB
    assert mems[0].optimizer_gib == pytest.approx(6 * full)
    assert mems[1].optimizer_gib == pytest.approx(6 * full / 8)
    assert mems[1].gradients_gib == pytest.approx(full)
    assert mems[2].gradients_gib == pytest.approx(full / 8)
    assert mems[2].weights_gib == pytest.approx(full)
    assert mems[3].weights_gib == pytest.approx(full / 8)


def test_1f1b_first_rank_holds_p_micro_batches_and_interleaving_more() -> None:
    s1 = shape(L405, Layout(8, 16, 1, 128, virtual_stages=1), 16384, 8192, 16 * MI)
    assert [in_flight(s1, r) for r in (0, 15)] == [16, 1]
    s4 = shape(L405, Layout(8, 16, 1, 128, virtual_stages=4), 16384, 8192, 16 * MI)
    # Megatron interleaved warm-up: 2 (p - 1) + (v - 1) p + 1 = 79 chunks of a quarter rank.
    assert in_flight(s4, 0) == pytest.approx(min(16 * 4, 79) / 4)


def test_pipeline_schedules_by_hand_pp4_with_8_micro_batches() -> None:
    """PP 4, 8 micro-batches. 1F1B: the bubble is 3 stage-times; rank 0 holds 4 micro-batches
    at its peak, rank 3 one; 8 exchanges each way in the steady state and 3 boundaries each
    way in fill and drain: 22 messages. Interleaved, v = 2: the bubble halves to 1.5; rank
    0 warms up 2 x 3 + 1 x 4 = 10 chunks and holds 11 half-ranks (5.5 micro-batches' worth),
    rank 3 holds 5 (2.5); 16 exchanges each way and 7 boundaries each way: 46 messages."""
    assert pipeline.bubble_stages(4, 1) == 3.0
    assert [pipeline.in_flight(4, 1, 8, r) for r in range(4)] == [4, 3, 2, 1]
    assert pipeline.p2p_messages(4, 1, 8) == 22
    assert pipeline.bubble_stages(4, 2) == 1.5
    assert [pipeline.in_flight(4, 2, 8, r) for r in range(4)] == [5.5, 4.5, 3.5, 2.5]
    assert pipeline.p2p_messages(4, 2, 8) == 46
    # fewer micro-batches than the warm-up: every chunk of every micro-batch is in flight
    assert pipeline.in_flight(4, 2, 2, 0) == 2.0
    assert pipeline.p2p_messages(1, 1, 8) == 0


def test_interleaving_pays_for_its_messages() -> None:
    """More virtual stages shrink the bubble but multiply the point-to-point messages."""
    est = {
        v: estimate_step(L405, H100, 16384, Layout(8, 16, 1, 128, virtual_stages=v), 8192, 16 * MI)
        for v in (1, 2, 4, 7)
    }
    hops = [est[v].pp_p2p_s / pipeline.p2p_messages(16, v, 16) for v in (1, 2, 4, 7)]
    assert hops == pytest.approx([hops[0]] * 4)
    assert est[1].pp_p2p_s < est[2].pp_p2p_s < est[4].pp_p2p_s < est[7].pp_p2p_s
    assert est[1].bubble_s > est[2].bubble_s > est[4].bubble_s > est[7].bubble_s


def test_a_layout_that_does_not_fit_reports_its_margin() -> None:
    est = estimate_step(L405, H100, 8192, Layout(8, 16, 1, 64, recompute="none"), 8192, 16 * MI)
    assert not est.fits
    assert est.memory_margin_gib == pytest.approx(est.memory_capacity_gib - est.memory_gib_per_gpu)
    assert est.memory_margin_gib < 0
    on_h200 = estimate_step(L405, gpu("h200"), 8192, Layout(8, 16, 1, 64, recompute="none"), 8192, 16 * MI)
    assert on_h200.fits


# -- network and step time -----------------------------------------------------------------


def test_collectives_by_hand() -> None:
    net = Network.for_gpu(H100)
    gb = 1e9
    nv, ib = 2e-6, 8e-6  # latency of one ring step on NVLink and across the network
    # 8 ranks on NVLink: 7 steps of 1/8 of the data over 450 GB/s x 0.8.
    assert net.gather_s(gb, 8, 1) == pytest.approx(7 * (nv + gb / 8 / 360e9))
    # 16 ranks one host apart, inside a pod: 15 steps over 50 GB/s x 0.8.
    assert net.gather_s(gb, 16, 8) == pytest.approx(15 * (ib + gb / 16 / 40e9))
    # 2 pods of 8 ranks: within the pod first, then the 1/8 left across pods at 1/7 the rate.
    two_pods = net.gather_s(gb, 16, 3072 // 8)
    assert two_pods == pytest.approx(7 * (ib + gb / 8 / 40e9) + 1 * (ib + gb / 8 / 2 / (40e9 / 7)))


def test_small_messages_pay_the_latency_large_ones_the_bandwidth() -> None:
    """Achieved bus bandwidth by message size, as nccl-tests draw it: on 8 NVLink GPUs a
    5.76 MB all-gather (8 x 2 us x 360 GB/s) runs at half the large-message rate."""
    net = Network.for_gpu(H100)

    def achieved(size: float) -> float:
        return 7 / 8 * size / net.gather_s(size, 8, 1) / 360e9

    assert achieved(8 * 2e-6 * 360e9) == pytest.approx(0.5)
    assert achieved(1e5) < 0.05 < 0.9 < achieved(1e8)


def test_step_time_parts_add_up_and_bubble_follows_the_schedule() -> None:
    for v in (1, 2, 4):
        est = estimate_step(L405, H100, 16384, Layout(8, 16, 1, 128, virtual_stages=v), 8192, 16 * MI)
        parts = (
            (est.compute_s + est.tp_comm_s + est.cp_comm_s + est.ep_comm_s + est.bubble_s + est.pp_p2p_s)
            + est.dp_exposed_s
            + est.optimizer_s
        )
        assert est.step_s == pytest.approx(parts)
        stage_s = (est.compute_s + est.tp_comm_s) / est.micro_batches
        assert est.bubble_s == pytest.approx(15 * stage_s / v)


def test_expert_parallel_pays_an_all_to_all() -> None:
    mixtral = PRESETS["mixtral-8x7b"]
    ep1 = estimate_step(mixtral, H100, 64, Layout(dp=64, ep=1), 4096, 4 * MI)
    ep8 = estimate_step(mixtral, H100, 64, Layout(dp=64, ep=8), 4096, 4 * MI)
    assert ep1.ep_comm_s == 0 and ep8.ep_comm_s > 0
    assert ep8.memory.weights_gib < ep1.memory.weights_gib


@settings(max_examples=40, deadline=None)
@given(
    tp=st.sampled_from([1, 2, 4, 8]),
    pp=st.sampled_from([1, 2, 4, 8]),
    dp=st.sampled_from([1, 2, 8, 32]),
    rc=st.sampled_from(["none", "selective", "full"]),
)
def test_mfu_never_exceeds_hfu_nor_the_matmul_ceiling(tp, pp, dp, rc) -> None:
    m = PRESETS["llama3-70b"]
    est = estimate_step(m, H100, tp * pp * dp, Layout(tp, pp, 1, dp, recompute=rc), 8192, 256 * 8192)
    assert 0 < est.mfu <= est.hfu < 0.8
    assert est.tokens_per_s * est.step_s == pytest.approx(est.batch_tokens)


# -- Llama 3 405B validation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("gpus", "cp", "dp", "seq", "tflops", "mfu"),
    [
        # Llama 3 paper, Table 4 (REFERENCE.md sec. 2). Row 3's DP is 8, not the 4 printed in
        # REFERENCE.md: 8 x 16 x 16 x 4 is 8,192 GPUs, and the paper's batch per DP (16) and
        # 16M tokens at 131,072 give 128 sequences = DP 8 x 16.
        (8192, 1, 64, 8192, 430, 0.43),
        (16384, 1, 128, 8192, 400, 0.41),
        (16384, 16, 8, 131072, 380, 0.38),
    ],
)
def test_llama3_405b_table4_within_ten_percent(gpus, cp, dp, seq, tflops, mfu) -> None:
    est = estimate_step(L405, H100, gpus, Layout(8, 16, cp, dp), seq, 16 * MI)
    assert est.fits
    assert est.tflops_per_gpu == pytest.approx(tflops, rel=0.10)
    assert est.mfu == pytest.approx(mfu, rel=0.10)


def test_llama3_405b_gpu_hours_within_fifteen_percent() -> None:
    # Llama 3.1 model card: 30.84M H100 GPU-hours for 405B pre-training; the recipe includes
    # the small-batch warm-up, the long-context stages and failures at the Table 5 rate.
    phases = estimate_recipe(RECIPES["llama3-405b"])
    assert sum(p.run.tokens for p in phases) == pytest.approx(15.6e12)
    hours = sum(p.run.gpu_hours for p in phases)
    assert hours == pytest.approx(LLAMA3_405B_GPU_HOURS, rel=0.15)
    # and the failures matter: without them the estimate is lower
    ideal = estimate_recipe(RECIPES["llama3-405b"], Reliability(0, 0, 0, None, 0))
    assert sum(p.run.gpu_hours for p in ideal) < hours


# -- run estimate --------------------------------------------------------------------------


def test_run_estimate_by_hand_without_failures() -> None:
    est = estimate_step(L405, H100, 16384, Layout(8, 16, 1, 128), 8192, 16 * MI)
    run = estimate_run(est, 15.6e12, Reliability(0, 0, 0, None, 0))
    steps = math.ceil(15.6e12 / (16 * MI))
    assert run.steps == steps and run.ettr == 1.0
    assert run.days == pytest.approx(steps * est.step_s / 86400)
    assert run.gpu_hours == pytest.approx(16384 * steps * est.step_s / 3600)
    assert run.energy_mwh == pytest.approx(run.gpu_hours * 0.7 * HOST_OVERHEAD * PUE / 1000)
    assert run.cost_usd == pytest.approx(2.0 * run.gpu_hours)
    assert run.co2_tonnes == pytest.approx(run.energy_mwh * 0.3733, rel=1e-3)


def test_run_ettr_is_the_reliability_models() -> None:
    est = estimate_step(L405, H100, 16384, Layout(8, 16, 1, 128), 8192, 16 * MI)
    run = estimate_run(est, 1e12, Reliability(maintenance_per_day=0))
    mtbf = mtbf_s(2048, 3.79)
    assert run.checkpoint_interval_s == pytest.approx(daly_interval_s(15, mtbf), rel=1e-3)
    assert run.ettr == pytest.approx(expected_ettr(2048, 3.79, run.checkpoint_interval_s, 300, 15), rel=1e-3)


def test_flops_budget_and_capex_pricing() -> None:
    est = estimate_step(L405, H100, 16384, Layout(8, 16, 1, 128), 8192, 16 * MI)
    assert tokens_for_flops(est, est.model_flops_per_token * 1e12) == pytest.approx(1e12)
    from corral.plan.estimate import Prices

    run = estimate_run(
        est, 1e12, prices=Prices(capex_usd_per_gpu=35040.0, amortisation_years=4, usd_per_kwh=0)
    )
    assert run.cost_usd == pytest.approx(run.gpu_hours * 35040 / (4 * 8760))
    with pytest.raises(InputError):
        estimate_run(est, 0)


# -- search --------------------------------------------------------------------------------


def test_search_ranks_fitting_layouts_and_finds_metas() -> None:
    result = search(L405, H100, 16384, 8192, 16 * MI)
    assert result.ranked and all(e.fits for e in result.ranked)
    speeds = [e.tokens_per_s for e in result.ranked]
    assert speeds == sorted(speeds, reverse=True)
    layouts = {(e.layout.tp, e.layout.pp, e.layout.cp, e.layout.dp) for e in result.ranked}
    assert (8, 16, 1, 128) in layouts
    assert all(e.layout.tp <= 8 for e in result.ranked)
    assert result.too_big > 0  # 405B does not fit every way


def test_search_agrees_with_a_naive_enumeration() -> None:
    m = PRESETS["llama3-8b"]
    result = search(m, H100, 16, 8192, 64 * 8192)
    best = result.ranked[0].tokens_per_s
    naive = 0.0
    for tp in (1, 2, 4, 8):
        for pp in (1, 2, 4, 8, 16):
            if 16 % (tp * pp):
                continue
            for zero in (1, 3):
                for rc in ("none", "selective", "full"):
                    for mbs in (1, 2, 4):
                        try:
                            e = estimate_step(
                                m,
                                H100,
                                16,
                                Layout(tp, pp, 1, 16 // (tp * pp), 1, mbs, None, zero, rc),
                                8192,
                                64 * 8192,
                            )
                        except InputError:
                            continue
                        if e.fits:
                            naive = max(naive, e.tokens_per_s)
    assert best >= naive


# -- CLI -----------------------------------------------------------------------------------

TRAIN = "plan train --model llama3-405b --gpu h100 --gpus 16384 --tp 8 --pp 16 --cp 1 --dp 128 --seq 8192"


def test_cli_train_json_contract() -> None:
    out = runner.invoke(app, (TRAIN + " --batch-tokens 16M --json").split())
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    for key in ("tflops_per_gpu", "mfu", "memory_gib_per_gpu", "fits", "step_s", "tokens_per_s"):
        assert key in data
    assert data["model_tflops_per_gpu"] == data["tflops_per_gpu"] <= data["hardware_tflops_per_gpu"]
    assert data["batch_tokens"] == 16 * MI
    out = runner.invoke(app, (TRAIN + " --batch-tokens 16M --tokens 15.6T --json").split())
    data = json.loads(out.stdout)
    for key in ("days", "gpu_hours", "energy_mwh", "cost_usd", "co2_tonnes"):
        assert data[key] > 0
    assert data["tokens"] == 15.6e12


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ("--tp 3 --pp 1 --gpus 3", "heads"),
        ("--tp 8 --pp 10 --dp 16 --gpus 1280", "layers"),
        ("--tp 8 --pp 16 --dp 128 --gpus 16000", "16000"),
        ("--tp 8 --pp 16 --gpus 16384 --batch-tokens 16Q", "batch-tokens"),
        ("--tp 8 --pp 16 --gpus 16384 --tokens 1T --flops 1e24", "not both"),
    ],
)
def test_cli_rejects_bad_layouts(args: str, words: str) -> None:
    out = runner.invoke(app, f"plan train --model llama3-405b --gpu h100 {args} --json".split())
    assert out.exit_code == 2
    assert words in out.output
    assert "{" not in out.stdout  # no half-written JSON


def test_cli_search_and_recipe() -> None:
    out = runner.invoke(
        app,
        [
            "plan",
            "search",
            "--model",
            "llama3-70b",
            "--gpu",
            "h100",
            "--gpus",
            "1024",
            "--top",
            "3",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    assert len(rows) == 3 and rows[0]["tokens_per_s"] >= rows[1]["tokens_per_s"]
    out = runner.invoke(app, ["plan", "search", "--model", "llama3-405b", "--gpu", "h100", "--gpus", "8"])
    assert out.exit_code == 2 and "no layout" in out.output
    out = runner.invoke(app, ["plan", "recipe", "llama3-405b", "--json"])
    assert out.exit_code == 0
    assert json.loads(out.stdout)["total"]["gpu_hours"] == pytest.approx(LLAMA3_405B_GPU_HOURS, rel=0.15)


def test_recipe_from_file(tmp_path) -> None:
    spec = tmp_path / "small.toml"
    spec.write_text(
        'model = "llama3-8b"\ngpu = "h100"\n'
        "[[phase]]\ntokens = 1e12\ngpus = 64\nseq = 8192\nbatch_tokens = 4194304\ndp = 64\n"
        "[[phase]]\ntokens = 1e11\ngpus = 64\nseq = 32768\nbatch_tokens = 4194304\ncp = 4\ndp = 16\n"
    )
    phases = estimate_recipe(load_recipe(str(spec)))
    assert [p.phase.name for p in phases] == ["phase 1", "phase 2"]
    spec.write_text('model = "llama3-8b"\ngpu = "h100"\n[[phase]]\ntokens = 1e12\ngpus = 64\nseq = 8192\n')
    with pytest.raises(InputError, match="phase 1") as err:
        load_recipe(str(spec))
    assert err.value.field == "batch_tokens"


def test_recipe_counts_take_the_suffixes_the_cli_takes(tmp_path) -> None:
    """tokens = "15.6T" (decimal) and batch_tokens = "4M" (binary), as on the command line;
    a count that is no count, a fraction of a GPU or an infinite token total is refused by
    the key that holds it."""
    spec = tmp_path / "small.toml"
    phase = 'model = "llama3-8b"\ngpu = "h100"\n[[phase]]\ngpus = 64\nseq = 8192\ndp = 64\n'
    spec.write_text(phase + 'tokens = "1T"\nbatch_tokens = "4M"\n')
    (loaded,) = load_recipe(str(spec)).phases
    assert (loaded.tokens, loaded.batch_tokens) == (1e12, 4 * MI)
    for bad, key in (
        ('tokens = "1X"\nbatch_tokens = "4M"\n', "tokens"),
        ('tokens = "inf"\nbatch_tokens = "4M"\n', "tokens"),
        ("tokens = inf\nbatch_tokens = 4e6\n", "tokens"),
        ('tokens = 1e12\nbatch_tokens = "4M"\nrecompute = 3\n', "recompute"),
        ('tokens = 1e12\nbatch_tokens = "4M"\ntp = 1.5\n', "tp"),
    ):
        spec.write_text(phase + bad)
        with pytest.raises(InputError) as err:
            load_recipe(str(spec))
        assert err.value.field == key and "phase 1" in str(err.value), bad


def test_a_model_file_missing_a_field_names_it(tmp_path) -> None:
    spec = tmp_path / "m.toml"
    spec.write_text("layers = 32\nd_model = 4096\n")
    with pytest.raises(InputError) as err:
        load_model(str(spec))
    assert err.value.field == "ffn" and "missing" in err.value.message and "__init__" not in err.value.message


def test_parse_count_units() -> None:
    assert parse_count("16M", "b", binary=True) == 16 * MI
    assert parse_count("15.6T", "t") == 15.6e12
    assert parse_count("3.8e25", "f") == 3.8e25
    for bad in ("16Q", "-1", "M", "0"):
        with pytest.raises(InputError):
            parse_count(bad, "x")


def test_the_planner_checkpoints_as_the_ettr_calculator_does_at_the_limits() -> None:
    """Free checkpoint writes are taken continuously: the run loses only its restarts, never
    less than with writes of a millisecond (it used to fall back to hourly checkpoints and
    lose half an hour per failure). A run that never fails never checkpoints, and its
    interval is null in JSON."""
    free, cheap = Reliability(write_s=0.0), Reliability(write_s=0.001)
    ettr_free, interval_free = free.ettr(16384)
    ettr_cheap, _ = cheap.ettr(16384)
    assert interval_free == 0 and ettr_free >= ettr_cheap > 0.9
    never, interval = Reliability(rate_per_1000_node_days=0.0, maintenance_per_day=0.0).ettr(16384)
    assert (never, interval) == (1.0, math.inf)
    step = estimate_step(PRESETS["llama3-8b"], gpu("h100"), 64, Layout(1, 1, 1, 64), 8192, 4 * MI)
    run = estimate_run(step, 1e12, Reliability(rate_per_1000_node_days=0.0))
    assert run.as_dict()["checkpoint_interval_s"] is None
    json.dumps(run.as_dict(), allow_nan=False)


def test_cli_train_require_fit_exits_1_only_for_a_layout_that_does_not_fit() -> None:
    """Llama 3 405B on 8 H100s with no parallelism does not fit (about 220 GiB over): a query
    answers that with exit 0; `--require-fit`, for scripts, exits 1, with the same output."""
    unfit = "plan train --model llama3-405b --gpu h100 --gpus 8 --seq 8192 --batch-tokens 1M"
    query = runner.invoke(app, unfit.split())
    assert query.exit_code == 0 and "NO," in query.output, query.output
    strict = runner.invoke(app, [*unfit.split(), "--require-fit"])
    assert strict.exit_code == 1 and "NO," in strict.output
    as_json = runner.invoke(app, [*unfit.split(), "--require-fit", "--json"])
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["fits"] is False
    fits = runner.invoke(app, [*(TRAIN + " --batch-tokens 16M").split(), "--require-fit"])
    assert fits.exit_code == 0 and "yes," in fits.output, fits.output
