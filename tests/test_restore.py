"""A policy must survive what a live cluster does to it: a restart from plain data, jobs
cancelled, jobs, queues and hosts that arrive after it was bound.

Restore equivalence: run the simulator to a random time T, export the cluster state and the
policy state, push both through JSON, build a fresh cluster state and a fresh policy from
that data alone and carry on. Every start, stop, failure and end after T, and every job's
record, must be what the uninterrupted run gave.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.fleet import Fleet, Segment
from corral.quota import CohortSpec, QueueSpec
from corral.state.allocation import AllocationError
from corral.state.cluster import ClusterState
from tests.support.worlds import FACTORIES, engine, table, worlds


def record(result) -> list:
    return [
        result.start_s.tolist(),
        result.end_s.tolist(),
        result.preemptions.tolist(),
        result.lost_s.tolist(),
        result.interruptions.tolist(),
        result.hosts,
    ]


def restored_run(fleet, jobs, policy: str, failure_seed: int | None, cut_s: float):
    """Run to `cut_s`, rebuild cluster and policy from JSON, run to the end."""
    e = engine(fleet, jobs, policy, failure_seed)
    e.begin()
    e.advance(cut_s)
    data = json.loads(json.dumps({"cluster": e.cluster.export(), "policy": e.policy.export()}))
    cluster = ClusterState.restore(fleet, data["cluster"], enforce_quota=e.cluster.enforce_quota, record=True)
    e.replace(cluster, FACTORIES[policy](), data["policy"])
    e.advance()
    return e.result(), e


@settings(max_examples=120, deadline=None)
@given(
    st.booleans().flatmap(worlds),
    st.sampled_from(sorted(FACTORIES)),
    st.floats(0.0, 1.0),
    st.one_of(st.none(), st.integers(0, 3)),
)
def test_a_restart_from_plain_data_continues_the_same_schedule(world, policy, cut, failure_seed):
    fleet, jobs = world
    whole = engine(fleet, jobs, policy, failure_seed).run()
    cut_s = cut * whole.end_of_run_s
    restored, _ = restored_run(fleet, jobs, policy, failure_seed, cut_s)
    assert restored.log == [e for e in whole.log if e[0] > cut_s]
    assert record(restored) == record(whole)


@pytest.mark.parametrize("policy", sorted(FACTORIES))
def test_restart_mid_run_with_jobs_running_across_it(policy):
    """The regressions of a policy rebuilt with only the pending jobs: a job running across
    the restart finishing (KeyError in fair, priority, las, fifo-backfill, ftf), a
    preemption it should make (srtf skipped it), quota it held (quota-fifo went negative)."""
    fleet = Fleet(
        "w",
        [Segment("p0", 2, 4, 1, 2)],
        "p0",
        [QueueSpec("a", 4, cohort="c"), QueueSpec("b", 4, cohort="c")],
        [CohortSpec("c")],
    )
    jobs = table(
        [
            dict(submit_s=0.0, gpus=4, duration_s=50.0, queue="a", priority=0),
            dict(submit_s=0.0, gpus=4, duration_s=30.0, queue="a", priority=0),
            dict(submit_s=5.0, gpus=4, duration_s=5.0, queue="b", priority=2),
            dict(submit_s=6.0, gpus=2, duration_s=10.0, queue="b", priority=1),
        ]
    )
    whole = engine(fleet, jobs, policy, None).run()
    restored, e = restored_run(fleet, jobs, policy, None, 3.0)  # jobs 0 and 1 run across it
    assert record(restored) == record(whole)
    # quota accounting came back whole: nothing is held at the end, no GPU is left taken
    assert e.cluster.quota.demand == [0.0] * len(e.cluster.quota.demand)
    assert (e.cluster.alloc.free == fleet.host_gpus).all()


@settings(max_examples=100, deadline=None)
@given(
    st.booleans().flatmap(worlds),
    st.sampled_from(sorted(FACTORIES)),
    st.floats(0.0, 1.0),
    st.data(),
)
def test_a_withdrawn_job_never_starts_and_a_killed_one_frees_exactly_its_gpus(world, policy, cut, data):
    fleet, jobs = world
    whole = engine(fleet, jobs, policy, None).run()
    cut_s = cut * whole.end_of_run_s
    e = engine(fleet, jobs, policy, None)
    e.begin()
    e.advance(cut_s)
    c = e.cluster
    alive = [j for j in range(len(jobs)) if c.status[j] in (0, 1, 2)]
    if not alive:
        return
    victim = data.draw(st.sampled_from(alive))
    running = c.is_running(victim)
    free_before = c.alloc.free.copy()
    held = c.gpu_ids[victim]
    usage_before = list(c.quota.demand)
    c_log = len(c.log)
    # what the cancellation alone does, before any pass gives the GPUs away
    c.withdraw(victim, e.now)
    expected = free_before.copy()
    for host, ids in held or ():
        expected[host] += len(ids)
    assert (c.alloc.free == expected).all()
    if running:
        queue = c.queue[victim]
        assert c.quota.demand[queue] == usage_before[queue] - jobs.gpus[victim]
    # put it back and let the engine do the same, passes included, to the end
    e = engine(fleet, jobs, policy, None)
    e.begin()
    e.advance(cut_s)
    at = e.now
    e.withdraw(victim)
    e.advance()
    r = e.result()
    assert not [ev for ev in r.log[c_log:] if ev[1] == "start" and ev[2] == victim]
    assert r.end_s[victim] == at
    # every other job still finishes, and everything held is given back
    assert not any(math.isnan(t) for t in r.end_s)
    assert (e.cluster.alloc.free == fleet.host_gpus).all()
    assert e.cluster.quota.demand == [0.0] * len(e.cluster.quota.demand)


def test_withdraw_refuses_a_job_that_has_ended():
    fleet = Fleet("w", [Segment("p0", 1, 4, 1, 1)])
    jobs = table([dict(submit_s=0.0, gpus=1, duration_s=5.0, queue="p0", priority=0)])
    e = engine(fleet, jobs, "fifo", None)
    e.run()
    with pytest.raises(AllocationError, match="already ended"):
        e.cluster.withdraw(0, 10.0)
