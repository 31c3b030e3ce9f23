"""Resizable jobs: the job-table columns, the state's resize transition and its ledger, the
`+elastic` policy part, worked by hand, and invariants over random workloads."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.errors import InputError
from corral.job_columns import read_canonical
from corral.scheduling.registry import make_policy
from corral.sim.engine import Engine
from corral.state.allocation import AllocationError
from corral.state.cluster import ClusterState
from corral.state.runs import RESIZED
from tests.conftest import flat_fleet, make_jobs


def elastic_jobs(rows, elastic):
    """rows as make_jobs; elastic: {job: (min, max, step[, scaling])} as the table's text."""
    jobs = make_jobs(rows)
    n = len(rows)
    cols = {c: [""] * n for c in ("min_gpus", "max_gpus", "step_gpus", "scaling")}
    for j, spec in elastic.items():
        for c, v in zip(cols, spec, strict=False):
            cols[c][j] = str(v)
    jobs.extra.update(cols)
    jobs.restart_s = np.array([r[5] if len(r) > 5 else 0.0 for r in rows])
    return jobs


def run(policy, fleet, jobs):
    return Engine(fleet, jobs, make_policy(policy), record=True).run()


def test_grows_into_idle_gpus_and_gives_them_back_to_waiting_work():
    # Two hosts of 8. A asks 4 (1,000 s of work at 4 GPUs), elastic 4-16 in steps of 4,
    # linear: nothing waits, so it grows to 16 at once. B (8 GPUs, 100 s) arrives at 100:
    # A gives back 8 (left: 1,000 - 100 x 4 = 600 s at 4 GPUs, 300 s at 8); B runs 100-200;
    # then A grows back to 16: 600 - 100 x 2 = 400 s at 4, 100 s at 16: it ends at 300.
    jobs = elastic_jobs([(0, 4, 1000), (100, 8, 100)], {0: (4, 16, 4)})
    r = run("fifo+elastic:hold=0", flat_fleet(2, 8), jobs)
    assert r.start_s.tolist() == [0, 100]
    assert r.end_s.tolist() == [pytest.approx(300), 200]
    runs = [
        (r.runs.start_s[i], r.runs.end_s[i], sum(g for _, g in r.runs.placement[i]), r.runs.ended[i])
        for i in range(len(r.runs))
        if r.runs.job[i] == 0
    ]
    assert runs == [
        (0, 0, 4, RESIZED),
        (0, 100, 16, RESIZED),
        (100, 200, 8, RESIZED),
        (200, pytest.approx(300), 16, "completed"),
    ]
    assert r.preemptions.tolist() == [0, 0]


def test_without_the_elastic_part_an_elastic_job_runs_at_its_ask():
    jobs = elastic_jobs([(0, 4, 1000), (100, 8, 100)], {0: (4, 16, 4)})
    r = run("fifo", flat_fleet(2, 8), jobs)
    assert r.end_s.tolist() == [1000, 200]


def test_a_resize_pays_the_restart_and_holds_its_size():
    # Restart 50 s. A grows at 0, the instant it starts: it has not begun, so that costs no
    # restart; it works 100 s at 16 (400 s of its work) before B arrives at 100. It shrinks
    # to 8 for B and, held for an hour from that resize, stays there after B ends: 50 s of
    # restart, then 600 s of work at 2x: it ends at 450.
    jobs = elastic_jobs([(0, 4, 1000, "default", True, 50.0), (100, 8, 100)], {0: (4, 16, 4)})
    r = run("fifo+elastic:hold=3600", flat_fleet(2, 8), jobs)
    assert r.end_s.tolist() == [pytest.approx(450), 200]
    assert r.restart_s.tolist() == [50, 0]


def test_growth_that_does_not_pay_for_its_restart_is_not_made():
    # 100 s of work left at 4 GPUs; at 16 it would take 25 s + 200 s of restart: stays.
    jobs = elastic_jobs([(0, 4, 100, "default", True, 200.0)], {0: (4, 16, 4)})
    r = run("fifo+elastic:hold=0", flat_fleet(2, 8), jobs)
    assert r.end_s.tolist() == [100]
    assert len(r.runs) == 1


def test_sublinear_scaling_slows_each_added_gpu():
    # scaling 0.5: at 16 GPUs A works (16/4) ** 0.5 = 2x as fast as at 4: 1,000 s -> 500 s.
    jobs = elastic_jobs([(0, 4, 1000)], {0: (4, 16, 4, 0.5)})
    r = run("fifo+elastic:hold=0", flat_fleet(2, 8), jobs)
    assert r.end_s.tolist() == [pytest.approx(500)]


def test_a_preempted_elastic_job_waits_for_its_ask_again():
    fleet = flat_fleet(2, 8)
    state = ClusterState(fleet)
    jobs = elastic_jobs([(0, 4, 1000)], {0: (4, 16, 4)})
    state.add_jobs(jobs)
    state.submit(0)
    state.start(0, ((0, 4),), 0.0)
    state.resize(0, ((0, 8), (1, 8)), 10.0)
    assert state.gpus[0] == 16 and state.rate[0] == 4.0
    state.preempt(0, 20.0)  # 10 s at 4 GPUs and 10 s at 16: 50 s of work done
    assert state.gpus[0] == 4 and state.remaining[0] == pytest.approx(950)
    assert state.waiting_sizes[0] == {(4, None): 1}


def test_resize_refuses_a_size_off_its_steps_or_bounds():
    state = ClusterState(flat_fleet(2, 8))
    state.add_jobs(elastic_jobs([(0, 4, 1000), (0, 4, 10)], {0: (4, 12, 4)}))
    for j in (0, 1):
        state.submit(j)
        state.start(j, ((j, 4),), 0.0)
    for bad in (((0, 6),), ((0, 8), (1, 8))):
        with pytest.raises(AllocationError):
            state.resize(0, bad, 1.0)
    with pytest.raises(AllocationError, match="not elastic"):
        state.resize(1, ((1, 8),), 1.0)


def test_an_ungraceful_shrink_keeps_only_the_last_checkpoint():
    state = ClusterState(flat_fleet(2, 8))
    jobs = elastic_jobs([(0, 8, 1000)], {0: (4, 16, 4)})
    jobs.checkpoint_interval_s = np.array([100.0])
    state.add_jobs(jobs)
    state.submit(0)
    state.start(0, ((0, 8),), 0.0)
    state.resize(0, ((0, 4),), 250.0, graceful=False)  # saved at 200: 50 s lost
    assert state.lost[0] == pytest.approx(50) and state.remaining[0] == pytest.approx(800)
    state.resize(0, ((0, 8),), 350.0)  # 100 s at 4 GPUs = 50 s of work at the asked 8
    assert state.remaining[0] == pytest.approx(750) and state.lost[0] == pytest.approx(50)


@pytest.mark.parametrize(
    ("columns", "field"),
    [
        ({"min_gpus": "8"}, "min_gpus"),  # above the ask
        ({"max_gpus": "2"}, "max_gpus"),
        ({"min_gpus": "2", "max_gpus": "16", "step_gpus": "3"}, "step_gpus"),
        ({"min_gpus": "4", "max_gpus": "16", "scaling": "1.5"}, "scaling"),
        ({"min_gpus": "x"}, "min_gpus"),
    ],
)
def test_bad_elastic_columns_name_the_line_and_field(tmp_path, columns, field):
    names = list(columns)
    path = tmp_path / "jobs.csv"
    path.write_text(
        "job_id,submit_s,gpus,duration_s,queue," + ",".join(names) + "\n"
        "a,0,4,10,q," + ",".join("" for _ in names) + "\n"
        "b,0,4,10,q," + ",".join(columns.values()) + "\n"
    )
    jobs = read_canonical(path)
    with pytest.raises(InputError) as err:
        ClusterState(flat_fleet(2, 8)).add_jobs(jobs)
    assert err.value.line == 3 and err.value.field == field and str(path) in str(err.value)


def test_export_and_restore_keep_a_resized_job():
    state = ClusterState(flat_fleet(2, 8))
    state.add_jobs(elastic_jobs([(0, 4, 1000), (5, 4, 10)], {0: (4, 16, 4)}))
    state.submit(0)
    state.start(0, ((0, 4),), 0.0)
    state.resize(0, ((0, 8), (1, 4)), 10.0)
    state.submit(1)
    again = ClusterState.restore(state.fleet, state.export())
    assert again.export() == state.export()
    assert again.gpus[:2] == [12, 4] and again.alloc.pool_free[0] == 4


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 200),
            st.sampled_from([1, 2, 4, 8]),
            st.integers(1, 400),
            st.booleans(),
            st.sampled_from([0.0, 20.0]),
        ),
        min_size=1,
        max_size=12,
    ),
    st.sampled_from(["fifo", "fifo-backfill", "fair", "las", "srtf"]),
    st.sampled_from([0.0, 100.0]),
)
def test_elastic_runs_conserve_gpus_and_work(rows, inner, hold):
    """Every job ends; no host ever holds more than it has; every run of an elastic job is
    a whole number of steps in its bounds; the work each job did adds up to its duration."""
    fleet = flat_fleet(2, 8)
    table_rows = [(s, g, d, "default", True, restart) for s, g, d, _, restart in rows]
    elastic = {j: (g, 16, g) for j, (_, g, _, flex, _) in enumerate(rows) if flex}
    jobs = elastic_jobs(table_rows, elastic)
    engine = Engine(fleet, jobs, make_policy(f"{inner}+elastic:hold={hold:g}"), record=True)
    r = engine.run()
    assert not np.isnan(r.end_s).any()
    runs = r.runs
    events = sorted(
        [(runs.start_s[i], 1, i) for i in range(len(runs))]
        + [(runs.end_s[i], 0, i) for i in range(len(runs))]
    )
    used = np.zeros(2, dtype=int)
    for _, kind, i in events:
        for host, g in runs.placement[i]:
            used[host] += g if kind else -g
        assert (used <= 8).all()
    cluster = engine.cluster
    for i in range(len(runs)):
        j, size = runs.job[i], sum(g for _, g in runs.placement[i])
        lo, hi, step = cluster.min_gpus[j], cluster.max_gpus[j], cluster.step_gpus[j]
        assert lo <= size <= hi and size % step == 0
    for j in range(len(jobs)):  # work at each run's rate, less what was lost, is the duration
        mine = [i for i in range(len(runs)) if runs.job[i] == j]
        done = 0.0
        again = False  # (a restart is paid after any stop but a resize at the instant of a start)
        for i in mine:
            size, span = sum(g for _, g in runs.placement[i]), runs.end_s[i] - runs.start_s[i]
            done += max(0.0, span - (cluster.restart_cost_s[j] if again else 0.0)) * size / jobs.gpus[j]
            again = again or span > 0 or runs.ended[i] != RESIZED
        assert done - cluster.lost[j] == pytest.approx(jobs.duration_s[j], rel=1e-9, abs=1e-6)
