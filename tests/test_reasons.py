"""Why a job waits, for every policy: a history that agrees with what the job did, that
leaves the schedule alone, and that grows with what changes for the job, not with the
length of its queue."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.fleet import Fleet, Segment
from corral.quota import CohortSpec, QueueSpec
from corral.scheduling.registry import POLICIES, make_policy
from corral.sim.engine import Engine
from corral.simulate import simulate
from corral.state.reasons import KINDS, intervals
from tests.support.worlds import FACTORIES, table, worlds

WAITING = {
    "behind",
    "over_quota",
    "waiting_gpus",
    "fragmented",
    "reserved",
    "holding",
    "preempted",
    "interrupted",
}


def _check_history(r, job: int) -> None:
    """The job's intervals run without gaps from its submission to its end; it is `running`
    exactly during its runs (from the run ledger; a stop and a restart at one instant leave
    it running); every other interval says why it waits."""
    history = r.reasons[job]
    spans = list(intervals(history))
    assert spans[0][0] == r.jobs.submit_s[job]
    for (_, end, _), (start, _, _) in zip(spans, spans[1:], strict=False):
        assert end == start
    assert spans[-1][2].kind == "finished" and spans[-1][0] == r.end_s[job]
    runs = [
        (s, e) for j, s, e in zip(r.runs.job, r.runs.start_s, r.runs.end_s, strict=True) if j == job and e > s
    ]
    merged: list[tuple[float, float]] = []  # (a run stopped and restarted at one instant is one interval)
    for start, end in runs:
        if merged and merged[-1][1] == start:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    running = [(s, e) for s, e, reason in spans if reason.kind == "running"]
    assert running == merged
    for _, _, reason in spans[:-1]:
        assert reason.kind in KINDS
        if reason.kind != "running":
            assert reason.kind in WAITING, reason
            assert reason.render(r.jobs.job_id)  # names jobs that exist


@settings(max_examples=25, deadline=None)
@given(worlds(quotas=True), st.sampled_from(sorted(FACTORIES)))
def test_every_policy_explains_every_wait_and_explaining_changes_nothing(world, name):
    fleet, jobs = world
    runs = [
        Engine(fleet, jobs, FACTORIES[name](), record=True, explain=explain, sample_s=0).run()
        for explain in (False, True)
    ]
    assert runs[0].log == runs[1].log
    r = runs[1]
    for job in range(len(jobs)):
        _check_history(r, job)


@settings(max_examples=25, deadline=None)
@given(worlds(quotas=True), st.sampled_from(sorted(POLICIES)), st.data())
def test_explaining_a_job_stops_at_its_end_and_tells_what_the_whole_run_tells(world, name, data):
    """`corral explain` stops the run once the job has ended (nothing after can change its
    history): its history, end, preemptions and lost work are the whole run's, and the run
    went no further than the instant it ended."""
    fleet, jobs = world
    job_id = data.draw(st.sampled_from(jobs.job_id))
    i = jobs.job_id.index(job_id)
    (whole,) = simulate(jobs, fleet, [name], explain_jobs=[job_id])
    (early,) = simulate(jobs, fleet, [name], explain_jobs=[job_id], stop_when_explained=True)
    assert early.reasons[i] == whole.reasons[i]
    assert early.end_s[i] == whole.end_s[i] == early.end_of_run_s <= whole.end_of_run_s
    assert early.preemptions[i] == whole.preemptions[i] and early.lost_s[i] == whole.lost_s[i]


LONG_QUEUE = 40


@pytest.mark.parametrize("name", ["fifo", "quota-fifo", "fair", "priority", "sjf", "las", "fifo-backfill"])
def test_a_long_queue_records_a_few_reasons_per_job(name):
    """Forty 8-GPU jobs arrive at once on one 8-GPU host and run one after another. A job
    waits its turn, is at the head for one wait, runs and finishes: a handful of intervals
    each, however long the queue (naming the head each job waits behind would give the
    k-th job k rows: 820 in all)."""
    fleet = Fleet("one", [Segment("p", 1, 8, 1, 1)], "p", [QueueSpec("a", 8, cohort="c")], [CohortSpec("c")])
    jobs = table([dict(submit_s=0.0, gpus=8, duration_s=10.0 + k, queue="a") for k in range(LONG_QUEUE)])
    policy = make_policy(name) if name in POLICIES else FACTORIES[name]()
    r = Engine(fleet, jobs, policy, explain=True, sample_s=0).run()
    rows = {job: len(history) for job, history in r.reasons.items()}
    assert max(rows.values()) <= 6, rows
    for job in range(LONG_QUEUE):
        _check_history(r, job)


def test_a_blocked_head_says_what_it_lacks_and_the_rest_wait_their_turn():
    """fifo on one 8-GPU host: j0 (4 GPUs) runs, j1 needs 8 and waits for GPUs, j2 (2 GPUs)
    waits behind it in strict order, though 4 GPUs are free; when j1 starts at 100, j2 is
    the head and lacks GPUs until j1 ends."""
    fleet = Fleet("one", [Segment("p", 1, 8, 1, 1)], "p")
    jobs = table(
        [
            dict(submit_s=0.0, gpus=4, duration_s=100.0, queue="a"),
            dict(submit_s=1.0, gpus=8, duration_s=10.0, queue="a"),
            dict(submit_s=2.0, gpus=2, duration_s=10.0, queue="a"),
        ]
    )
    r = Engine(fleet, jobs, make_policy("fifo"), explain=True, sample_s=0).run()
    texts = lambda job: [(t, r.reason_text(reason)) for t, reason in r.reasons[job]]  # noqa: E731
    assert texts(1) == [
        (1.0, "waiting for GPUs: needs 8, fewer are free"),
        (100.0, "running"),
        (110.0, "finished"),
    ]
    assert texts(2) == [
        (2.0, "waiting its turn in the policy's order"),
        (100.0, "waiting for GPUs: needs 2, fewer are free"),
        (110.0, "running"),
        (120.0, "finished"),
    ]
