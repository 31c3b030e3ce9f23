"""When will each waiting job start: the simulator run forward from a cluster's state.

The state (a live reconciler's, or a simulation's at some instant) is exported and restored
into a fresh engine under a fresh policy given back the policy's own export, so the policy
decides as it would have. Running jobs end when the state expects them to (their estimates,
live); waiting ones run for their work left by their estimates; no job arrives that has not
already. What comes out is each waiting job's next start, or nothing where it never starts
(a dependency that cannot be met, a reservation it never fits around).
"""

from __future__ import annotations

import json
import math
from typing import Any

from corral.scheduling.registry import make_policy
from corral.sim.engine import FINISH, RESERVE, WAKE, Engine
from corral.state.cluster import PENDING, RUNNING_, ClusterState


def next_starts(
    cluster: ClusterState,
    policy: str,
    policy_state: Any,
    now_s: float,
    wakes: dict[int, float] | None = None,
    outcomes: dict[str, bool] | None = None,
    durations_s: dict[int, float] | None = None,
) -> dict[int, float]:
    """Each job of `cluster` (by number) that waits at `now_s` (or is held by a gate) and
    starts in the forecast, with when. `policy_state`: the policy's export, jobs by number;
    `wakes`: when it asked to decide again, per pool; `outcomes`: how jobs that gates wait
    on ended; `durations_s`: the work to assume for jobs given no estimate."""
    return starts_from(capture(cluster), policy, policy_state, now_s, wakes, outcomes, durations_s)


def capture(cluster: ClusterState) -> dict[str, Any]:
    """What a forecast needs of `cluster`, copied (a live reconciler's lock is held only
    this long): its export, fleet and quota rule."""
    data = json.loads(json.dumps(cluster.export()))
    return {"state": data, "fleet": cluster.configured_fleet(), "enforce_quota": cluster.enforce_quota}


def starts_from(
    captured: dict[str, Any],
    policy: str,
    policy_state: Any,
    now_s: float,
    wakes: dict[int, float] | None = None,
    outcomes: dict[str, bool] | None = None,
    durations_s: dict[int, float] | None = None,
) -> dict[int, float]:
    """`next_starts` from what `capture` took."""
    data, fleet = captured["state"], captured["fleet"]
    spec, ledger = data["spec"], data["ledger"]
    for job, duration in (durations_s or {}).items():
        done = spec["duration_s"][job] - ledger["remaining"][job]
        spec["duration_s"][job] = spec["estimate_s"][job] = max(duration, done)
        ledger["remaining"][job] = max(duration, done) - done
    jobs = ClusterState.spec_table(spec)
    jobs.extra.pop("after", None)  # (the engine's own state is replaced; dependencies come with it)
    engine = _Forecast(fleet, jobs, make_policy(policy), sample_s=math.inf)
    engine.begin()
    engine.heap.clear()
    engine.nxt = int((jobs.submit_s <= now_s).sum())  # (those that have arrived)
    engine.now = now_s
    restored = ClusterState.restore(fleet, data, enforce_quota=captured["enforce_quota"])
    engine.replace(restored, make_policy(policy), policy_state, outcomes)
    engine.nxt = len(jobs)  # (and none arrives after)
    engine.reserved_until_s = now_s
    for at_s in restored.reservations.boundaries():
        if at_s > now_s:
            engine._push(at_s, RESERVE, 0)
    for job, status in enumerate(restored.status):
        if status == RUNNING_:
            engine._push(max(now_s, restored.expected_end[job]), FINISH, job, restored.attempts[job])
    for pool, at_s in (wakes or {}).items():
        engine.driver.wakes[pool] = max(now_s, at_s)
        engine._push(max(now_s, at_s), WAKE, pool)
    waiting = {job for job, status in enumerate(restored.status) if status == PENDING}
    waiting |= set(engine.driver.gates.waiting_on) | {
        j for q in engine.driver.gates.queued.values() for _, j in q
    }
    engine.waiting = waiting
    engine.driver.decide(set(range(len(fleet.pools))), now_s)  # (what would start now)
    engine.advance(done=lambda: not engine.waiting)  # (no further than the last of them)
    return engine.starts


class _Forecast(Engine):
    """The engine, noting when each waiting job first starts, until every one has."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waiting: set[int] = set()
        self.starts: dict[int, float] = {}

    def started(self, job: int, end_s: float, now_s: float) -> None:
        super().started(job, end_s, now_s)
        if job in self.waiting:
            self.waiting.discard(job)
            self.starts[job] = now_s
