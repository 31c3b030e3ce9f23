"""Placement against the brute-force reference, and the test that lets a reservation keep
its placement when GPUs are taken from hosts it could not use."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.fleet import Fleet, Segment
from corral.state.allocation import FleetState
from corral.state.placement import Placer
from tests.support.reference import naive_place


@st.composite
def fleets_and_free(draw):
    """A fleet of one or two pools in several racks, pods and clusters (optionally with pods
    that cut across racks, so counts cannot be added up rack by rack), and a free vector."""
    segments = [
        Segment(
            pool=draw(st.sampled_from(["a", "b"])),
            hosts=draw(st.integers(1, 8)),
            gpus_per_host=gpus,
            hosts_per_rack=draw(st.integers(1, 3)),
            racks_per_pod=draw(st.integers(1, 3)),
            cluster=draw(st.sampled_from(["c0", "c1"])),
        )
        for gpus in [draw(st.sampled_from([2, 4, 8]))] * draw(st.integers(1, 3))
    ]
    fleet = Fleet("random", segments)
    if draw(st.booleans()):  # pods that do not hold whole racks
        fleet.host_pod = np.asarray(
            draw(st.lists(st.integers(0, 3), min_size=fleet.hosts, max_size=fleet.hosts)), dtype=np.int64
        )
    free = [draw(st.integers(0, int(cap))) for cap in fleet.host_gpus]
    return fleet, free


@st.composite
def asks(draw):
    """A fleet, a free vector, a pool and a job size in it."""
    fleet, free = draw(fleets_and_free())
    pool = draw(st.integers(0, len(fleet.pools) - 1))
    return fleet, free, pool, draw(st.integers(1, fleet.pool_gpus[pool]))


@settings(max_examples=300, deadline=None)
@given(asks())
def test_find_matches_brute_force(case):
    fleet, free, pool, gpus = case
    vector = np.asarray(free, dtype=np.int64)
    assert Placer(FleetState(fleet)).find(pool, gpus, free=vector) == naive_place(fleet, free, pool, gpus)


@settings(max_examples=300, deadline=None)
@given(asks(), st.data())
def test_taking_from_hosts_a_job_cannot_use_leaves_its_placement(case, data):
    fleet, free, pool, gpus = case
    placer = Placer(FleetState(fleet))
    hosts = fleet.pool_hosts[pool].tolist()
    taken = data.draw(st.lists(st.sampled_from(hosts), min_size=1, max_size=3, unique=True))
    before = np.asarray(free, dtype=np.int64)
    after = before.copy()
    for h in taken:
        after[h] -= data.draw(st.integers(0, int(before[h])))
    if placer.unmoved_by(pool, gpus, before, taken):
        assert placer.find(pool, gpus, free=after) == placer.find(pool, gpus, free=before)


def test_hosts_a_job_could_use():
    # 4 hosts of 4 GPUs, free 4, 1, 4, 3. A 6-GPU gang takes a whole host and a remainder of
    # 2: hosts 0 and 2 (whole) and 3 (room for 2) could take part of it, host 1 could not.
    # A 2-GPU job could go on any host but 1.
    fleet = Fleet("flat", [Segment(pool="a", hosts=4, gpus_per_host=4)])
    placer = Placer(FleetState(fleet))
    free = np.asarray([4, 1, 4, 3], dtype=np.int64)
    assert placer.unmoved_by(0, 6, free, [1])
    assert not placer.unmoved_by(0, 6, free, [3])
    assert not placer.unmoved_by(0, 6, free, [1, 2])
    assert placer.unmoved_by(0, 2, free, [1])
    assert not placer.unmoved_by(0, 2, free, [0])
    assert placer.unmoved_by(0, 8, free, [1, 3])  # (8: two whole hosts, no remainder)


@settings(max_examples=300, deadline=None)
@given(fleets_and_free(), st.data())
def test_find_with_capped_hosts_matches_the_capped_vector(case, data):
    """The live state (built by taking GPUs host by host, then giving some back, so its
    best-fit index holds stale entries) with some hosts capped: the same placement as on the
    capped copy of its free vector."""
    fleet, free = case
    state = FleetState(fleet)
    for host, want in enumerate(free):
        taken = int(fleet.host_gpus[host]) - want
        if taken:
            pool = int(fleet.host_pool[host])
            state.allocate(pool, ((host, taken),))
            back = data.draw(st.integers(0, taken))
            if back:
                state.release(pool, ((host, back),), ((host, tuple(range(back))),))
                state.allocate(pool, ((host, back),))
    placer = Placer(state)
    pool = data.draw(st.integers(0, len(fleet.pools) - 1))
    gpus = data.draw(st.integers(1, fleet.pool_gpus[pool]))
    hosts = np.asarray(
        data.draw(st.lists(st.sampled_from(fleet.pool_hosts[pool].tolist()), max_size=4, unique=True)),
        dtype=np.int64,
    )
    most = np.asarray([data.draw(st.integers(0, int(fleet.host_gpus[h]))) for h in hosts], dtype=np.int64)
    capped = state.free.copy()
    capped[hosts] = np.minimum(capped[hosts], most)
    assert state.free.tolist() == free
    assert placer.find_capped(pool, gpus, None, hosts, most) == placer.find(pool, gpus, free=capped)
