"""Schedules worked out by hand, one per policy: these start and end times, exactly."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from corral.scheduling.fifo import Fifo, FifoBackfill
from corral.scheduling.ftf import FinishTimeFair
from corral.scheduling.las import Las
from corral.scheduling.preemptive import Srtf
from corral.scheduling.registry import make_policy
from corral.scheduling.sjf import Sjf
from corral.sim.engine import Engine
from tests.conftest import flat_fleet, make_jobs

# Two hosts of 4 GPUs. A holds host 0 for 10 s; B needs both hosts; C is a short 1-GPU job.
HOL = [(0, 4, 10), (1, 8, 5), (2, 1, 3)]


def run(policy, fleet, rows):
    return Engine(fleet, make_jobs(rows), policy, record=True).run()


def test_fifo_head_of_line_blocking(two_hosts_of_four):
    r = run(Fifo(), two_hosts_of_four, HOL)
    # B waits for A (t=10); C waits behind B although host 1 is free all along.
    assert r.start_s.tolist() == [0, 10, 15]
    assert r.end_s.tolist() == [10, 15, 18]


def test_easy_backfill_lets_short_job_jump_without_delaying_head(two_hosts_of_four):
    r = run(FifoBackfill(), two_hosts_of_four, HOL)
    # Head B reserved at t=10 (when A ends); C ends at 5 <= 10, so it backfills at 2 on host 1.
    assert r.start_s.tolist() == [0, 10, 2]
    assert r.end_s.tolist() == [10, 15, 5]
    assert r.hosts[2] == "1"


def test_backfill_refuses_a_job_that_would_delay_the_head(two_hosts_of_four):
    # C now runs 20 s: it would still hold host 1 at t=10 and delay B, so it must wait.
    r = run(FifoBackfill(), two_hosts_of_four, [(0, 4, 10), (1, 8, 5), (2, 1, 20)])
    assert r.start_s.tolist() == [0, 10, 15]


def test_backfill_uses_extra_gpus_beyond_the_reservation():
    # 3 hosts of 4. A (8 GPUs) runs to t=10; head B needs 8 -> at t=10 there are 12 free,
    # so 4 GPUs are extra and a long 4-GPU job C may take host 2 now.
    fleet = flat_fleet(3, 4)
    r = run(FifoBackfill(), fleet, [(0, 8, 10), (1, 12, 5), (2, 4, 100)])
    # B needs all 12: shadow 10, extra 0 -> C (ends 102) must wait until B is done at 15.
    assert r.start_s.tolist() == [0, 10, 15]
    r = run(FifoBackfill(), fleet, [(0, 8, 10), (1, 8, 5), (2, 4, 100)])
    # B needs 8: at t=10 12 are free, extra 4 -> C starts at 2 on host 2; B then gets hosts 0-1.
    assert r.start_s.tolist() == [0, 10, 2]


@pytest.mark.parametrize("policy", ["fifo-backfill", "fair"])
def test_backfill_counts_checkpoint_writes_in_when_a_running_job_ends(two_hosts_of_four, policy):
    # A has 100 s of work on host 0 and blocks 5 s to write a checkpoint every 30 s: it ends
    # at 115, not 100. Head B needs both hosts, so it is reserved for t=115; C (110 s) ends
    # at 112 on host 1 and backfills at once. Reserving for t=100 kept C waiting until B was
    # done (start 120).
    jobs = replace(
        make_jobs([(0, 4, 100), (1, 8, 5), (2, 4, 110)]),
        checkpoint_interval_s=np.array([30.0, 0.0, 0.0]),
        checkpoint_write_s=np.array([5.0, 0.0, 0.0]),
    )
    r = Engine(two_hosts_of_four, jobs, make_policy(policy), record=True).run()
    assert r.end_s.tolist() == [115, 120, 112]
    assert r.start_s.tolist() == [0, 115, 2]


def test_sjf_starts_the_shortest_that_fits(two_hosts_of_four):
    rows = [(0, 8, 10), (1, 4, 30), (1, 4, 5), (1, 4, 20)]
    r = run(Sjf(), two_hosts_of_four, rows)
    # At t=10 both hosts free: the 5 s and then the 20 s job start; the 30 s one waits.
    assert r.start_s.tolist() == [0, 15, 10, 10]
    assert r.end_s.tolist() == [10, 45, 15, 30]


def test_srtf_preempts_for_a_shorter_newcomer():
    fleet = flat_fleet(1, 1)
    r = run(Srtf(), fleet, [(0, 1, 10), (1, 1, 2)])
    # B (2 s) preempts A (9 s left) at t=1; A resumes at 3 with 9 s to go.
    assert r.start_s.tolist() == [0, 1]
    assert r.end_s.tolist() == [12, 3]
    assert r.preemptions.tolist() == [1, 0]


def test_las_demotes_after_the_threshold_then_serves_the_newcomer():
    fleet = flat_fleet(1, 1)
    r = run(Las(thresholds_gpu_s=(5.0,), promote_knob=0), fleet, [(0, 1, 10), (1, 1, 3)])
    # Both in Q0 at t=1 and the running job keeps its place; A reaches 5 GPU-s at t=5, drops
    # to Q1, and B takes the GPU until 8; A resumes and ends at 13.
    assert r.end_s.tolist() == [13, 8]
    assert r.start_s.tolist() == [0, 5]
    assert r.preemptions.tolist() == [1, 0]


def test_las_attained_service_counts_gpus():
    # A 2-GPU job reaches 4 GPU-s after 2 s, not 4.
    fleet = flat_fleet(1, 2)
    r = run(Las(thresholds_gpu_s=(4.0,), promote_knob=0), fleet, [(0, 2, 10), (1, 2, 1)])
    assert r.start_s.tolist() == [0, 2]
    assert r.end_s.tolist() == [11, 3]


def test_las_starvation_rule_promotes_a_waiting_job():
    fleet = flat_fleet(1, 1)
    rows = [(0, 1, 10), (1, 1, 100)]
    # Without the rule: A is demoted at 2 and B preempts it; B is demoted into Q1 at 4,
    # behind A (which entered Q1 at 2), so A takes the GPU back and runs to its end at 12.
    off = run(Las(thresholds_gpu_s=(2.0,), promote_knob=0), fleet, rows)
    assert off.end_s.tolist() == [12, 110]
    # With PROMOTEKNOB 1, a job waiting as long as it had run is promoted back to Q0: A is
    # promoted at 4 and preempts B, which is promoted at 6 and preempts A, and so on:
    # A and B alternate every 2 s until A is done at 18.
    on = run(Las(thresholds_gpu_s=(2.0,), promote_knob=1), fleet, rows)
    assert on.end_s.tolist() == [18, 110]
    assert on.preemptions.tolist() == [4, 4]


def test_ftf_serves_the_worst_finish_time_fairness_once_a_lease_is_over():
    fleet = flat_fleet(1, 4)
    # A (queue a) alone: 1/1 share, alone 10,000 s; it starts at 0 with rho 1.0 if it runs
    # through. B (queue b) arrives at 100: two queues, a 2-GPU share, so its 4-GPU gang
    # would take 1,200 s alone. Ranked at the next round (t=600): rho (600-100+600)/1200 =
    # 0.92, not 1.25 x A's: B waits. At the round at 600, A's lease is over and B's rho if it
    # starts at the next round is (1200-100+600)/1200 = 1.42 > 1.25 x 1.0: B takes the GPUs.
    rows = [(0, 4, 10_000, "a"), (100, 4, 600, "b")]
    r = run(FinishTimeFair(), fleet, rows)
    assert r.start_s.tolist() == [0, 600]
    assert r.end_s.tolist() == [10_600, 1_200]
    assert r.preemptions.tolist() == [1, 0]
    # Under LAS, A (4 GPU-h in Q0) runs through and B waits: B's rho (10,600-100)/1,200 = 8.75.
    las = run(Las(), fleet, rows)
    assert las.end_s.tolist() == [10_000, 10_600]


def test_ftf_margin_keeps_jobs_of_like_rho_from_trading_gpus():
    fleet = flat_fleet(1, 4)
    # B alone would take 6,000 s; ranked at round t for the next one, its rho is
    # (t + 600 - 100 + 3000) / 6000. With margin 1.25 it first beats A's 1.0 by that much at
    # the round at t=4,200 (1.283; 1.183 at 3,600) and runs through.
    rows = [(0, 4, 10_000, "a"), (100, 4, 3_000, "b")]
    r = run(FinishTimeFair(), fleet, rows)
    assert r.start_s.tolist() == [0, 4_200]
    assert r.end_s.tolist() == [13_000, 7_200]
    assert r.preemptions.tolist() == [1, 0]
    # With margin 1, B starts at 3,000 (1.083) with a run rho of 0.983; at 3,600 waiting A's
    # rho (4,200 + 7,000) / 10,000 = 1.12 beats it, and the two trade the GPUs every lease
    # (each waiting one's rho at the next round beats the runner's) until B ends at 8,400.
    even = run(FinishTimeFair(margin=1.0), fleet, rows)
    assert even.start_s.tolist() == [0, 3_000]
    assert even.end_s.tolist() == [13_000, 8_400]
    assert even.preemptions.tolist() == [5, 4]


def test_non_preemptible_jobs_are_never_victims():
    fleet = flat_fleet(1, 1)
    jobs = make_jobs([(0, 1, 10, "default", False), (1, 1, 2)])
    r = Engine(fleet, jobs, Srtf()).run()
    assert r.end_s.tolist() == [10, 12]
    assert int(np.sum(r.preemptions)) == 0


def test_gang_waits_for_a_consolidated_block_unless_relaxed():
    # 4 hosts of 4 in racks of 2. One GPU busy on hosts 0 and 2 leaves 2 whole hosts, but in
    # different racks: an 8-GPU gang wants one rack, falls back to the pool level and takes
    # hosts 1 and 3 (the domain here is the whole pool).
    from corral.state.allocation import FleetState
    from corral.state.placement import Placer

    fleet = flat_fleet(4, 4, hosts_per_rack=2)
    state = FleetState(fleet)
    state.allocate(0, ((0, 1), (2, 1)))
    placer = Placer(state)
    assert placer.find(0, 8) == ((1, 4), (3, 4))
    state.allocate(0, ((3, 1),))
    # Only host 1 is whole now (free: 3, 4, 3, 2): consolidated placement fails; relaxed
    # placement takes the hosts with the most free GPUs first: 4 + 3 + 1.
    assert placer.find(0, 8) is None
    assert placer.find(0, 8, relaxed=True) == ((1, 4), (0, 3), (2, 1))


def test_gang_prefers_the_smallest_domain():
    from corral.state.allocation import FleetState
    from corral.state.placement import Placer

    fleet = flat_fleet(4, 4, hosts_per_rack=2)
    state = FleetState(fleet)
    state.allocate(0, ((0, 1),))
    # Rack 1 (hosts 2, 3) is whole: the gang goes there, not across racks.
    assert Placer(state).find(0, 8) == ((2, 4), (3, 4))
    # A 6-GPU gang: one whole host plus a host with >= 2 free in the same rack: rack 0 has
    # host 1 whole and host 0 with 3 free, and is the fuller rack.
    assert Placer(state).find(0, 6) == ((1, 4), (0, 2))
