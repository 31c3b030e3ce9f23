"""The shared cluster state on its own, driven the way a live reconciler drives it: no engine,
no clock but the `now` each call is given."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.errors import InputError
from corral.fleet import Fleet, Segment
from corral.quota import CohortSpec, QueueSpec
from corral.scheduling.policy import Hold, Preempt, Start, Wake
from corral.scheduling.registry import POLICIES, make_policy
from corral.state.allocation import AllocationError
from corral.state.checkpoint import run_parts, run_parts_many, wall_s
from corral.state.cluster import ClusterState
from tests.conftest import make_jobs


def apply(cluster: ClusterState, policy, now: float) -> list:
    """One reconciler step: every pool's pass, each decision applied as it comes."""
    cluster.view.now_s = now
    done = []
    for pool in range(len(cluster.fleet.pools)):
        for d in policy.decide(pool):
            if isinstance(d, Start):
                cluster.start(d.job, d.placement, now)
            elif isinstance(d, Preempt):
                cluster.preempt(d.job, now, d.why, d.by)
            elif isinstance(d, Hold | Wake):
                continue
            done.append(d)
    return done


# --- the checkpoint model --------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 1e5, allow_nan=False),
            st.sampled_from([0.0, 1.0, 7.5, 600.0, 1800.0]),
            st.sampled_from([0.0, 0.5, 15.0, 60.0]),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_scalar_and_vectorised_checkpoint_models_agree_to_the_bit(runs):
    elapsed, interval, write = (np.array(c, dtype=float) for c in zip(*runs, strict=True))
    useful, saved = run_parts_many(elapsed, interval, write)
    for i, (e, iv, w) in enumerate(runs):
        u, s, _ = run_parts(e, iv, w)
        assert (u, s) == (useful[i], saved[i])


@settings(max_examples=300, deadline=None)
@given(
    st.floats(0.001, 1e5, allow_nan=False),
    st.sampled_from([1.0, 7.5, 600.0]),
    st.sampled_from([0.0, 0.5, 15.0]),
)
def test_a_run_of_wall_s_does_its_work_and_no_more(useful, interval, write):
    """After `wall_s(u)` seconds a run has done `u` useful seconds: the writes on the way are
    counted, none after the last useful second."""
    wall = wall_s(useful, interval, write)
    done, saved, writing = run_parts(wall, interval, write)
    assert done == pytest.approx(useful, rel=1e-9, abs=1e-6)
    assert saved <= done + 1e-6  # (a run within 1e-9 of a boundary has completed its save)
    assert wall == pytest.approx(done + writing, rel=1e-9, abs=1e-6)


def test_checkpoint_by_hand():
    # 30 s intervals, 5 s writes: at 100 s, three cycles (105 s) are not done; 2 saved
    assert run_parts(100.0, 30.0, 5.0) == (90.0, 60.0, 10.0)
    assert run_parts(100.0, 0.0, 5.0) == (100.0, 100.0, 0.0)  # saves on stop: keeps all
    assert wall_s(100.0, 30.0, 5.0) == 115.0  # writes after 30, 60 and 90


# --- GPU indices ---------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 8), st.booleans()), min_size=1, max_size=40))
def test_gpu_indices_are_never_given_twice(ops):
    """Start and stop jobs at random: every running job holds distinct GPU indices below its
    host's size, one per GPU it asked for, and no two running jobs share one."""
    fleet = Fleet("g", [Segment("p", 3, 8, 1, 1)])
    cluster = ClusterState(fleet)
    cluster.add_jobs(make_jobs([(0.0, g, 10.0, "p") for g, _ in ops]))
    running: list[int] = []
    for job, (gpus, stop_one) in enumerate(ops):
        cluster.submit(job)
        if stop_one and running:
            cluster.preempt(running.pop(0), 1.0)
        placement = cluster.placer.find(0, gpus)
        if placement is not None:
            cluster.start(job, placement, 1.0)
            running.append(job)
        held: dict[int, set[int]] = {}
        for j in running:
            ids = cluster.gpu_ids[j]
            assert sum(len(t) for _, t in ids) == cluster.gpus[j]
            for host, taken in ids:
                assert all(0 <= i < 8 for i in taken)
                assert not held.setdefault(host, set()) & set(taken)
                held[host] |= set(taken)
        for host in range(3):
            assert len(held.get(host, ())) == 8 - cluster.alloc.free[host]


def test_a_job_found_running_keeps_its_gpu_indices_and_taken_ones_are_refused():
    fleet = Fleet("g", [Segment("p", 1, 8, 1, 1)])
    cluster = ClusterState(fleet)
    cluster.add_jobs(make_jobs([(0.0, 2, 10.0, "p"), (0.0, 2, 10.0, "p"), (0.0, 2, 10.0, "p")]))
    cluster.adopt(0, ((0, 2),), 0.0, ids=((0, (3, 5)),))
    assert cluster.gpu_ids[0] == ((0, (3, 5)),)
    with pytest.raises(AllocationError, match="not free"):
        cluster.adopt(1, ((0, 2),), 0.0, ids=((0, (5, 6)),))
    cluster.submit(2)
    assert cluster.start(2, ((0, 2),), 1.0) == 11.0
    assert cluster.gpu_ids[2] == ((0, (0, 1)),)  # the lowest free ones


# --- hosts that join and leave -------------------------------------------------------------


def test_hosts_added_later_take_work_and_removed_ones_give_it_back():
    fleet = Fleet("g", [Segment("p", 1, 4, 1, 1)])
    cluster = ClusterState(fleet)
    with pytest.raises(InputError, match="has only 4"):
        cluster.add_jobs(make_jobs([(0.0, 8, 10.0, "p")]))
    hosts = cluster.add_hosts(Segment("p", 1, 4, 1, 1))
    assert list(hosts) == [1]
    policy = make_policy("fifo")
    policy.bind(cluster.view, 1)
    (job,) = cluster.add_jobs(make_jobs([(0.0, 8, 10.0, "p")]))
    cluster.submit(job)
    policy.submitted(job)
    (start,) = apply(cluster, policy, 0.0)
    assert sorted(h for h, _ in start.placement) == [0, 1]
    assert cluster.remove_host(1, 3.0) == [job]
    policy.interrupted(job)
    assert not cluster.is_running(job) and cluster.lost[job] == 3.0  # no checkpoint: all lost
    assert apply(cluster, policy, 4.0) == []  # 4 GPUs left: it waits
    cluster.add_hosts(Segment("p", 1, 4, 1, 1))
    (start,) = apply(cluster, policy, 5.0)
    assert sorted(h for h, _ in start.placement) == [0, 2]  # never the removed host


def test_hosts_that_do_not_fit_their_pool_are_refused():
    cluster = ClusterState(Fleet("g", [Segment("p", 1, 4, 1, 1)]))
    with pytest.raises(InputError, match="not in fleet"):
        cluster.add_hosts(Segment("q", 1, 4, 1, 1))
    with pytest.raises(InputError, match="gpus_per_host"):
        cluster.add_hosts(Segment("p", 1, 8, 1, 1))
    with pytest.raises(InputError, match="not in the fleet"):
        cluster.remove_host(5, 0.0)


# --- an open world: jobs and queues that arrive after bind ---------------------------------


@pytest.mark.parametrize("policy_name", sorted(POLICIES))
def test_jobs_and_queues_registered_after_bind_are_scheduled(policy_name):
    """A policy bound to an empty cluster takes jobs, and their queues, as they come (fair
    and priority copied job attributes into arrays at bind and failed with IndexError)."""
    fleet = Fleet(
        "g",
        [Segment("p", 2, 4, 1, 1)],
        "p",
        [QueueSpec("a", 4, cohort="c")],
        [CohortSpec("c", nominal_gpus=4)],  # room for a newcomer to borrow
        default_cohort="c",
    )
    policy = make_policy(policy_name)
    cluster = ClusterState(fleet, enforce_quota=bool(getattr(policy, "enforces_quota", False)))
    policy.bind(cluster.view, 1)
    first = cluster.add_jobs(make_jobs([(0.0, 4, 10.0, "a")]))
    for job in first:
        cluster.submit(job)
        policy.submitted(job)
    assert [d.job for d in apply(cluster, policy, 0.0)] == [0]
    table = make_jobs([(5.0, 4, 10.0, "newcomers"), (5.0, 4, 10.0, "a")])
    table.job_id = ["k0", "k1"]
    later = cluster.add_jobs(table)
    for job in later:
        cluster.submit(job)
        policy.submitted(job)
    started = [d.job for d in apply(cluster, policy, 5.0) if isinstance(d, Start)]
    assert len(started) == 1  # one host left
    for now in (10.0, 15.0, 20.0):
        for job in [j for j in range(len(cluster)) if cluster.is_running(j)]:
            if cluster.expected_end[job] <= now:
                cluster.complete(job, now)
                policy.finished(job)
        apply(cluster, policy, now)
    assert all(not math.isnan(t) for t in cluster.first_start)


@pytest.mark.parametrize("policy_name", sorted(POLICIES))
def test_a_cancelled_job_is_never_started(policy_name):
    """fifo would start a cancelled head; fifo-backfill could not cope with one."""
    fleet = Fleet("g", [Segment("p", 1, 4, 1, 1)])
    policy = make_policy(policy_name)
    cluster = ClusterState(fleet, enforce_quota=bool(getattr(policy, "enforces_quota", False)))
    policy.bind(cluster.view, 1)
    for job in cluster.add_jobs(make_jobs([(0.0, 4, 10.0, "p"), (0.0, 4, 10.0, "p"), (0.0, 4, 10.0, "p")])):
        cluster.submit(job)
        policy.submitted(job)
    assert [d.job for d in apply(cluster, policy, 0.0)] == [0]
    cluster.withdraw(1, 1.0)
    policy.withdrawn(1)
    assert cluster.withdraw(0, 2.0) is True  # killed while running: its GPUs come back
    policy.withdrawn(0)
    assert cluster.alloc.free[0] == 4
    assert [d.job for d in apply(cluster, policy, 2.0)] == [2]
    assert cluster.end[1] == 1.0 and math.isnan(cluster.first_start[1])


def test_a_closed_host_keeps_its_jobs_and_gives_no_new_gpus():
    """Cordoning closes a host: its running job keeps its GPUs, GPUs it frees stay hidden,
    nothing new is placed there until it reopens; removing it still works."""
    from corral.fleet import Fleet, Segment
    from corral.state.cluster import ClusterState

    cluster = ClusterState(Fleet("x", [Segment("p", 2, 4, 1, 1)], "p"))
    cluster.add_jobs(make_jobs([(0, 2, 10), (0, 4, 10), (0, 1, 10)]))
    for job in range(3):
        cluster.submit(job)
    cluster.start(0, ((0, 2),), 0.0)
    cluster.alloc.close(0)
    assert cluster.alloc.pool_free[0] == 4 and cluster.view.place(2) == ((1, 1),)
    cluster.start(1, ((1, 4),), 0.0)
    assert cluster.view.place(2) is None  # (host 0 has 2 GPUs free, hidden)
    cluster.complete(0, 5.0)
    assert cluster.view.place(2) is None and cluster.alloc.hidden[0] == 4
    cluster.alloc.reopen(0)
    assert cluster.view.place(2) == ((0, 1),) and cluster.alloc.pool_free[0] == 4
    cluster.alloc.close(0)
    assert cluster.remove_host(0, 6.0) == [] and cluster.alloc.pool_free[0] == 0


# --- remembered placement failures -----------------------------------------------------------


OPS = ["start", "stop", "close", "reopen", "take out", "put back"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(OPS), st.integers(1, 12), st.integers(0, 99), st.booleans()),
        min_size=1,
        max_size=40,
    )
)
def test_a_remembered_failure_answers_as_a_fresh_search_would(ops):
    """Start, stop, cordon, reopen, take out and put back at random: after each step, every
    size asked for at every topology level is placed by the view (which remembers failures
    until GPUs come back, or for whole hosts until a host is wholly free) exactly where a
    fresh search puts it, whether the sizes are asked smallest or largest first (a failure
    of whole hosts is remembered as such only when it is the smallest known); and
    `unplaceable_from`, which policies filter sizes by, is the fewest GPUs the view has
    failed to place since GPUs last came back, however it knew."""
    fleet = Fleet("g", [Segment("p", 6, 4, 2, 2)])
    cluster = ClusterState(fleet)
    largest = {"": 24, "host": 4, "rack": 8, "pod": 16}  # (racks of 2 hosts, pods of 2 racks)
    asked = [(level, g) for level, most in largest.items() for g in range(1, most + 1)]
    table = make_jobs([(0.0, g, 10.0) for _, g in asked] + [(0.0, op[1], 10.0) for op in ops])
    table.topology = [level for level, _ in asked] + [""] * len(ops)
    cluster.add_jobs(table)
    queries = range(len(asked))
    running: list[int] = []
    failed: dict = {}  # level -> (release epoch, fewest GPUs the view failed to place)

    def saw(level, gpus, found):
        epoch = cluster.alloc.release_epoch[0]
        if found is None and (failed.get(level, (None,))[0] != epoch or gpus < failed[level][1]):
            failed[level] = (epoch, gpus)

    for i, (op, _, pick, largest_first) in enumerate(ops):
        job = len(asked) + i
        host = pick % fleet.hosts
        if op == "start":
            cluster.submit(job)
            placement = cluster.view.place(job)
            saw(cluster.level[job], cluster.gpus[job], placement)
            if placement is not None:
                cluster.start(job, placement, 1.0)
                running.append(job)
        elif op == "stop" and running:
            cluster.complete(running.pop(pick % len(running)), 2.0)
        elif op == "close":
            cluster.alloc.close(host)
        elif op == "reopen":
            cluster.alloc.reopen(host)
        elif op == "take out" and not cluster.alloc.out[host] and cluster.alloc.left[host] == 4:
            cluster.alloc.take_out(host)
        elif op == "put back" and cluster.alloc.out[host]:
            cluster.alloc.put_back(host)
        epoch = cluster.alloc.release_epoch[0]
        for q in reversed(queries) if largest_first else queries:
            level, gpus = cluster.level[q], cluster.gpus[q]
            fresh = cluster.placer.find(0, gpus, False, level)
            assert cluster.view.place(q) == fresh, (q, cluster.alloc.left)
            saw(level, gpus, fresh)
        for level in {cluster.level[q] for q in queries}:
            known = failed[level][1] if failed.get(level, (None,))[0] == epoch else math.inf
            assert cluster.view.unplaceable_from(0, level) == known


def test_a_whole_host_failure_stands_until_a_host_is_wholly_free():
    """Two 4-GPU hosts, each with one GPU taken: a 4-GPU job cannot be placed, and stays
    unplaceable without a search when a 1-GPU job ends on a host that keeps another (GPUs
    came back, but no host is whole); once a host is wholly free it is placed."""
    cluster = ClusterState(Fleet("g", [Segment("p", 2, 4, 1, 1)]))
    cluster.add_jobs(make_jobs([(0, 1, 10), (0, 1, 10), (0, 1, 10), (0, 4, 10)]))
    for job, host in ((0, 0), (1, 0), (2, 1)):
        cluster.submit(job)
        cluster.start(job, ((host, 1),), 0.0)
    cluster.submit(3)
    assert cluster.view.place(3) is None
    searches = []
    find = cluster.placer.find
    cluster.placer.find = lambda *a, **k: searches.append(a) or find(*a, **k)
    cluster.complete(0, 1.0)  # (host 0 keeps job 1)
    assert cluster.view.place(3) is None and searches == []
    assert cluster.view.unplaceable_from(0, None) == 4
    cluster.complete(1, 2.0)
    assert cluster.view.place(3) == ((0, 4),) and len(searches) == 1
