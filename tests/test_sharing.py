"""Quotas, borrowing, reclaim, priorities, checkpoint-aware preemption and topology: worked
by hand, then as properties over random quota trees and workloads."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.errors import InputError
from corral.fleet import Fleet, Segment
from corral.quota import CohortSpec, QueueSpec, QuotaTree
from corral.scheduling.policy import Hold
from corral.scheduling.registry import make_policy
from corral.scheduling.sharing import Parts, Shared
from corral.sim.engine import Engine
from corral.sim.metrics import finish_time_fairness, summary
from corral.workload import JobTable


def jobs(rows: list[dict]) -> JobTable:
    """rows: dicts with submit_s, gpus, duration_s and optionally queue, priority,
    checkpoint_interval_s, restart_s, topology, preemptible."""
    n = len(rows)

    def col(name, default, dtype=None):
        return np.array([r.get(name, default) for r in rows], dtype=dtype)

    return JobTable(
        job_id=[f"j{i}" for i in range(n)],
        submit_s=col("submit_s", 0.0, float),
        gpus=col("gpus", 1, np.int64),
        duration_s=col("duration_s", 1.0, float),
        queue=[r.get("queue", "a") for r in rows],
        user=[""] * n,
        kind=["experiment"] * n,
        priority=col("priority", 0, np.int64),
        preemptible=col("preemptible", True, bool),
        checkpoint_interval_s=col("checkpoint_interval_s", 0.0, float),
        restart_s=col("restart_s", 0.0, float),
        topology=[r.get("topology", "") for r in rows],
    )


def fleet(hosts=1, gpus_per_host=8, hosts_per_rack=None, queues=(), cohorts=(), racks_per_pod=1000):
    segment = Segment("default", hosts, gpus_per_host, hosts_per_rack or hosts, racks_per_pod)
    return Fleet("test", [segment], "default", list(queues), list(cohorts))


TWO_TEAMS = dict(
    queues=[QueueSpec("a", 4, cohort="c"), QueueSpec("b", 4, cohort="c")], cohorts=[CohortSpec("c")]
)


def run(the_fleet, table, policy, explain=False):
    return Engine(the_fleet, table, make_policy(policy), record=True, explain=explain, sample_s=0).run()


# --- quota arithmetic -----------------------------------------------------------------


def test_flat_cohort_borrowing_limit_and_lending_limit():
    tree = QuotaTree([QueueSpec("a", 4, cohort="c"), QueueSpec("b", 4, cohort="c")], [CohortSpec("c")])
    assert tree.fits(0, 8) and not tree.fits(0, 9)  # a may borrow all of b's idle quota
    tree.add(1, 3)
    assert tree.fits(0, 5) and not tree.fits(0, 6)
    assert tree.blocked(0, 6).startswith("over quota: cohort c")
    limited = QuotaTree(
        [QueueSpec("a", 4, cohort="c", borrowing_limit_gpus=1), QueueSpec("b", 4, cohort="c")],
        [CohortSpec("c")],
    )
    assert limited.fits(0, 5) and not limited.fits(0, 6)
    assert "borrowing limit 1" in limited.blocked(0, 6)
    lending = QuotaTree(
        [QueueSpec("a", 4, cohort="c"), QueueSpec("b", 4, cohort="c", lending_limit_gpus=1)],
        [CohortSpec("c")],
    )
    assert lending.fits(0, 5) and not lending.fits(0, 6)  # b keeps 3 for itself
    assert lending.fits(1, 8)  # b itself may still borrow a's idle quota
    assert lending.ceiling(0) == 5 and lending.ceiling(1) == 8


def test_hierarchical_cohorts():
    # root: research cohort (a: 2, b: 2, lends at most 3 upward) and queue c: 4
    tree = QuotaTree(
        [
            QueueSpec("a", 2, cohort="research"),
            QueueSpec("b", 2, cohort="research"),
            QueueSpec("c", 4, cohort="root"),
        ],
        [CohortSpec("root"), CohortSpec("research", parent="root", lending_limit_gpus=3)],
    )
    assert tree.ceiling(0) == 8  # a may take b's 2 and, through the root, c's 4
    assert tree.ceiling(2) == 7  # c gets only 3 of research's 4
    tree.add(2, 4)
    assert tree.fits(0, 4) and not tree.fits(0, 5)  # with c busy, a has research's 4
    tree.add(2, -4)
    assert tree.demand == [0.0] * 5


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_headroom_is_the_largest_admission_that_fits(data):
    """QuotaTree.headroom answers fits() for every size at once, lending limits included."""
    draw = data.draw
    sub = CohortSpec(
        "s",
        parent="c",
        nominal_gpus=draw(st.integers(0, 3)),
        borrowing_limit_gpus=draw(st.sampled_from([None, 0, 3])),
    )
    queues = []
    for i in range(draw(st.integers(1, 4))):
        nominal = draw(st.integers(0, 8))
        queues.append(
            QueueSpec(
                f"q{i}",
                nominal,
                cohort=draw(st.sampled_from(["c", "s"])),
                borrowing_limit_gpus=draw(st.sampled_from([None, 0, 2, 5])),
                lending_limit_gpus=draw(st.sampled_from([None, min(nominal, 2)])),
            )
        )
    tree = QuotaTree([*queues, QueueSpec("solo", 5)], [CohortSpec("c"), sub])
    for q, gpus in draw(st.lists(st.tuples(st.integers(0, len(queues)), st.integers(1, 6)), max_size=8)):
        if tree.fits(q, gpus):
            tree.add(q, gpus)
    for q in range(len(queues) + 1):
        room = tree.headroom(q)
        assert [tree.fits(q, g) for g in range(1, 30)] == [g <= room + 1e-6 for g in range(1, 30)]


def test_queue_without_cohort_cannot_borrow_and_unlisted_queue_is_unlimited():
    tree, ids = QuotaTree.for_queues(["solo", "stranger"], {"solo": QueueSpec("solo", 4)}, [])
    assert not tree.fits(ids[0], 5)
    assert tree.fits(ids[1], 10**6)
    borrower_tree, ids = QuotaTree.for_queues(
        ["x"], {"a": QueueSpec("a", 4, cohort="c")}, [CohortSpec("c")], "c"
    )
    assert borrower_tree.ceiling(ids[0]) == 4  # x has no quota of its own but borrows a's


def test_bad_quota_trees_are_refused():
    with pytest.raises(InputError, match="unknown cohort"):
        QuotaTree([QueueSpec("a", 1, cohort="nope")], [])
    with pytest.raises(InputError, match="own ancestor"):
        QuotaTree([], [CohortSpec("x", parent="y"), CohortSpec("y", parent="x")])
    with pytest.raises(InputError, match="lending limit"):
        QuotaTree([QueueSpec("a", 1, lending_limit_gpus=2)], [])


# --- borrowing, reclaim and victims by hand ----------------------------------------------


def test_reclaim_preempts_the_borrower_and_charges_lost_work_and_restart():
    # b borrows a's half of the host; at t=10 a asks for its 4 GPUs back.
    table = jobs(
        [
            dict(submit_s=0, gpus=8, duration_s=100, queue="b", checkpoint_interval_s=4, restart_s=3),
            dict(submit_s=10, gpus=4, duration_s=10, queue="a"),
        ]
    )
    r = run(fleet(**TWO_TEAMS), table, "fair")
    assert r.start_s.tolist() == [0, 10]
    # b ran 10 s, its last checkpoint was at 8 s: it loses 2 s, restarts at 20, pays 3 s.
    assert r.lost_s.tolist() == [2.0, 0.0]
    assert r.restart_s.tolist() == [3.0, 0.0]  # every restart counts, whether or not a stop follows
    assert r.end_s.tolist() == [20 + 3 + 92, 20]
    assert r.preemptions.tolist() == [1, 0]
    stops = [e for e in r.log if e[1] == "stop"]
    assert stops == [(10.0, "stop", 0, (1, 2.0))]


def test_fair_share_is_decided_from_the_top_of_the_cohort_tree_down():
    """Kueue's fair sharing story 3 (KEP-1714): a 300-GPU cohort CS lends to cohorts C1 (1A,
    1B, 1C, 1C three times as important) and C2 (2A), all four with long backlogs. C1 and C2
    weigh the same, so each gets 150 GPUs; within C1, 30, 30 and 90. Compared queue by queue
    (flat) 2A would get only 60."""
    lab = fleet(
        75,
        4,
        queues=[
            QueueSpec("cs", 300, cohort="cs"),
            QueueSpec("1a", 0, cohort="c1"),
            QueueSpec("1b", 0, cohort="c1"),
            QueueSpec("1c", 0, weight=3, cohort="c1"),
            QueueSpec("2a", 0, cohort="c2"),
        ],
        cohorts=[
            CohortSpec("org"),
            CohortSpec("cs", parent="org"),
            CohortSpec("c1", parent="org"),
            CohortSpec("c2", parent="org"),
        ],
    )
    table = jobs(
        [dict(gpus=1, duration_s=100, queue=q) for q in ("1a", "1b", "1c", "2a") for _ in range(300)]
    )
    r = run(lab, table, "fair")
    held = {q: 0 for q in ("1a", "1b", "1c", "2a")}
    for job in np.flatnonzero(r.start_s == 0):
        held[table.queue[job]] += 1
    assert held == {"1a": 30, "1b": 30, "1c": 90, "2a": 150}


def test_quota_fifo_does_not_reclaim():
    table = jobs(
        [dict(gpus=8, duration_s=100, queue="b"), dict(submit_s=10, gpus=4, duration_s=10, queue="a")]
    )
    r = run(fleet(**TWO_TEAMS), table, "quota-fifo")
    assert r.start_s.tolist() == [0, 100]


def test_victim_is_the_job_losing_least_work():
    # b holds two 4-GPU jobs on a's quota... b's nominal is 4, so one of them borrows.
    table = jobs(
        [
            dict(submit_s=0, gpus=4, duration_s=1000, queue="b", checkpoint_interval_s=100),
            dict(submit_s=40, gpus=4, duration_s=1000, queue="b", checkpoint_interval_s=100),
            dict(submit_s=50, gpus=4, duration_s=10, queue="a"),
        ]
    )
    r = run(fleet(**TWO_TEAMS), table, "fair")
    # At t=50 job 0 would lose 50 s x 4 GPUs, job 1 only 10 s x 4: job 1 goes.
    assert r.preemptions.tolist() == [0, 1, 0]
    assert r.lost_s.tolist() == [0.0, 10.0, 0.0]
    assert r.start_s[2] == 50


def test_priority_preempts_lower_never_higher():
    table = jobs(
        [
            dict(submit_s=0, gpus=8, duration_s=100, priority=0),
            dict(submit_s=10, gpus=8, duration_s=10, priority=5),
            dict(submit_s=30, gpus=8, duration_s=10, priority=1),
            dict(submit_s=35, gpus=8, duration_s=10, priority=0),
        ]
    )
    r = run(fleet(), table, "priority")
    # Job 0 is preempted at 10 (by 5) and at 30 (by 1); job 3 (priority 0) cannot preempt
    # job 2 and queues behind job 0, which resumes with its work kept (free checkpoints).
    assert r.start_s.tolist() == [0, 10, 30, 120]
    assert r.end_s.tolist() == [120, 20, 40, 130]
    assert r.preemptions.tolist() == [2, 0, 0, 0]


def test_not_preemptible_jobs_are_never_victims():
    table = jobs([dict(gpus=8, duration_s=100, preemptible=False), dict(submit_s=10, gpus=8, priority=5)])
    r = run(fleet(), table, "priority")
    assert r.start_s.tolist() == [0, 100]


def test_gang_with_rack_topology_waits_for_a_whole_rack_and_fragmentation_is_measured():
    # 2 racks x 2 hosts x 4 GPUs. A (2 GPUs) lands on host 0; B (6, one rack) fills rack 0;
    # C (2) lands on host 2. When B ends, 12 GPUs are free but no rack is whole.
    table = jobs(
        [
            dict(submit_s=0, gpus=2, duration_s=1000),
            dict(submit_s=0, gpus=6, duration_s=1, topology="rack"),
            dict(submit_s=0, gpus=2, duration_s=2000),
            dict(submit_s=2, gpus=8, duration_s=10, topology="rack"),
        ]
    )
    r = run(fleet(hosts=4, gpus_per_host=4, hosts_per_rack=2), table, "fifo")
    assert r.hosts[:3] == ["0", "1;0", "2"]
    assert r.start_s[3] == 1000  # waits until rack 0 is whole again
    series = r.series[(r.series[:, 0] >= 2) & (r.series[:, 0] < 1000)]
    assert series.shape[0] > 0 and (series[:, 4] == 12).all()  # 12 free GPUs, all fragmented
    assert summary(r)["fragmented_gpus"] > 0


def test_backfill_lets_short_jobs_pass_but_never_delays_the_reserved_gang():
    table = jobs(
        [
            dict(submit_s=0, gpus=8, duration_s=100),  # holds host 0
            dict(submit_s=1, gpus=16, duration_s=10),  # needs both hosts: reserved at t=100
            dict(submit_s=2, gpus=8, duration_s=50),  # ends by 100: backfills
            dict(submit_s=3, gpus=8, duration_s=500),  # would delay the gang: waits
        ]
    )
    r = run(fleet(hosts=2), table, "fair")
    assert r.start_s.tolist() == [0, 100, 2, 110]


# 4 hosts of 4 GPUs (2 racks of 2). Four 3-GPU jobs leave 1 GPU free on every host, ending
# at 100, 200, 300 and 400 (hosts 0-3 with `ends`); at t=1 a gang of 8 GPUs (two whole
# hosts) arrives, then a 1-GPU job lasting 1000 s every 10 s.
STREAM = [dict(submit_s=2 + 10 * k, gpus=1, duration_s=1000) for k in range(200)]


@pytest.mark.parametrize("policy", ["fifo-backfill", "fair", "priority"])
@pytest.mark.parametrize(
    ("topology", "ends", "gang_start", "later_start", "later_hosts"),
    [
        # two whole hosts anywhere: hosts 0 and 1 at t=200, so the stream goes to hosts 2
        # and 3 (best fit would put the first on host 0), then waits for the gang to end
        ("", (100, 200, 300, 400), 200, 250, ["0", "0"]),
        # one whole rack: rack 0 at t=300; host 2 frees at 200 and takes the stream at once
        ("rack", (100, 300, 200, 400), 300, 200, ["2", "2"]),
    ],
)
def test_backfill_reserves_where_a_gang_can_be_placed_not_just_gpus(
    policy, topology, ends, gang_start, later_start, later_hosts
):
    rows = [dict(submit_s=0, gpus=3, duration_s=d) for d in ends]
    rows += [dict(submit_s=1, gpus=8, duration_s=50, topology=topology), *STREAM]
    r = run(fleet(hosts=4, gpus_per_host=4, hosts_per_rack=2), jobs(rows), policy)
    # Counting GPUs alone, the reservation let the stream take the hosts the gang needed,
    # one GPU at a time, and the gang waited until t=20,300 (20,400 for the rack).
    assert r.start_s[4] == gang_start and r.hosts[4] == "0;1"
    assert r.start_s[5:7].tolist() == [2, 12] and r.hosts[5:7] == ["2", "3"]
    assert r.start_s[7] == later_start and r.hosts[7:9] == later_hosts


# 40 GPUs. Cohort c lends a's 8 and d's 24 GPUs of quota; b owns none. Cohort e, apart,
# lets x (16) borrow y's 24.
RESERVED_QUOTA = dict(
    hosts=5,
    queues=[
        QueueSpec("a", 8, cohort="c"),
        QueueSpec("b", 0, cohort="c"),
        QueueSpec("d", 24, cohort="c"),
        QueueSpec("x", 16, cohort="e"),
        QueueSpec("y", 24, cohort="e"),
    ],
    cohorts=[CohortSpec("c"), CohortSpec("e")],
)


def test_the_reserved_job_keeps_its_quota_from_borrowers():
    table = jobs(
        [
            dict(submit_s=0, gpus=16, duration_s=100, queue="x"),
            dict(submit_s=1, gpus=32, duration_s=10, queue="a"),  # admitted, 24 free: reserved at 100
            dict(submit_s=2, gpus=8, duration_s=50, queue="b"),  # ends by 100, but borrows its quota
            dict(submit_s=3, gpus=16, duration_s=1000, queue="x"),  # borrows, would delay it: waits
        ]
    )
    r = run(fleet(**RESERVED_QUOTA), table, "fair", explain=True)
    # Had job 2 borrowed at t=2, job 1 would be over quota at t=3, lose its reservation and
    # wait for job 3 until t=1003.
    assert r.start_s.tolist() == [0, 100, 110, 110]
    reason = r.reasons[2][0][1]
    assert (reason.kind, reason.jobs) == ("holding", (1,))
    # people read the job's id, never its row number
    assert "would take the quota reserved for job j1" in r.reason_text(reason)


def test_a_reservation_lapses_in_the_pass_where_an_owner_takes_its_quota_back():
    table = jobs(
        [
            dict(submit_s=0, gpus=16, duration_s=100, queue="x"),
            dict(submit_s=1, gpus=32, duration_s=10, queue="a"),  # reserved at 100
            dict(submit_s=2, gpus=8, duration_s=500, queue="d"),  # within d's quota: not held
            dict(submit_s=2, gpus=16, duration_s=1000, queue="x"),  # held for job 1, then not
        ]
    )
    r = run(fleet(**RESERVED_QUOTA), table, "fair")
    # Job 2 leaves job 1 over quota until t=502, so its reservation lapses at once and job 3
    # starts in the same instant, not at the next event (t=100).
    assert r.start_s.tolist() == [0, 1002, 2, 2]


def test_reasons_explain_a_pending_job():
    table = jobs(
        [dict(gpus=8, duration_s=100, queue="b"), dict(submit_s=10, gpus=8, duration_s=10, queue="a")]
    )
    r = run(fleet(**TWO_TEAMS), table, "quota-fifo", explain=True)
    history = [r.reason_text(reason) for _, reason in r.reasons[1]]
    assert history[0].startswith("over quota: cohort c")
    assert r.reasons[1][0][1].kind == "over_quota"
    assert history[-2:] == ["running", "finished"]


def test_jobs_larger_than_their_quota_ceiling_are_refused():
    table = jobs([dict(gpus=8, queue="solo")])
    solo = fleet(queues=[QueueSpec("solo", 4)])
    with pytest.raises(InputError, match="can never hold more than 4"):
        run(solo, table, "fair")
    with pytest.raises(InputError, match="in one rack"):
        run(fleet(hosts=4, hosts_per_rack=2), jobs([dict(gpus=24, topology="rack")]), "fifo")


def test_finish_time_fairness_by_hand():
    # Two queues share 8 GPUs: each job's fair share is 4; job 0 (8 GPUs) would run at half
    # speed alone on its share, so its rho is JCT / (2 x duration).
    table = jobs([dict(gpus=8, duration_s=10, queue="a"), dict(gpus=4, duration_s=10, queue="b")])
    r = run(fleet(), table, "fifo")
    assert r.contenders.tolist() == [1, 2]
    rho = finish_time_fairness(r)
    assert rho[0] == pytest.approx(10 / 10)  # alone in the pool when it arrived
    assert rho[1] == pytest.approx(20 / 10)  # waited 10 s behind job 0


# --- properties --------------------------------------------------------------------------


@st.composite
def shared_cases(draw):
    hosts = draw(st.integers(1, 4))
    per_host = draw(st.sampled_from([2, 4, 8]))
    total = hosts * per_host
    nq = draw(st.integers(2, 4))
    # queues sit in the root cohort c or in one of two weighted sub-cohorts
    cohorts = [CohortSpec("c")]
    cohorts += [CohortSpec(f"s{i}", parent="c", weight=draw(st.sampled_from([1, 3]))) for i in range(2)]
    queues = []
    for i in range(nq):
        limit = draw(st.one_of(st.none(), st.integers(0, total)))
        cohort = draw(st.sampled_from(["c", "s0", "s1"]))
        weight = draw(st.sampled_from([1, 2]))
        nominal = draw(st.integers(0, total))
        queues.append(QueueSpec(f"q{i}", nominal, weight, cohort=cohort, borrowing_limit_gpus=limit))
    the_fleet = fleet(hosts, per_host, draw(st.integers(1, hosts)), queues, cohorts)
    tree, _ = QuotaTree.for_queues([], the_fleet.queues, the_fleet.cohorts)
    rows = []
    for _ in range(draw(st.integers(1, 20))):
        q = draw(st.integers(0, nq - 1))
        ceiling = int(min(tree.ceiling(q), total))
        if ceiling < 1:
            continue
        rows.append(
            dict(
                submit_s=draw(st.integers(0, 50)),
                gpus=draw(st.integers(1, ceiling)),
                duration_s=draw(st.integers(1, 40)),
                queue=f"q{q}",
                priority=draw(st.integers(0, 2)),
                checkpoint_interval_s=draw(st.sampled_from([0, 3, 7, 1e9])),
                restart_s=draw(st.sampled_from([0, 2])),
                preemptible=draw(st.booleans()) or True,
            )
        )
    if not rows:
        rows = [dict(gpus=1, queue="q0")]
        the_fleet = fleet(hosts, per_host, None, [QueueSpec("q0", total, cohort="c")], [CohortSpec("c")])
    return the_fleet, jobs(rows)


def test_a_backfill_candidate_preempts_nobody_when_the_reservation_would_hold_it_anyway():
    """Found by the invariant test below. q0 (nominal 18) and q1 (16) share a 24-GPU cohort;
    q1's j1 (17 GPUs, priority 1) runs. At 1, q0's head j0 (17, priority 0: it may not
    preempt j1) is reserved; behind it j2 (18, priority 1) could reclaim q0's quota from j1,
    but would still be held by the quota reserved for j0. Preempting j1 for it only let j1
    start again, pass after pass, for ever. Now nobody is preempted: j1 ends at 2, j0 runs
    2-3, then j2 3-4."""
    queues = [QueueSpec("q0", 18, cohort="c"), QueueSpec("q1", 16, cohort="c")]
    rows = [
        dict(submit_s=1, gpus=17, duration_s=1, queue="q0", priority=0),
        dict(submit_s=0, gpus=17, duration_s=2, queue="q1", priority=1),
        dict(submit_s=1, gpus=18, duration_s=1, queue="q0", priority=1),
        dict(submit_s=0, gpus=1, duration_s=1, queue="q0"),
        dict(submit_s=0, gpus=1, duration_s=1, queue="q0"),
    ]
    r = run(fleet(3, 8, 1, queues, [CohortSpec("c")]), jobs(rows), "fair")
    assert r.end_s.tolist() == [3.0, 2.0, 4.0, 1.0, 1.0]
    assert not any(kind == "stop" for _, kind, _, _ in r.log)


@settings(max_examples=60, deadline=None)
@given(shared_cases(), st.sampled_from(["quota-fifo", "fair", "fair-decay", "priority"]))
def test_quota_priority_and_checkpoint_invariants(case, policy):
    the_fleet, table = case
    r = run(the_fleet, table, policy)
    n = len(table)
    assert not np.isnan(r.end_s).any()
    specs = the_fleet.queues
    usage = {q: 0 for q in specs}
    held: dict[int, tuple] = {}
    started_at: dict[int, float] = {}
    stops = [0] * n
    useful_done = [0.0] * n
    for t, kind, job, extra in r.log:
        q = table.queue[job]
        g = int(table.gpus[job])
        if kind == "start":
            assert sum(k for _, k in extra) == g  # whole gang or nothing
            usage[q] += g
            spec = specs[q]
            limit = math.inf if spec.borrowing_limit_gpus is None else spec.borrowing_limit_gpus
            assert usage[q] <= spec.nominal_gpus + limit  # quota + allowed borrowing
            assert sum(usage.values()) <= sum(s.nominal_gpus for s in specs.values())  # cohort
            held[job] = extra
            started_at[job] = t
        else:
            usage[q] -= g
            overhead = float(table.restart_s[job]) if stops[job] else 0.0
            useful = max(0.0, t - started_at[job] - overhead)
            if kind == "stop":
                by, lost = extra
                assert table.preemptible[job]
                assert table.priority[by] >= table.priority[job]  # never for a lower priority
                if table.queue[by] == q or policy == "quota-fifo":
                    assert table.priority[by] > table.priority[job]
                interval = float(table.checkpoint_interval_s[job])
                expected = 0.0 if interval == 0 else useful - math.floor(useful / interval + 1e-9) * interval
                assert lost == pytest.approx(expected)  # work since the last checkpoint
                useful_done[job] += useful - lost
                stops[job] += 1
            else:
                useful_done[job] += useful
            del held[job]
    assert useful_done == pytest.approx(table.duration_s.tolist())  # each job did its work once
    assert not held
    assert r.lost_s.sum() == pytest.approx(sum(e[3][1] for e in r.log if e[1] == "stop"))


@st.composite
def single_gpu_cases(draw):
    """One-GPU jobs, so a reclaimed GPU always places the job that reclaimed it."""
    hosts, per_host = draw(st.integers(1, 3)), draw(st.sampled_from([2, 4]))
    nq = draw(st.integers(2, 4))
    queues = [QueueSpec(f"q{i}", draw(st.integers(1, hosts * per_host)), cohort="c") for i in range(nq)]
    rows = [
        dict(
            submit_s=draw(st.integers(0, 30)),
            duration_s=draw(st.integers(1, 40)),
            queue=f"q{draw(st.integers(0, nq - 1))}",
            priority=draw(st.integers(0, 1)),
            checkpoint_interval_s=draw(st.sampled_from([0, 5])),
        )
        for _ in range(draw(st.integers(1, 25)))
    ]
    return fleet(hosts, per_host, None, queues, [CohortSpec("c")]), jobs(rows)


@settings(max_examples=60, deadline=None)
@given(single_gpu_cases(), st.sampled_from(["fair", "priority"]))
def test_borrowed_gpus_are_reclaimed_in_the_pass_the_owner_needs_them(case, policy):
    """Kueue's reclaim rule: once a pass is over, no queue within its nominal quota has a
    head job waiting while a queue of its cohort borrows with a job it could reclaim (one
    of no higher priority)."""
    the_fleet, table = case
    r = run(the_fleet, table, policy)
    nominal = {q: s.nominal_gpus for q, s in the_fleet.queues.items()}
    running: set[int] = set()
    done: set[int] = set()
    log = sorted(r.log, key=lambda e: e[0])
    instants = sorted(set(table.submit_s.tolist()) | {e[0] for e in log})
    i = 0
    for t in instants:
        while i < len(log) and log[i][0] <= t:
            _, kind, job, _ = log[i]
            if kind == "start":
                running.add(job)
            else:
                running.discard(job)
                if kind == "end":
                    done.add(job)
            i += 1
        usage = {q: 0 for q in nominal}
        for j in running:
            usage[table.queue[j]] += 1
        waiting = [
            j for j in range(len(table)) if table.submit_s[j] <= t and j not in running and j not in done
        ]
        for q in nominal:
            mine = sorted((table.submit_s[j], j) for j in waiting if table.queue[j] == q)
            if policy == "priority":
                mine = sorted((-table.priority[j], s, j) for s, j in mine)
            if not mine or usage[q] + 1 > nominal[q]:
                continue
            head = mine[0][-1]
            reclaimable = [
                j
                for j in running
                if table.queue[j] != q
                and usage[table.queue[j]] > nominal[table.queue[j]]
                and table.priority[j] <= table.priority[head]
            ]
            assert not reclaimable, (t, q, head, reclaimable, nominal, the_fleet.total_gpus)


@settings(max_examples=60, deadline=None)
@given(
    shared_cases(),
    st.sampled_from(["fifo", "fair", "priority"]),
    st.booleans(),
    st.booleans(),
)
def test_settled_pools_are_skipped_only_where_a_pass_would_decide_nothing(case, order, reclaim, by_priority):
    """Without backfill a pool whose last pass settled is not passed again until a queue
    head, the quota or the free GPUs change: the schedule is the one of passing every pool
    at every event, with reasons recorded or not."""
    the_fleet, table = case
    parts = Parts(order, reclaim=reclaim, priority_preemption=by_priority)
    logs = [
        Engine(the_fleet, table, policy, record=True, explain=explain, sample_s=0).run().log
        for policy, explain in (
            (Shared("x", parts), False),
            (_NeverSettles("x", parts), False),
            (Shared("x", parts), True),
        )
    ]
    assert logs[0] == logs[2]
    assert logs[0] == logs[1]


def test_a_pass_that_starts_a_job_does_not_settle_the_pool_it_changed():
    """Found by the test above. One 4-GPU host; q2 (nominal 4) waits with a 4-GPU job (j0)
    while q3 (nominal 1) runs one GPU. At 10 a pass finds nobody to reclaim from for j0 (q3
    is within its quota), then starts a 2-GPU q3 job, which makes q3 a borrower. That pass
    must not mark the pool settled in the state after its start: at 12 (an arrival behind
    other waiting jobs) j0 reclaims from q3, as passing at every event does."""
    queues = [QueueSpec(q, n, cohort="c") for q, n in (("q0", 0), ("q1", 0), ("q2", 4), ("q3", 1))]
    # (submit, GPUs, duration, queue, checkpoint interval, restart)
    spec = [(1, 4, 1, "q2", 0, 0), (0, 1, 1, "q0", 0, 0), (0, 1, 1, "q0", 0, 0), (0, 4, 1, "q0", 0, 0)]
    spec += [(10, 2, 3, "q3", 3, 0), (0, 2, 1, "q0", 0, 0), (0, 2, 1, "q0", 0, 2), (0, 1, 1, "q0", 7, 2)]
    spec += [(12, 3, 1, "q0", 3, 2), (2, 2, 1, "q0", 1e9, 0), (6, 2, 1, "q0", 1e9, 2), (6, 1, 1, "q3", 0, 0)]
    spec += [(0, 1, 1, "q0", 0, 0), (0, 1, 31, "q3", 0, 0)] + [(0, 1, 1, "q0", 0, 0)] * 6
    rows = [
        dict(submit_s=t, gpus=g, duration_s=d, queue=q, checkpoint_interval_s=c, restart_s=r)
        for t, g, d, q, c, r in spec
    ]
    parts = Parts("fair", reclaim=True, priority_preemption=False)
    the_fleet, table = fleet(1, 4, 1, queues, [CohortSpec("c")]), jobs(rows)
    settled = Engine(the_fleet, table, Shared("x", parts), record=True, sample_s=0).run().log
    every = Engine(the_fleet, table, _NeverSettles("x", parts), record=True, sample_s=0).run().log
    assert settled == every
    assert (12.0, "start", 0, ((0, 4),)) in settled


class _NeverSettles(Shared):
    """Passes every pool at every event."""

    def bind(self, view, pools):
        super().bind(view, pools)
        self.settles_at_all = False


class _PassedTwice(Shared):
    """Runs one more pass after each decision and records whether it decided anything."""

    def decide(self, pool):
        yield from super().decide(pool)
        preempted: list[int] = []
        again = [d for d in self._pass(pool, preempted, set()) if not isinstance(d, Hold)]
        self.unsettled.append(again)
        yield from again
        for v in preempted:
            self._enqueue(v)


@settings(max_examples=300, deadline=None)
@given(shared_cases(), st.sampled_from(["fifo", "priority"]))
def test_a_backfill_pass_is_a_fixed_point(case, order):
    """Backfill decides a pool once per instant: a second pass at the same instant starts
    nothing. Left out: fair order (starts change the shares it orders by) and preemption
    (a job backfilled in a pass may become a victim in the next)."""
    the_fleet, table = case
    policy = _PassedTwice("x", Parts(order, backfill=True))
    policy.unsettled = []
    Engine(the_fleet, table, policy, sample_s=0).run()
    assert not any(policy.unsettled)


# --- files and the command line ------------------------------------------------------------


def test_queues_and_cohorts_from_toml_and_their_errors(tmp_path):
    from corral.fleet import load_fleet

    good = tmp_path / "lab.toml"
    good.write_text(
        'hosts = 4\ndefault_cohort = "c"\n[[cohorts]]\nname = "c"\nweight = 2\n'
        '[[queues]]\nname = "a"\nnominal_gpus = 16\ncohort = "c"\nborrowing_limit_gpus = 8\n'
    )
    lab = load_fleet(str(good))
    assert lab.queues["a"].borrowing_limit_gpus == 8 and lab.default_cohort == "c"
    assert lab.cohorts[0].weight == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('hosts = 4\n[[queues]]\nname = "a"\nnominal_gpus = -1\n')
    with pytest.raises(InputError, match="queues\\[0\\].nominal_gpus"):
        load_fleet(str(bad))
    bad.write_text('hosts = 4\n[[queues]]\nname = "a"\nnominal_gpus = 1\ncohort = "nope"\n')
    with pytest.raises(InputError, match="unknown cohort"):
        load_fleet(str(bad))


def test_cli_reasons_explain_and_bad_scenario(tmp_path):
    import csv

    from typer.testing import CliRunner

    from corral.cli import app

    runner = CliRunner()
    trace = tmp_path / "jobs.csv"
    trace.write_text("job_id,submit_s,gpus,duration_s,queue\nx,0,8,100,b\ny,10,8,10,a\n")
    toml = tmp_path / "f.toml"
    toml.write_text(
        'hosts = 1\n[[cohorts]]\nname = "c"\n'
        '[[queues]]\nname = "a"\nnominal_gpus = 4\ncohort = "c"\n'
        '[[queues]]\nname = "b"\nnominal_gpus = 4\ncohort = "c"\n'
    )
    reasons = tmp_path / "reasons.csv"
    args = ["simulate", "--workload", str(trace), "--fleet", str(toml), "--policy", "quota-fifo"]
    result = runner.invoke(app, [*args, "--reasons", str(reasons)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(reasons.open()))
    assert [r["reason"] for r in rows if r["job_id"] == "y"][0].startswith("over quota")
    result = runner.invoke(
        app, ["explain", "y", "--workload", str(trace), "--fleet", str(toml), "--policy", "fair"]
    )
    assert result.exit_code == 0 and "over quota" in result.output and "preempted 0 times" in result.output
    result = runner.invoke(
        app, ["explain", "zz", "--workload", str(trace), "--fleet", str(toml), "--policy", "fair"]
    )
    assert result.exit_code == 2 and "no job 'zz'" in result.output
    result = runner.invoke(app, ["simulate", "--scenario", "nope"])
    assert result.exit_code == 2 and "unknown scenario" in result.output
