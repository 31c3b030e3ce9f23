"""The moves a job and an attempt may make, and the one function that makes them.

Every change of a job's or an attempt's state, in the reconciler and in the API alike, goes
through `set_state`, which refuses a move the tables do not hold: a job that has ended
never runs again, and an attempt that has ended is never revived. Setting the state a row
already has is no move, and is allowed (a step may repeat what a rebuilt one already did).
"""

from __future__ import annotations

from corral.live.db import (
    ATTEMPT_ENDED,
    ATTEMPT_RUNNING,
    CANCELLED,
    COMMITTED,
    EXITED,
    FAILED,
    PENDING,
    RUNNING,
    STOPPING,
    SUCCEEDED,
    Attempt,
    Job,
)

# job: pending <-> running (started; stopped: preempted, drained, its node lost), then one end
JOB_MOVES: dict[str, frozenset[str]] = {
    PENDING: frozenset({RUNNING, SUCCEEDED, FAILED, CANCELLED}),
    RUNNING: frozenset({PENDING, SUCCEEDED, FAILED, CANCELLED}),
    SUCCEEDED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
}
# attempt: committed -> running (its agent started it) -> stopping (asked to stop) -> exited
# (its agent reported the end) -> ended (the reconciler applied it); an attempt lost with
# its node, or stopped before any agent saw it, ends at once
ATTEMPT_MOVES: dict[str, frozenset[str]] = {
    COMMITTED: frozenset({ATTEMPT_RUNNING, STOPPING, EXITED, ATTEMPT_ENDED}),
    ATTEMPT_RUNNING: frozenset({STOPPING, EXITED, ATTEMPT_ENDED}),
    STOPPING: frozenset({EXITED, ATTEMPT_ENDED}),
    EXITED: frozenset({ATTEMPT_ENDED}),
    ATTEMPT_ENDED: frozenset(),
}


class IllegalMove(RuntimeError):
    """A state change the tables do not hold: a bug, never a client's mistake."""


def set_state(row: Job | Attempt, state: str) -> None:
    """Move `row` (a job or an attempt) to `state`, or raise IllegalMove."""
    moves = JOB_MOVES if isinstance(row, Job) else ATTEMPT_MOVES
    if state not in moves:
        raise IllegalMove(f"'{state}' is no state of {'a job' if isinstance(row, Job) else 'an attempt'}")
    if row.state == state:
        return
    if state not in moves.get(row.state, frozenset()):
        what = f"job {row.job_id}" if isinstance(row, Job) else f"attempt {row.id}"
        raise IllegalMove(f"{what} may not move from '{row.state}' to '{state}'")
    row.state = state
