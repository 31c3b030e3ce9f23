"""The per-run record: every run of every job, enough to recompute occupancy when jobs are
preempted, interrupted and restarted, which first start and last end cannot."""

from __future__ import annotations

import csv
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from corral.cli import app
from tests.conftest import flat_fleet, make_jobs
from tests.support.worlds import FACTORIES, engine, worlds


def occupancy_peaks(runs) -> dict[int, int]:
    """The most GPUs each host ever gave at once, from the runs alone (a run ending at t
    frees its GPUs before one starting at t takes them)."""
    moves = []
    for start, end, placement in zip(runs.start_s, runs.end_s, runs.placement, strict=True):
        for host, gpus in placement:
            moves.append((start, 1, host, gpus))
            moves.append((end, 0, host, -gpus))
    busy: dict[int, int] = defaultdict(int)
    peak: dict[int, int] = defaultdict(int)
    for _, _, host, delta in sorted(moves):
        busy[host] += delta
        peak[host] = max(peak[host], busy[host])
    return peak


@settings(max_examples=120, deadline=None)
@given(
    st.booleans().flatmap(worlds),
    st.sampled_from(sorted(FACTORIES)),
    st.one_of(st.none(), st.integers(0, 3)),
)
def test_the_runs_account_for_every_job_and_gpu_second(world, policy, failure_seed):
    fleet, jobs = world
    r = engine(fleet, jobs, policy, failure_seed).run()
    runs = r.runs
    by_job: dict[int, list[int]] = defaultdict(list)
    for i, job in enumerate(runs.job):
        by_job[job].append(i)
    for j in range(len(jobs)):
        mine = by_job[j]
        ended = [runs.ended[i] for i in mine]
        assert ended[-1] == "completed" and ended.count("completed") == 1
        assert runs.start_s[mine[0]] == r.start_s[j]
        assert runs.end_s[mine[-1]] == r.end_s[j]
        assert ended.count("preempted") == r.preemptions[j]
        assert ended.count("failed") == r.unexpected[j]
        assert ended.count("failed") + ended.count("drained") == r.interruptions[j]
        for before, after in zip(mine, mine[1:], strict=False):
            assert runs.end_s[before] <= runs.start_s[after]  # one run at a time
        # every second a job held its GPUs was work kept, work lost, restarting or writing
        held = sum(runs.end_s[i] - runs.start_s[i] for i in mine)
        spent = jobs.duration_s[j] + r.lost_s[j] + r.restart_s[j] + r.checkpoint_s[j]
        assert held == pytest.approx(spent, rel=1e-9, abs=1e-6)
        assert all(sum(g for _, g in runs.placement[i]) == jobs.gpus[j] for i in mine)
    for host, peak in occupancy_peaks(runs).items():
        assert peak <= fleet.host_gpus[host]


def test_runs_csv_recomputes_what_the_job_record_cannot(tmp_path):
    # One host of 4 GPUs under srtf: A (4 GPUs, 100 s) is preempted at 10 by B (4 GPUs,
    # 5 s) and resumes at 15. From first start and last end alone, A and B overlap on 10-15
    # and 8 GPUs look busy; the runs show 4 at every instant.
    workload = tmp_path / "jobs.csv"
    workload.write_text("job_id,submit_s,gpus,duration_s,queue\nA,0,4,100,q\nB,10,4,5,q\n")
    out = tmp_path / "out"
    args = ["simulate", "--workload", str(workload), "--fleet", "1x4", "--policy", "srtf", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    with open(out / "runs-srtf.csv") as f:
        rows = list(csv.DictReader(f))
    got = [(r["job_id"], int(r["run"]), float(r["start_s"]), float(r["end_s"]), r["ended"]) for r in rows]
    assert got == [
        ("A", 1, 0.0, 10.0, "preempted"),
        ("B", 1, 10.0, 15.0, "completed"),
        ("A", 2, 15.0, 105.0, "completed"),
    ]
    assert {r["hosts"] for r in rows} == {"0:4"}
    moves = sorted(
        [(float(r["start_s"]), 1, int(r["gpus"])) for r in rows]
        + [(float(r["end_s"]), 0, -int(r["gpus"])) for r in rows]
    )
    busy = peak = 0
    for _, _, delta in moves:
        busy += delta
        peak = max(peak, busy)
    assert peak == 4
    # utilisation from the runs: 105 s x 4 GPUs busy over 1 host x 105 s
    held = sum((float(r["end_s"]) - float(r["start_s"])) * int(r["gpus"]) for r in rows)
    assert held / (4 * 105.0) == pytest.approx(1.0)


def test_a_restored_cluster_keeps_the_runs_before_the_restart():
    from corral.scheduling.preemptive import Srtf
    from corral.sim.engine import Engine
    from corral.state.cluster import ClusterState

    fleet = flat_fleet(1, 4)
    jobs = make_jobs([(0, 4, 100), (10, 4, 5)])
    e = Engine(fleet, jobs, Srtf())
    e.begin()
    e.advance(12.0)
    cluster = ClusterState.restore(fleet, e.cluster.export())
    e.replace(cluster, Srtf(), e.policy.export())
    e.advance()
    runs = e.result().runs
    assert list(zip(runs.job, runs.start_s, runs.end_s, runs.ended, strict=True)) == [
        (0, 0.0, 10.0, "preempted"),
        (1, 10.0, 15.0, "completed"),
        (0, 15.0, 105.0, "completed"),
    ]
