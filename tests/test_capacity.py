"""Flexible capacity: demand curves, the brokers by hand on one day, the fleet's invariants
under every broker, and the `fungible-fleet` contract."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from corral.capacity.broker import BROKERS, Broker
from corral.capacity.demand import Diurnal, ReplicaModel, dlrm_demand, llm_demand, serving_shapes
from corral.capacity.scenario import fungible_fleet
from corral.capacity.sim import CapacityFleet, Service, simulate_capacity
from corral.capacity.training import ElasticJob
from corral.cli import app
from corral.errors import InputError
from corral.scheduling.registry import make_policy
from corral.sim.engine import Engine
from corral.synth import synth_jobs
from tests.conftest import flat_fleet, make_jobs

STEP = 300.0
DAY = 288  # steps


def one_day_fleet(demand: np.ndarray, history: np.ndarray | None = None, **fleet) -> CapacityFleet:
    """64 GPUs, no research quota, one 1-GPU-replica service (10-minute start-up) and a job
    on 8-32 GPUs in steps of 8."""
    service = Service(
        "svc", demand, gpus_per_replica=1, startup_s=600.0, min_replicas=1, history_gpus=history
    )
    job = ElasticJob("train", min_gpus=8, max_gpus=32, step_gpus=8, min_hold_s=0.0)
    return CapacityFleet(64, 0, (service,), job, STEP, **fleet)


def step_day() -> np.ndarray:
    return np.r_[np.full(DAY // 2, 10.0), np.full(DAY // 2, 20.0)]


# -- demand --------------------------------------------------------------------------------


def test_diurnal_curve_has_the_asked_peak_trough_and_weekend() -> None:
    curve = Diurnal(1000.0, peak_to_trough=10.0, weekend=0.5).curve(7, STEP)
    weekday = curve[: 5 * DAY]
    assert weekday.max() == pytest.approx(1000.0)
    assert weekday.min() == pytest.approx(100.0, rel=1e-3)
    assert curve[5 * DAY :].max() == pytest.approx(500.0)
    assert np.argmax(curve[:DAY]) * STEP / 3600 == pytest.approx(14.0)
    grown = Diurnal(1000.0, trend_per_week=0.1).curve(14, STEP)
    assert grown[7 * DAY + 168] == pytest.approx(1.1 * grown[168])


def test_llm_demand_follows_the_azure_token_sizes() -> None:
    conv = serving_shapes()["llm"]["conv"]
    assert conv["requests"] == 19366  # the Azure conversation hour
    per_request = ReplicaModel().gpu_s_per_request(conv["mean_context_tokens"], conv["mean_generated_tokens"])
    # 8 GPUs x (context / 40k + generated / 4k tokens per second)
    assert per_request == pytest.approx(
        8 * (conv["mean_context_tokens"] / 4e4 + conv["mean_generated_tokens"] / 4e3)
    )
    demand = llm_demand("conv", 1000.0, Diurnal(1.0), 7, STEP)
    assert demand.max() == pytest.approx(1000.0 * per_request, rel=0.05)  # burstiness shrunk at 1000 req/s
    with pytest.raises(InputError):
        llm_demand("poetry", 1.0, Diurnal(1.0), 1, STEP)


def test_dlrm_demand_is_the_traces_gpus() -> None:
    hourly = serving_shapes()["dlrm_gpus_hourly"]
    assert len(hourly) == 744  # 31 days
    demand = dlrm_demand(1.0, 2, STEP)
    assert demand[0] == hourly[0] and demand[12] == hourly[1] and len(demand) == 2 * DAY


# -- brokers by hand on one day ------------------------------------------------------------


def test_static_holds_the_peak_all_day() -> None:
    r = simulate_capacity(one_day_fleet(step_day()), Broker("static", headroom=0.0))
    assert (r.provisioned[0] == 20).all() and (r.capacity[0] == 20).all()
    assert (r.training_gpus == 32).all()  # 64 - 20 = 44 open: 32 is its maximum
    assert r.metrics()["slo_attainment"] == 1.0 and r.metrics()["gpu_hours_lent"] == 0.0


def test_reactive_misses_while_new_replicas_start() -> None:
    r = simulate_capacity(one_day_fleet(step_day()), Broker("reactive", headroom=0.0))
    m = r.metrics()
    # At the jump (step 144) the 10 new replicas take GPUs from best-effort research: a
    # 2-minute notice and a 10-minute start-up, ready 3 steps later. Short 10 GPUs for 15 min.
    assert r.capacity[0, 143] == 10 and r.capacity[0, 144:147].tolist() == [10, 10, 10]
    assert r.capacity[0, 147] == 20
    assert m["slo_attainment"] == pytest.approx(1 - 3 / DAY)
    assert m["unserved_gpu_hours"] == pytest.approx(10 * 3 * STEP / 3600)
    assert m["peak_shortfall_gpus"] == 10


def test_predictive_starts_replicas_before_the_jump() -> None:
    r = simulate_capacity(one_day_fleet(step_day(), history=step_day()), Broker("predictive", headroom=0.0))
    m = r.metrics()
    assert m["slo_attainment"] == 1.0 and m["unserved_gpu_hours"] == 0.0
    first = int(np.argmax(r.provisioned[0] == 20))
    assert 144 - 4 <= first < 144  # within the look-ahead of start-up + notice + one step


def test_hysteresis_waits_before_scaling_down() -> None:
    demand = np.r_[np.full(100, 20.0), np.full(188, 10.0)]
    r = simulate_capacity(one_day_fleet(demand), Broker("reactive", headroom=0.0, cooldown_steps=6))
    # below for steps 100..105: the sixth step at the lower target is the first at it
    assert r.provisioned[0, 100:105].tolist() == [20] * 5
    assert r.provisioned[0, 105] == 10


def test_flat_demand_brokers_agree() -> None:
    flat = np.full(DAY, 12.0)
    results = [simulate_capacity(one_day_fleet(flat, history=flat), Broker(b)) for b in BROKERS]
    for r in results[1:]:
        assert np.array_equal(r.provisioned, results[0].provisioned)
        assert np.array_equal(r.training_gpus, results[0].training_gpus)
        assert r.metrics()["training_goodput_gpu_hours"] == results[0].metrics()["training_goodput_gpu_hours"]


# -- invariants ----------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    broker=st.sampled_from(BROKERS),
    notice_s=st.sampled_from([0.0, 120.0, 900.0]),
    swing=st.floats(1.0, 10.0),
)
def test_fleet_invariants_hold_under_every_broker(seed, broker, notice_s, swing) -> None:
    demand = Diurnal(25.0, peak_to_trough=swing, noise=0.2).curve(3, STEP, seed)
    fleet = one_day_fleet(demand[DAY:], history=demand[:DAY], notice_s=notice_s)
    r = simulate_capacity(fleet, Broker(broker))
    # every GPU is somewhere, once
    total = r.provisioned.sum(axis=0) + r.training_gpus + r.best_effort_gpus + r.research_gpus
    assert (total == fleet.gpus).all()
    assert (r.best_effort_gpus >= 0).all()
    # demand is never served above what is ready, and ready never exceeds what is held
    assert (r.capacity <= r.provisioned).all()
    # a service never drops below its minimum replicas
    assert (r.provisioned[0] >= 1).all() and (r.capacity[0] >= 1).all()
    # the job runs within its bounds, in whole replicas, or not at all
    gpus = r.training_gpus
    assert ((gpus == 0) | ((gpus >= 8) & (gpus <= 32))).all() and (gpus % 8 == 0).all()
    # training GPU-seconds are conserved across resizes (the engine's ledger: work from what
    # is left of its duration, overhead from its restarts and writes, lost work)
    tr = r.training
    assert tr.allocated == pytest.approx(tr.useful + tr.overhead + tr.lost)
    assert tr.allocated == pytest.approx(gpus.sum() * STEP)
    if notice_s >= fleet.training.write_s:
        assert tr.lost == 0.0  # a notice long enough to checkpoint loses nothing


def test_reclaimed_gpus_come_back_within_the_notice() -> None:
    """A replica on lent GPUs serves start-up + notice after it is asked for, never later."""
    demand = Diurnal(40.0, peak_to_trough=4.0, noise=0.1).curve(2, STEP, 3)
    for notice in (0.0, 120.0, 600.0):
        fleet = one_day_fleet(demand[DAY:], history=demand[:DAY], notice_s=notice)
        r = simulate_capacity(fleet, Broker("reactive", headroom=0.0))
        wait = int(np.ceil((600.0 + notice) / STEP))
        for t in range(1, DAY - wait):
            if r.provisioned[0, t] > r.provisioned[0, t - 1]:
                assert (
                    r.capacity[0, t + wait] >= r.provisioned[0, t]
                    or r.provisioned[0, t + wait] < r.provisioned[0, t]
                )


def test_short_notice_loses_the_work_since_the_last_checkpoint() -> None:
    demand = np.r_[np.full(20, 10.0), np.full(268, 50.0)]
    job = ElasticJob(
        "train", 8, 32, 8, checkpoint_interval_s=3600.0, write_s=60.0, restart_s=0.0, min_hold_s=0.0
    )
    service = Service("svc", demand, 1, 600.0)
    fleet = CapacityFleet(64, 0, (service,), job, STEP, notice_s=30.0)
    r = simulate_capacity(fleet, Broker("reactive", headroom=0.0))
    # 32 GPUs ran 20 steps = 6,000 s since the job started: one checkpoint at 3,600 s
    # (+60 s write), 2,340 s of work since; shrinking to 8 GPUs (64 - 50 - 6 best-effort)
    # without time to write loses 32 x 2,340 GPU-seconds.
    assert r.training_gpus[19] == 32 and r.training_gpus[20] == 8
    assert r.training.lost == pytest.approx(32 * (20 * STEP - 3600.0 - 60.0))


def test_impossible_fleets_are_rejected() -> None:
    with pytest.raises(InputError, match="exceed"):
        CapacityFleet(16, 8, (Service("s", np.ones(4), 8, 60.0, min_replicas=1),), ElasticJob("t", 8, 8, 8))
    with pytest.raises(InputError, match="whole steps"):
        ElasticJob("t", 12, 32, 8)
    with pytest.raises(InputError, match="broker"):
        Broker("clairvoyant")


# -- the scenario and its contract ---------------------------------------------------------


def test_fungible_fleet_predictive_keeps_the_slo_and_trains_more() -> None:
    fleet = fungible_fleet(days=7)
    m = {b: simulate_capacity(fleet, Broker(b)).metrics() for b in BROKERS}
    assert m["static"]["slo_attainment"] >= 0.999
    assert m["predictive"]["slo_attainment"] >= 0.999
    assert m["predictive"]["training_goodput_gpu_hours"] > 1.2 * m["static"]["training_goodput_gpu_hours"]
    assert m["predictive"]["gpu_utilization"] > m["static"]["gpu_utilization"]
    assert m["predictive"]["gpu_hours_lent"] > 0 and m["static"]["gpu_hours_lent"] == 0
    # reacting to demand only, the 10:1 code service's morning ramp outruns start-up
    assert m["reactive"]["slo_attainment"] < m["predictive"]["slo_attainment"]


def test_cli_contract(tmp_path) -> None:
    runner = CliRunner()
    out = tmp_path / "ff"
    args = ["simulate", "--scenario", "fungible-fleet", "--days", "3", "--out", str(out)]
    result = runner.invoke(app, [*args, "--broker", "static", "--broker", "predictive"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"static", "predictive"}
    for m in metrics.values():
        for key in ("slo_attainment", "unserved_gpu_hours", "training_goodput_gpu_hours", "gpu_utilization"):
            assert key in m
        assert "gpu_hours_lent" in m
    try:
        import matplotlib  # noqa: F401  (the plot extra)
    except ImportError:
        assert not (out / "fleet-by-class.png").exists()
    else:
        assert (out / "fleet-by-class.png").stat().st_size > 0
    bad = tmp_path / "bad"
    result = runner.invoke(
        app, ["simulate", "--scenario", "fungible-fleet", "--broker", "psychic", "--out", str(bad)]
    )
    assert result.exit_code == 2 and "broker" in result.output and not bad.exists()
    result = runner.invoke(app, ["simulate", "--scenario", "research-fleet", "--broker", "static"])
    assert result.exit_code == 2
    result = runner.invoke(app, [*args[:-2], "--research-policy", "nope", "--out", str(bad)])
    assert result.exit_code == 2 and "nope" in result.output and not bad.exists()


# -- lending a scheduled pool's hosts (the engine) -----------------------------------------


def test_lending_takes_idle_hosts_then_the_cheapest_job_which_saves_first() -> None:
    # 4 hosts of 8 GPUs; two 8-GPU jobs (hosts 0 and 1), the second started later (cheaper).
    jobs = make_jobs([(0.0, 8, 1000.0), (50.0, 8, 1000.0)])
    lending = [(100.0, 0, 3), (500.0, 0, 0)]
    r = Engine(flat_fleet(4, 8), jobs, make_policy("fifo"), lending=lending).run()
    # hosts 3 and 2 are idle; the third host comes from stopping job 1 (50 s of work at
    # risk against job 0's 100 s), which saves first and restarts when hosts come back
    assert r.preemptions.tolist() == [0, 0] and r.interruptions.tolist() == [0, 1]
    assert r.lost_s.tolist() == [0.0, 0.0]
    assert r.end_s[0] == pytest.approx(1000.0)
    assert r.end_s[1] == pytest.approx(500.0 + 1000.0 - 50.0)
    assert r.lent_gpu_s == pytest.approx(3 * 8 * 400.0) and r.lend_short_gpu_s == 0.0
    assert r.by_cause[1] == {"reclaimed": 1}


def test_lending_never_stops_a_non_preemptible_job() -> None:
    jobs = make_jobs([(0.0, 16, 1000.0, "default", False)])
    r = Engine(flat_fleet(2, 8), jobs, make_policy("fifo"), lending=[(100.0, 0, 1), (300.0, 0, 0)]).run()
    assert r.interruptions.tolist() == [0] and r.end_s[0] == pytest.approx(1000.0)
    assert r.lend_short_gpu_s == pytest.approx(8 * 200.0) and r.lent_gpu_s == 0.0
    with pytest.raises(InputError, match="lend"):
        Engine(flat_fleet(2, 8), jobs, make_policy("fifo"), lending=[(0.0, 0, 3)])


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 1000),
    policy=st.sampled_from(["fifo", "las", "fair", "priority"]),
    schedule=st.lists(st.tuples(st.floats(0, 5000), st.integers(0, 6)), min_size=1, max_size=8),
)
def test_lending_keeps_every_job_whole_and_loses_no_work(seed, policy, schedule) -> None:
    jobs = synth_jobs(60, 200.0, seed=seed, max_gpus=8)
    lending = [(t, 0, h) for t, h in schedule] + [(6000.0, 0, 0)]
    r = Engine(flat_fleet(8, 8), jobs, make_policy(policy), lending=lending).run()
    assert not np.isnan(r.end_s).any()  # every job finishes once the hosts come back
    # reclaims save first: only preemptions by the policy itself may lose work
    reclaimed = np.array([r.by_cause.get(j, {}).get("reclaimed", 0) for j in range(len(jobs))])
    assert (r.lost_s[(r.preemptions == 0)] == 0).all()
    assert reclaimed.sum() == r.interruptions.sum()


def test_research_jobs_live_with_the_brokers_lending() -> None:
    from corral.capacity.research import replay_research, research_jobs
    from corral.capacity.scenario import run_brokers

    static, predictive = run_brokers(fungible_fleet(days=2), ["static", "predictive"])
    jobs = research_jobs(static.research_gpus, 2, 0)
    _, fixed = replay_research(static, "fair", 0, jobs)
    sim, moving = replay_research(predictive, "fair", 0, jobs)
    # a static split lends a constant amount: nothing to take back
    assert fixed["research_reclaim_stops"] == 0
    # the predictive broker lends more at night and takes it back by day, stopping jobs
    assert moving["research_reclaim_stops"] > 0
    assert moving["research_best_effort_gpu_hours"] > fixed["research_best_effort_gpu_hours"]
    assert not np.isnan(sim.end_s).any()
    # a reclaim lets the job save first: jobs stopped only by reclaims lose nothing
    only_reclaimed = [j for j, c in sim.by_cause.items() if c.get("reclaimed") and sim.preemptions[j] == 0]
    assert only_reclaimed and all(sim.lost_s[j] == 0.0 for j in only_reclaimed)


def test_scaling_curves_weight_goodput() -> None:
    with pytest.raises(InputError, match="scaling"):
        ElasticJob("t", 8, 32, 8, scaling_exponent=1.5)
    # 24 GPUs at exponent 0.9 work (24 / 32) ** 0.9 as fast as 32: goodput is the GPU-seconds
    # worked at 24 weighted by (24 / 32) ** -0.1, the per-GPU efficiency relative to 32
    flat = np.full(DAY, 40.0)  # leaves 24 GPUs: the job runs below its maximum
    job = ElasticJob("t", 8, 32, 8, scaling_exponent=0.9, restart_s=0.0, write_s=0.0)
    fleet = CapacityFleet(64, 0, (Service("svc", flat, 1, 600.0),), job, STEP)
    r = simulate_capacity(fleet, Broker("static", headroom=0.0))
    assert (r.training_gpus == 24).all()
    assert r.training.useful == pytest.approx(24 * DAY * STEP * 0.75**-0.1)
    assert r.training.allocated == 24 * DAY * STEP and r.training.overhead == 0.0
