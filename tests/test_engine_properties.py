"""The engine against a naive reference, and invariants over random workloads."""

from __future__ import annotations

import dataclasses
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.fleet import Fleet, Segment
from corral.scheduling import fifo
from corral.scheduling.registry import POLICIES, make_policy
from corral.sim.engine import Engine
from corral.synth import synth_jobs
from tests.conftest import make_jobs
from tests.support.reference import naive_preemptive, naive_preemptive_decide, naive_simulate


@st.composite
def fleets(draw):
    """One or two pools of small hosts in small racks."""
    pools = draw(st.integers(1, 2))
    segments = []
    for p in range(pools):
        segments.append(
            Segment(
                pool=f"p{p}",
                hosts=draw(st.integers(1, 6)),
                gpus_per_host=draw(st.sampled_from([1, 2, 4, 8])),
                hosts_per_rack=draw(st.integers(1, 3)),
                racks_per_pod=draw(st.integers(1, 2)),
            )
        )
    return Fleet("random", segments)


@st.composite
def workloads(draw, fleet):
    n = draw(st.integers(1, 25))
    rows = []
    for _ in range(n):
        p = draw(st.integers(0, len(fleet.pools) - 1))
        size = draw(st.integers(1, fleet.pool_gpus[p]))
        rows.append(
            (
                float(draw(st.integers(0, 40))),  # integer times make ties common
                size,
                float(draw(st.integers(1, 30))),
                fleet.pools[p],
                draw(st.booleans()),
            )
        )
    return make_jobs(rows)


@st.composite
def scenarios(draw):
    fleet = draw(fleets())
    return fleet, draw(workloads(fleet))


@settings(max_examples=150, deadline=None)
@given(scenarios(), st.sampled_from(["fifo", "fifo-firstfit", "fifo-backfill", "sjf"]))
def test_engine_matches_naive_reference(scenario, policy):
    fleet, jobs = scenario
    fast = Engine(fleet, jobs, make_policy(policy)).run()
    assert fast.start_s.tolist() == naive_simulate(fleet, jobs, policy)


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_backfill_walked_size_by_size_matches_naive_reference(scenario):
    fleet, jobs = scenario
    with patch.object(fifo, "WALK_BY_SIZE", 0):  # (every queue, however short; long ones are)
        fast = Engine(fleet, jobs, make_policy("fifo-backfill")).run()
    assert fast.start_s.tolist() == naive_simulate(fleet, jobs, "fifo-backfill")


@pytest.mark.parametrize("overstated", [False, True])
def test_backfill_walk_by_size_keeps_the_schedule(monkeypatch, overstated):
    """A contended lab-shaped queue (hundreds waiting, gangs up to 1,024 GPUs, estimates
    that overstate some runs so jobs end early): walked size by size or job by job, every
    job starts at the same time on the same hosts."""
    fleet = Fleet("lab", [Segment(pool="a", hosts=160, gpus_per_host=8, hosts_per_rack=4, racks_per_pod=10)])
    jobs = synth_jobs(3000, 1.0, seed=7, max_duration_s=5 * 86400.0, shape="lab").with_load(
        3.0, fleet.total_gpus
    )
    if overstated:
        estimate = jobs.duration_s * np.where(np.arange(len(jobs)) % 3 == 0, 2.0, 1.0)
        jobs = dataclasses.replace(jobs, extra={"estimate_s": [str(e) for e in estimate]})
    runs = []
    for threshold in (0, 10**9):
        monkeypatch.setattr(fifo, "WALK_BY_SIZE", threshold)
        runs.append(Engine(fleet, jobs, make_policy("fifo-backfill")).run())
    by_size, by_job = runs
    waits = by_job.start_s - jobs.submit_s
    assert np.mean(waits > 0) > 0.1  # (contended: hundreds of jobs wait)
    assert by_size.start_s.tolist() == by_job.start_s.tolist()
    assert by_size.hosts == by_job.hosts


@st.composite
def one_host_scenarios(draw):
    """Jobs of 1, 2 or 4 GPUs that fit on one host, with whole-second times: every time the
    simulators compute is then exact in binary, and ties are real ties."""
    fleet = draw(fleets())
    rows = []
    for _ in range(draw(st.integers(1, 20))):
        p = draw(st.integers(0, len(fleet.pools) - 1))
        host = int(fleet.host_gpus[fleet.pool_hosts[p]].min())
        rows.append(
            (
                float(draw(st.integers(0, 30))),
                draw(st.sampled_from([g for g in (1, 2, 4) if g <= host])),
                float(draw(st.integers(1, 20))),
                fleet.pools[p],
                draw(st.booleans()),
            )
        )
    return fleet, make_jobs(rows)


@settings(max_examples=200, deadline=None)
@given(
    one_host_scenarios(),
    st.sampled_from(["srtf", "las:order=fifo", "las:order=reference"]),
    st.sampled_from([(4.0,), (4.0, 20.0), (8.0, 64.0)]),
)
def test_preemptive_engine_matches_naive_reference(scenario, policy, thresholds):
    """srtf and LAS in both orders (no starvation promotion) against a simulator that
    recomputes every rank at every instant: first starts, ends and preemptions."""
    fleet, jobs = scenario
    name, _, order = policy.partition(":order=")
    spec = name
    if name == "las":
        spec = f"las:thresholds={','.join(str(t) for t in thresholds)}:knob=0:order={order}"
    fast = Engine(fleet, jobs, make_policy(spec)).run()
    start, end, preemptions = naive_preemptive(fleet, jobs, name, thresholds, order or "fifo")
    assert fast.start_s.tolist() == pytest.approx(start, abs=1e-6)
    assert fast.end_s.tolist() == pytest.approx(end, abs=1e-6)
    assert fast.preemptions.tolist() == preemptions


@settings(max_examples=150, deadline=None)
@given(scenarios(), st.sampled_from(sorted(POLICIES)), st.sampled_from([None, 0.0, 5.0]))
def test_invariants_hold_for_every_policy(scenario, policy, relax_after_s):
    from corral.state.placement import PlacementConfig

    fleet, jobs = scenario
    result = Engine(fleet, jobs, make_policy(policy), PlacementConfig(relax_after_s), record=True).run()
    used = np.zeros(fleet.hosts, dtype=int)
    holding: dict[int, tuple] = {}
    ran = [0.0] * len(jobs)
    since: dict[int, float] = {}
    ended = [0] * len(jobs)
    for now, what, job, placement in result.log:
        if what == "start":
            assert job not in holding and ended[job] == 0
            assert now >= jobs.submit_s[job]
            # A gang starts whole: exactly its GPUs, in its pool, on distinct hosts.
            assert sum(g for _, g in placement) == jobs.gpus[job]
            assert len({h for h, _ in placement}) == len(placement)
            assert all(fleet.pools[fleet.host_pool[h]] == jobs.queue[job] for h, _ in placement)
            for h, g in placement:
                used[h] += g
            # No GPU is ever given twice.
            assert (used <= fleet.host_gpus).all()
            holding[job] = placement
            since[job] = now
        else:
            for h, g in holding.pop(job):
                used[h] -= g
            ran[job] += now - since.pop(job)
            if what == "end":
                ended[job] += 1
            else:
                assert jobs.preemptible[job]
    # Every job ends exactly once, after running exactly its duration across preemptions.
    assert ended == [1] * len(jobs)
    assert np.allclose(ran, jobs.duration_s, atol=1e-6)
    assert np.allclose(result.end_s - result.start_s >= jobs.duration_s - 1e-6, True)
    assert (used == 0).all()
    assert result.preemptions.sum() == sum(1 for e in result.log if e[1] == "stop")


@settings(max_examples=40, deadline=None)
@given(scenarios(), st.sampled_from(sorted(POLICIES)))
def test_deterministic(scenario, policy):
    fleet, jobs = scenario
    a = Engine(fleet, jobs, make_policy(policy)).run()
    b = Engine(fleet, jobs, make_policy(policy)).run()
    assert a.start_s.tolist() == b.start_s.tolist() and a.end_s.tolist() == b.end_s.tolist()
    assert a.hosts == b.hosts


def test_non_preemptive_policies_never_preempt_and_jct_is_wait_plus_run():
    from corral.synth import synth_jobs
    from tests.conftest import flat_fleet

    jobs = synth_jobs(400, arrivals_per_hour=400, seed=3, max_gpus=16)
    fleet = flat_fleet(8, 8, hosts_per_rack=2)
    for policy in ("fifo", "fifo-backfill", "sjf"):
        r = Engine(fleet, jobs, make_policy(policy)).run()
        assert r.preemptions.sum() == 0
        assert np.allclose(r.end_s - r.start_s, jobs.duration_s)
        assert np.isfinite(r.end_s).all()


@settings(max_examples=150, deadline=None)
@given(scenarios(), st.sampled_from(["las", "las-reference", "srtf", "ftf"]))
def test_indexed_preemptive_pass_matches_naive_walk(scenario, policy):
    """LAS, SRTF and FTF jump to the next job of a size that could start; walking every waiting
    job instead must give the same schedule, preemptions included."""
    from corral.scheduling.ftf import FinishTimeFair
    from corral.scheduling.las import Las
    from corral.scheduling.preemptive import Srtf

    fleet, jobs = scenario

    def make():  # thresholds and leases short enough to act within these short workloads
        if policy == "las":
            return Las(thresholds_gpu_s=(20.0, 60.0), promote_knob=2.0)
        if policy == "las-reference":
            return Las((20.0, 60.0), 2.0, order="reference", starve_from="promotion")
        return FinishTimeFair(lease_s=5.0) if policy == "ftf" else Srtf()

    naive = make()
    naive.decide = naive_preemptive_decide.__get__(naive)
    fast = Engine(fleet, jobs, make()).run()
    slow = Engine(fleet, jobs, naive).run()
    assert fast.start_s.tolist() == slow.start_s.tolist()
    assert fast.end_s.tolist() == slow.end_s.tolist()
    assert fast.preemptions.tolist() == slow.preemptions.tolist()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 50), st.sampled_from([1, 2, 4, 8]), st.sampled_from([None, 1])), max_size=30
    ),
    st.one_of(st.none(), st.integers(-1, 51)),
    st.frozensets(st.tuples(st.sampled_from([1, 2, 4, 8]), st.sampled_from([None, 1]))),
)
def test_by_size_finds_the_first_allowed_entry_after(jobs, after, allowed):
    """Against a plain scan in order: the least entry after `after` whose size is allowed,
    however the groups were filled and emptied, and whether an entry removed had been
    sorted in or was still pending."""
    from types import SimpleNamespace

    from corral.scheduling.waiting import BySize

    view = SimpleNamespace(gpus=[g for _, g, _ in jobs], level=[lv for _, _, lv in jobs], revisions=lambda: 0)
    index = BySize(view)
    entries = {}
    for i, (key, gpus, level) in enumerate(jobs):
        entries[(key, i)] = (gpus, level)
        index.add((key, i))
        if i % 4 == 3:
            index.sort_in()  # (the rest stay pending)
    for entry in list(entries)[::3]:  # empty some groups, keep their insertion order
        entries.pop(entry)
        index.remove(entry)
    start = None if after is None else (after, len(jobs))
    expected = min(
        (e for e, size in entries.items() if size in allowed and (start is None or e > start)), default=None
    )
    assert index.first_after(start, lambda gpus, level: (gpus, level) in allowed) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 50), st.sampled_from([1, 2]), st.integers(1, 20)), max_size=30),
    st.integers(-1, 51),
    st.integers(0, 21),
    st.lists(st.tuples(st.integers(0, 29), st.integers(1, 20)), max_size=3),
)
def test_by_size_finds_the_entries_that_end_in_time(jobs, after, limit, revised):
    """Against a plain scan: a size's entries after `after` whose run is at most `limit`, in
    order, after some entries were removed and, as a live cluster's checkpoint reports do,
    some waiting jobs' runs were revised (the view's revisions move)."""
    from types import SimpleNamespace

    from corral.scheduling.waiting import BySize

    run = [r for _, _, r in jobs]
    count = [0]
    view = SimpleNamespace(
        gpus=[g for _, g, _ in jobs],
        level=[None] * len(jobs),
        run_s=lambda j: run[j],
        revisions=lambda: count[0],
    )
    index = BySize(view, runs=True)
    entries = {(key, i): gpus for i, (key, gpus, _) in enumerate(jobs)}
    for entry in entries:
        index.add(entry)
    index.sort_in()
    for entry in list(entries)[::4]:
        entries.pop(entry)
        index.remove(entry)
    for j, r in revised:
        if j < len(jobs):
            run[j] = r
            count[0] += 1
    index.sort_in()
    start = (after, len(jobs))
    for size in {(g, None) for g in entries.values()}:
        expected = sorted(e for e, g in entries.items() if g == size[0] and e > start and run[e[1]] <= limit)
        assert index.ending_by(size, lambda r: r <= limit, start) == expected
