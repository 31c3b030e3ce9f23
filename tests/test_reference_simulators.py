"""Agreement with the reference simulators of the field, case by case, each worked by hand:
Tiresias' simulator (Gu et al., NSDI'19, github.com/SymbioticLab/Tiresias, simulator/
run_sim.py) and Alibaba's PAI simulator. Where corral follows the same rule, the answer is
theirs; where the reference has a bug (Tiresias' late demotion), corral's answer is the
rule's."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from corral.errors import InputError
from corral.scheduling.fifo import Fifo, FifoBackfill, FifoFirstFit
from corral.scheduling.las import Las
from corral.scheduling.preemptive import Srtf
from corral.scheduling.registry import make_policy
from corral.sim.engine import Engine
from corral.sim.metrics import summary
from corral.workload import JobTable
from tests.conftest import flat_fleet, make_jobs

TIRESIAS = (3250.0, 7200.0)  # GPU-seconds, the queue limits of Tiresias' simulator runs


def run(policy, fleet, rows):
    jobs = rows if isinstance(rows, JobTable) else make_jobs(rows)
    return Engine(fleet, jobs, policy, record=True).run()


def test_srtf_preempts_only_the_job_whose_gpus_it_needs():
    # Job 2 (3 GPUs, 20 s) outranks both running jobs. Taking the lowest-ranked first, job 0
    # (1 GPU, 990 s left) is not enough alone, so job 1 (3 GPUs, 90 s left) is added; job 1
    # alone frees what job 2 needs, so job 0 is given back and runs on.
    r = run(Srtf(), flat_fleet(1, 4), [(0, 1, 1000), (0, 3, 100), (10, 3, 20)])
    assert r.end_s.tolist() == [1000, 120, 30]
    assert r.preemptions.tolist() == [0, 1, 0]


def test_las_preempts_only_the_job_whose_gpus_it_needs():
    # Job 0 is in Q2 from t=7200, job 1 in Q1 from 8083.3. Job 2 (Q0) needs 3 GPUs: job 0's
    # one is not enough, job 1's three are, so job 0 runs on to 20000. Job 1 is back at
    # 8600 with 3500 s left.
    r = run(Las(TIRESIAS, 0), flat_fleet(1, 4), [(0, 1, 20000), (7000, 3, 5000), (8500, 3, 100)])
    assert r.end_s.tolist() == [20000, 12100, 8600]
    assert r.preemptions.tolist() == [0, 1, 0]


@pytest.mark.parametrize("order", ["fifo", "reference"])
def test_las_a_job_demoted_into_a_queue_lands_behind_the_jobs_waiting_there(order):
    # Job 0 (2 GPUs) enters Q1 at 1625 (3250 GPU-s) and is preempted by job 1 at 1700.
    # Job 1 enters Q1 at 3325, behind job 0, which takes the GPUs back and runs its last
    # 300 s to 3625, as in Tiresias. (A running job that kept its place would hold them to
    # 5300.) Job 1 then runs its last 98,375 s.
    r = run(Las(TIRESIAS, 0, order=order), flat_fleet(1, 2), [(0, 2, 2000), (1700, 2, 100_000)])
    assert r.end_s.tolist() == [3625, 102_000]
    assert r.preemptions.tolist() == [1, 1]


def test_las_orders_differ_when_a_waiting_job_was_passed_over():
    # B (2 GPUs) arrives at 3 and cannot start beside A; C (1 GPU) starts at 4 beside A.
    # fifo: B entered Q0 before C, so when A ends at 5, B takes C's GPU; at 7 B is demoted
    # and C, back in front, ends at 9; B ends at 11.
    # reference: after the pass at 4, B (waiting) moved behind C (running), so B waits for
    # C to end at 7 (Tiresias' order).
    rows = [(2, 1, 3), (3, 2, 4), (4, 1, 3)]
    fifo = run(Las((4.0,), 0, order="fifo"), flat_fleet(1, 2), rows)
    assert fifo.end_s.tolist() == [5, 11, 9]
    reference = run(Las((4.0,), 0, order="reference"), flat_fleet(1, 2), rows)
    assert reference.end_s.tolist() == [5, 11, 7]


def test_las_demotes_a_multi_gpu_job_on_gpu_seconds():
    # A 4-GPU job crosses 3250 GPU-s at t=812.5 and drops to Q1; the waiting job takes the
    # GPUs then.
    r = run(Las((3250.0,), 0), flat_fleet(1, 4), [(0, 4, 10_000), (800, 4, 100)])
    assert r.start_s.tolist() == [0, 812.5]
    assert r.end_s.tolist() == [10_100, 912.5]


def test_las_does_not_copy_tiresias_late_demotion():
    # Tiresias' simulator computes a running job's next demotion from its executed seconds
    # where it needs GPU-seconds. Job 0 (2 GPUs) has 7000 GPU-s at 3500, when job 1 preempts
    # it in Q1; back at 5125 it crosses 7200 GPU-s at 5225 and drops to Q2, where job 1
    # (Q1) takes the GPUs until it is demoted too, at 7200; job 0, ahead in Q2, ends at
    # 7300. Tiresias dates that demotion (7200 - 3500) / 2 s after 5125, after job 0's end,
    # and ends it at 5325.
    r = run(Las(TIRESIAS, 0), flat_fleet(1, 2), [(0, 2, 3700), (3500, 2, 100_000)])
    assert r.end_s.tolist() == [7300, 103_700]


def test_las_starvation_clock_since_preemption_or_since_promotion():
    # One GPU; queue limits 2 and 6 GPU-s; PROMOTEKNOB 2. Up to t=16 both clocks agree:
    # A is preempted at 3 (Q1), 9 and 14 (now Q2, 6 s executed, never promoted), having
    # waited 3-7 and 9-13 before. B ends at 16 and C (Q1) runs on.
    # From preemption, A is promoted at 14 + 2 x 6 = 26, after C ends at 20: A ends at 21.
    # From promotion, its earlier 8 s of waiting count: promoted at 14 + 12 - 8 = 18, it
    # preempts C and ends at 19; C ends at 21.
    fleet = flat_fleet(1, 1)
    rows = [(0, 1, 7), (3, 1, 6), (3, 1, 8)]
    since_stop = run(Las((2.0, 6.0), 2, starve_from="preemption"), fleet, rows)
    assert since_stop.end_s.tolist() == [21, 16, 20]
    since_promotion = run(Las((2.0, 6.0), 2, starve_from="promotion"), fleet, rows)
    assert since_promotion.end_s.tolist() == [19, 16, 21]


def test_fifo_firstfit_skips_a_job_that_does_not_fit():
    # Job 1 (4 GPUs) cannot start beside job 0; first-fit starts job 2 (1 GPU) at 2 and job 1
    # waits for both: JCT 100, 211, 200. Strict FIFO and EASY hold job 2 behind job 1 (job 2
    # would delay its reservation at 100): JCT 100, 109, 308.
    rows = [(0, 2, 100), (1, 4, 10), (2, 1, 200)]
    fleet = flat_fleet(1, 4)
    first_fit = summary(run(FifoFirstFit(), fleet, rows))
    assert first_fit["avg_jct_s"] == pytest.approx(511 / 3)
    for strict in (Fifo(), FifoBackfill()):
        assert summary(run(strict, fleet, rows))["avg_jct_s"] == pytest.approx(517 / 3)


def test_policy_parameters_from_a_spec():
    las = make_policy("las:thresholds=3250,7200:knob=8:order=reference:starve=promotion")
    assert isinstance(las, Las)
    assert (las.thresholds, las.promote_knob, las.order, las.starve_from) == (
        (3250.0, 7200.0),
        8.0,
        "reference",
        "promotion",
    )
    assert las.name == "las:thresholds=3250,7200:knob=8:order=reference:starve=promotion"
    assert make_policy("fair-decay:half_life=86400").parts.half_life_s == 86400.0
    ftf = make_policy("ftf:lease=300:margin=1.5")
    assert (ftf.lease_s, ftf.margin) == (300.0, 1.5)
    assert make_policy("fifo-backfill:depth=50").depth == 50
    assert make_policy("priority:depth=10").parts.backfill_depth == 10
    assert make_policy("las").name == "las"


@pytest.mark.parametrize(
    "spec, says",
    [
        ("las:speed=3", "no parameter 'speed'"),
        ("las:thresholds=7200,3250", "increasing"),
        ("las:thresholds=0", "positive"),
        ("las:knob=-1", "knob"),
        ("las:knob=1:knob=2", "twice"),
        ("las:order=lifo", "one of fifo, reference"),
        ("las:knob", "knob=value"),
        ("ftf:lease=nan", "lease"),
        ("fifo:depth=3", "has: none"),
        ("fifo-backfill:depth=0", ">= 1"),
        ("nope", "unknown policy"),
    ],
)
def test_a_bad_policy_spec_names_what_is_wrong(spec, says):
    with pytest.raises(InputError, match=says):
        make_policy(spec)


@pytest.mark.parametrize(
    "restart_s, start_s, end_s",
    [
        (0.0, [0, 0, 105, 10, 10], [105, 201, 405, 15, 16]),
        (30.0, [0, 0, 135, 10, 10], [135, 231, 435, 15, 16]),
    ],
)
def test_srtf_never_stops_and_starts_a_job_in_one_instant(restart_s, start_s, end_s):
    # A 1x3 fleet. At 10 jobs 3 (5 s) and 4 (6 s) outrank job 0 (2 GPUs, 90 s left) and job 1
    # (1 GPU, 190 s left). Handed out afresh by rank (Tiresias' `shortest`), 3 and 4 take a
    # GPU each and job 0's two do not fit beside them, job 1's one does: job 0 alone is
    # stopped, and its two GPUs serve both newcomers. At 15 job 3 ends and job 0 (90 s left,
    # plus its restart) outranks job 1 (185 s): job 1 is stopped for it. At 16 job 4's GPU
    # goes to job 1; job 2 (300 s) first starts when job 0 ends. Two preemptions. (Stopping
    # job 1 for job 3 and job 0 for job 4 left a GPU over, which job 2 took at 10, to be
    # stopped at once for job 1: four preemptions, job 2 "started" at 10.) With a restart of
    # 30 s charged to each resumed run, job 0 ends at 15 + 30 + 90 and job 1 at 16 + 30 + 185.
    jobs = make_jobs([(0, 2, 100), (0, 1, 200), (1, 1, 300), (10, 1, 5), (10, 1, 6)])
    jobs = replace(jobs, restart_s=np.full(len(jobs), restart_s))
    r = run(Srtf(), flat_fleet(1, 3), jobs)
    assert r.start_s.tolist() == start_s
    assert r.end_s.tolist() == end_s
    assert r.preemptions.tolist() == [1, 1, 0, 0, 0]
