"""The transition tables of jobs and attempts: every legal move is made, every illegal one
refused, and no module of the live face sets a job's or an attempt's state but through
`set_state`."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

from corral.live.db import (
    ATTEMPT_ENDED,
    ATTEMPT_RUNNING,
    CANCELLED,
    COMMITTED,
    EXITED,
    FAILED,
    JOB_STATES,
    PENDING,
    RUNNING,
    STOPPING,
    SUCCEEDED,
    Attempt,
    Job,
)
from corral.live.transitions import ATTEMPT_MOVES, JOB_MOVES, IllegalMove, set_state

LIVE = Path(__file__).resolve().parent.parent / "src" / "corral" / "live"
ATTEMPT_STATES = (COMMITTED, ATTEMPT_RUNNING, STOPPING, EXITED, ATTEMPT_ENDED)

# written out by hand, apart from the tables, so that a change to one is caught by the other
LEGAL_JOB = {
    (PENDING, RUNNING),
    (PENDING, SUCCEEDED),  # (its stopped attempt's exit, reported after a preemption, was 0)
    (PENDING, FAILED),
    (PENDING, CANCELLED),
    (RUNNING, PENDING),
    (RUNNING, SUCCEEDED),
    (RUNNING, FAILED),
    (RUNNING, CANCELLED),
}
LEGAL_ATTEMPT = {
    (COMMITTED, ATTEMPT_RUNNING),
    (COMMITTED, STOPPING),
    (COMMITTED, EXITED),
    (COMMITTED, ATTEMPT_ENDED),
    (ATTEMPT_RUNNING, STOPPING),
    (ATTEMPT_RUNNING, EXITED),
    (ATTEMPT_RUNNING, ATTEMPT_ENDED),
    (STOPPING, EXITED),
    (STOPPING, ATTEMPT_ENDED),
    (EXITED, ATTEMPT_ENDED),
}


def job(state: str) -> Job:
    return Job(job_id="7", state=state)


def attempt(state: str) -> Attempt:
    return Attempt(id=3, state=state)


def test_the_tables_hold_the_moves_worked_out_by_hand():
    assert set(JOB_MOVES) == set(JOB_STATES) and set(ATTEMPT_MOVES) == set(ATTEMPT_STATES)
    assert {(a, b) for a, to in JOB_MOVES.items() for b in to} == LEGAL_JOB
    assert {(a, b) for a, to in ATTEMPT_MOVES.items() for b in to} == LEGAL_ATTEMPT


@pytest.mark.parametrize(
    ("row", "states", "legal"), [(job, JOB_STATES, LEGAL_JOB), (attempt, ATTEMPT_STATES, LEGAL_ATTEMPT)]
)
def test_every_move_is_made_or_refused_as_the_table_says(row, states, legal):
    for before, after in itertools.product(states, states):
        subject = row(before)
        if before == after or (before, after) in legal:
            set_state(subject, after)
            assert subject.state == after
        else:
            with pytest.raises(IllegalMove, match=f"may not move from '{before}' to '{after}'"):
                set_state(subject, after)
            assert subject.state == before, (before, after)


def test_an_ended_job_never_runs_again_and_an_ended_attempt_is_never_revived():
    for end in (SUCCEEDED, FAILED, CANCELLED):
        with pytest.raises(IllegalMove, match=f"job 7 may not move from '{end}' to 'running'"):
            set_state(job(end), RUNNING)
    with pytest.raises(IllegalMove, match="attempt 3 may not move from 'ended' to 'running'"):
        set_state(attempt(ATTEMPT_ENDED), ATTEMPT_RUNNING)


def test_a_word_that_is_no_state_is_refused():
    with pytest.raises(IllegalMove, match="'exited' is no state of a job"):
        set_state(job(RUNNING), EXITED)
    with pytest.raises(IllegalMove, match="'pending' is no state of an attempt"):
        set_state(attempt(COMMITTED), PENDING)


def test_no_live_module_sets_a_state_but_through_set_state():
    """`x.state = ...` and `x.state, ... = ...` on a job or an attempt appear only in
    transitions.py (nodes have their own states, set where they are)."""
    found = []
    for path in sorted(LIVE.rglob("*.py")):
        if path.name == "transitions.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Assign):
                continue
            targets = [
                t
                for target in node.targets
                for t in (target.elts if isinstance(target, ast.Tuple) else [target])
            ]
            for t in targets:
                if isinstance(t, ast.Attribute) and t.attr == "state" and ast.unparse(t.value) != "node":
                    found.append(f"{path.name}:{node.lineno}")
    assert found == []
