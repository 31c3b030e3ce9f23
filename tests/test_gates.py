"""Dependencies, job arrays and reservations, in the simulator: schedules worked by hand,
the refusals of a table or fleet file that cannot run, and the same schedule after the
state is exported and restored mid-run."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from corral.errors import InputError
from corral.fleet import Fleet, Segment, fleet_from_text, load_fleet
from corral.scheduling.registry import POLICIES, make_policy
from corral.sim.engine import Engine
from corral.state.cluster import ClusterState
from corral.state.gates import parse_after, parse_array
from corral.traces import read_jobs
from corral.windows import ReservationSpec
from corral.workload import write_jobs
from tests.conftest import flat_fleet
from tests.support.worlds import table


def gated(rows: list[dict]) -> object:
    """A table of `rows` (submit_s, gpus, duration_s and optional after / array_job /
    array_limit), each in queue default."""
    jobs = table(
        [
            {k: v for k, v in r.items() if k in ("submit_s", "gpus", "duration_s")} | {"queue": "default"}
            for r in rows
        ]
    )
    for column in ("after", "array_job", "array_limit"):
        if any(column in r for r in rows):
            jobs.extra[column] = [str(r.get(column, "")) for r in rows]
    return jobs


def run(rows, policy="fifo", hosts=1, gpus=8):
    jobs = gated(rows)
    result = Engine(flat_fleet(hosts, gpus), jobs, make_policy(policy), explain=True).run()
    return jobs, result


def test_a_pipeline_runs_pretraining_then_its_evaluations_then_fine_tuning():
    # j0 pre-trains on all 8 GPUs for 100 s; j1-j3 evaluate it (2 GPUs, 10/20/30 s), each
    # after j0 succeeds; j4 fine-tunes after all three. Every job is submitted at 0: without
    # the dependencies j1-j3 would start at 0 beside nothing, after j0 at 100 anyway (FIFO),
    # so j4 is the one to watch: it waits for the slowest evaluation (ends 130), not for GPUs.
    rows = [
        dict(submit_s=0, gpus=8, duration_s=100),
        dict(submit_s=0, gpus=2, duration_s=10, after="j0"),
        dict(submit_s=0, gpus=2, duration_s=20, after="j0:ok"),
        dict(submit_s=0, gpus=2, duration_s=30, after="j0:ok"),
        dict(submit_s=0, gpus=2, duration_s=5, after="j1 j2 j3"),
    ]
    _, r = run(rows)
    assert r.start_s.tolist() == [0, 100, 100, 100, 130]
    assert r.end_s.tolist() == [100, 110, 120, 130, 135]


def test_a_dependency_that_can_no_longer_be_met_cancels_and_says_which():
    # j0 succeeds at 10. j1 ran only if j0 failed: cancelled at 10, naming j0. j2 runs after
    # j1 ends in any way (it was cancelled): it starts at 10. j3 needed j1 to succeed: it is
    # cancelled in turn, naming j1. j4 runs after j1 failed or was cancelled: it starts.
    rows = [
        dict(submit_s=0, gpus=8, duration_s=10),
        dict(submit_s=0, gpus=1, duration_s=5, after="j0:notok"),
        dict(submit_s=0, gpus=1, duration_s=5, after="j1:any"),
        dict(submit_s=0, gpus=1, duration_s=5, after="j1:ok"),
        dict(submit_s=0, gpus=1, duration_s=5, after="j1:notok"),
    ]
    jobs, r = run(rows)
    assert math.isnan(r.start_s[1]) and math.isnan(r.start_s[3])
    assert r.end_s[1] == 10 and r.end_s[3] == 10
    assert r.start_s[2] == 10 and r.start_s[4] == 10
    assert r.reasons[1][-1][1].kind == "dependency"
    assert "j0:notok" in r.reasons[1][-1][1].text
    assert "j1:ok" in r.reasons[3][-1][1].text


def test_a_job_waiting_on_a_dependency_says_so():
    jobs, r = run(
        [dict(submit_s=0, gpus=8, duration_s=10), dict(submit_s=1, gpus=1, duration_s=5, after="j0")]
    )
    (t, first), *_ = r.reasons[1]
    assert (t, first.kind) == (1, "dependency")
    assert first.text == "waiting for job j0 to succeed (j0:ok)"


def test_an_array_runs_at_most_its_limit_at_once():
    # Five 1-GPU tasks of 10 s with limit 2 on 8 free GPUs: two at a time.
    rows = [dict(submit_s=0, gpus=1, duration_s=10, array_job="7", array_limit=2) for _ in range(5)]
    _, r = run(rows)
    assert r.start_s.tolist() == [0, 0, 10, 10, 20]
    held = r.reasons[2][0][1]
    assert held.kind == "array_limit" and "%2" in held.text


def test_an_array_limit_leaves_other_jobs_alone():
    # The array's held tasks do not hold back a job behind them (FIFO's order would).
    rows = [dict(submit_s=0, gpus=1, duration_s=10, array_job="7", array_limit=1) for _ in range(3)]
    rows.append(dict(submit_s=0, gpus=4, duration_s=10))
    _, r = run(rows)
    assert r.start_s.tolist() == [0, 10, 20, 0]


def test_a_dependency_on_an_array_waits_for_every_task():
    rows = [dict(submit_s=0, gpus=1, duration_s=d, array_job="a", array_limit=0) for d in (5, 15)]
    rows.append(dict(submit_s=0, gpus=1, duration_s=1, after="a"))
    jobs, r = run(rows)
    assert r.start_s[2] == 15


@pytest.mark.parametrize("policy", list(POLICIES))
def test_gates_hold_under_every_kind_of_policy(policy):
    # Dependencies and a limit of one hold whatever the policy orders.
    rows = [
        dict(submit_s=0, gpus=2, duration_s=30),
        dict(submit_s=0, gpus=2, duration_s=10, after="j0"),
        dict(submit_s=0, gpus=1, duration_s=10, array_job="9", array_limit=1),
        dict(submit_s=0, gpus=1, duration_s=10, array_job="9", array_limit=1),
    ]
    _, r = run(rows, policy)
    assert r.start_s[1] >= r.end_s[0]
    assert r.start_s[3] >= r.end_s[2]


@pytest.mark.parametrize(
    ("rows", "field", "words", "line"),
    [
        ([dict(after="j9")], "after", "not in the table", 2),
        ([dict(after="j0")], "after", "itself", 2),
        ([dict(), dict(after="j2"), dict(after="j1:any")], "after", "chain", 3),
        ([dict(after="j0:maybe")], "after", "JOB:ok", 2),
        (
            [dict(array_job="a", array_limit=2), dict(array_job="a", array_limit=3)],
            "array_limit",
            "limit 2",
            3,
        ),
        ([dict(array_limit=2)], "array_limit", "array_job is empty", 2),
    ],
)
def test_a_table_whose_gates_cannot_run_is_refused_naming_line_and_field(tmp_path, rows, field, words, line):
    rows = [dict(submit_s=0, gpus=1, duration_s=1) | r for r in rows]
    path = tmp_path / "jobs.csv"
    write_jobs(gated(rows), path)
    with pytest.raises(InputError) as err:
        Engine(flat_fleet(1, 8), read_jobs(str(path)), make_policy("fifo")).run()
    assert err.value.field == field and words in err.value.message
    assert err.value.source == str(path) and err.value.line == line


def test_array_syntax_reads_as_slurms():
    assert parse_array("0-3%2") == ([0, 1, 2, 3], 2)
    assert parse_array("1,3,5-7") == ([1, 3, 5, 6, 7], 0)
    assert parse_array("0-15:4") == ([0, 4, 8, 12], 0)
    for bad in ("3-1", "a", "0-3%0", "1,1", "0-99999"):
        with pytest.raises(ValueError):
            parse_array(bad)
    assert parse_after("12 13:any,14:notok") == [("12", "ok"), ("13", "any"), ("14", "notok")]


@pytest.mark.parametrize("policy", ["fifo", "las", "fair"])
def test_a_run_restored_mid_way_ends_as_one_never_restored(policy):
    """Exported and restored (gates rebuilt from the jobs' arrivals and ends) at every
    instant, a run with dependencies and arrays gives the schedule of one left alone."""
    rows = [dict(submit_s=s, gpus=g, duration_s=d) for s, g, d in [(0, 4, 30), (5, 8, 10), (7, 2, 12)]]
    rows += [dict(submit_s=2, gpus=2, duration_s=d, array_job="5", array_limit=2) for d in (9, 4, 6, 11)]
    rows += [
        dict(submit_s=3, gpus=1, duration_s=3, after="j0 j4:any"),
        dict(submit_s=4, gpus=1, duration_s=2, after="j7:notok"),
    ]
    jobs = gated(rows)
    fleet = flat_fleet(2, 4)
    alone = Engine(fleet, jobs, make_policy(policy)).run()
    engine = Engine(fleet, jobs, make_policy(policy))
    engine.begin()
    for t in range(0, 200):
        engine.advance(float(t))
        state = engine.cluster.export()
        policy_state = engine.driver.export()
        restored = ClusterState.restore(fleet, state)
        engine.replace(restored, make_policy(policy), policy_state)
    engine.advance()
    again = engine.result()
    np.testing.assert_array_equal(again.start_s, alone.start_s)
    np.testing.assert_array_equal(again.end_s, alone.end_s)


def reserved_fleet(*specs: ReservationSpec) -> Fleet:
    """Two hosts of 4 GPUs, held as `specs` say."""
    return Fleet("r", [Segment("default", 2, 4, 2, 1_000)], "default", reservations=list(specs))


def test_jobs_plan_around_a_maintenance_window_by_their_estimates():
    # Host 1 is down for maintenance over [50, 150), announced long before. j0 takes host 0
    # till 30; j1 (100 s) would run into the window, so host 1 is not for it: it waits for
    # host 0 (30). j2 (10 s), behind it, fits before the window on host 1 (30-40). j3,
    # submitted at 45 for 20 s, would run into it: it waits for host 0 (130).
    window = ReservationSpec("fix", start_s=50, duration_s=100, hosts=("1",))
    rows = [(0, 4, 30), (0, 4, 100), (0, 4, 10), (45, 4, 20)]
    jobs = table([dict(submit_s=s, gpus=g, duration_s=d, queue="default") for s, g, d in rows])
    r = Engine(reserved_fleet(window), jobs, make_policy("fifo"), explain=True).run()
    assert r.start_s.tolist() == [0, 30, 30, 130]
    assert [r.hosts[k] for k in range(4)] == ["0", "0", "1", "0"]
    assert any(reason.kind == "reservation" for _, reason in r.reasons[1])


def test_a_maintenance_window_drains_its_hosts_at_its_start_and_gives_them_back_at_its_end():
    # Announced with no notice: j1 starts on host 1 at 0, is stopped at 50 (it saves:
    # checkpoint on stop), waits for host 0 (free at 100) and runs its last 50 s there. j2
    # arrives at 60, inside the window: host 1 is nobody's till 150.
    window = ReservationSpec("fix", start_s=50, duration_s=100, hosts=("1",), notice_s=0)
    rows = [(0, 4, 100), (0, 4, 100), (60, 4, 10)]
    jobs = table([dict(submit_s=s, gpus=g, duration_s=d, queue="default") for s, g, d in rows])
    engine = Engine(reserved_fleet(window), jobs, make_policy("fifo"), explain=True)
    r = engine.run()
    starts = sorted((float(s), int(j)) for j, s in zip(r.runs.job, r.runs.start_s, strict=True))
    assert starts == [(0, 0), (0, 1), (100, 1), (150, 2)]
    assert r.end_s.tolist() == [100, 150, 160]


def test_a_queues_reservation_holds_gpus_for_it_and_no_one_else():
    # 4 GPUs (the pool's last host, host 1) for queue a over [0, 100): b's two jobs share
    # host 0 one after the other; a's job goes on host 1 at once (first fit: strict FIFO
    # would hold it behind b's waiting job); after 100 host 1 is b's too.
    held = ReservationSpec("team-a", start_s=0, duration_s=100, gpus=4, queue="a")
    rows = [(0, 4, 60, "b"), (0, 4, 60, "b"), (10, 4, 20, "a"), (10, 4, 200, "b")]
    jobs = table([dict(submit_s=s, gpus=g, duration_s=d, queue=q) for s, g, d, q in rows])
    r = Engine(reserved_fleet(held), jobs, make_policy("fifo-firstfit")).run()
    assert r.start_s.tolist() == [0, 60, 10, 100]
    assert [r.hosts[k] for k in range(4)] == ["0", "0", "1", "1"]


def test_a_reservation_in_a_fleet_file_is_read_and_a_bad_one_refused_naming_it(tmp_path):
    path = tmp_path / "fleet.toml"
    path.write_text(
        'hosts = 2\ngpus_per_host = 4\n[[reservations]]\nname = "fix"\nstart_s = 50\nduration_s = 100\n'
        "hosts = [1]\nmaintenance = true\n"
    )
    (spec,) = load_fleet(str(path)).reservations
    assert (spec.name, spec.start_s, spec.end_s, spec.hosts, spec.maintenance) == (
        "fix",
        50,
        150,
        ("1",),
        True,
    )
    path.write_text(
        "hosts = 2\ngpus_per_host = 4\n[[reservations]]\nstart_s = 50\nduration_s = 100\nhosts = [1]\n"
    )
    with pytest.raises(InputError) as err:
        load_fleet(str(path))
    assert err.value.field == "queue" and "reservations[0]" in err.value.message


def test_the_readmes_fleet_example_holds_its_reservation_on_the_pools_last_hosts():
    """The README's two fleet blocks, one file (the second's top-level key first)."""
    text = (Path(__file__).parent.parent / "README.md").read_text()
    pools, rest = re.findall(r"```toml\n(.*?)```", text, re.S)
    top, tables = rest.split("\n", 1)
    fleet = fleet_from_text(f"{top}\n{pools}\n{tables}")
    (held,) = ClusterState(fleet).reservations.items
    pool_hosts = fleet.pool_hosts[fleet.pools.index("shared")]
    assert held.hosts.tolist() == pool_hosts[-8:].tolist()  # (64 GPUs: eight 8-GPU hosts)
    assert (held.spec.queue, held.start_s, held.end_s) == ("team-a", 86400, 86400 + 28800)
