"""The event loop: a heap of (time, seq, kind, job, token) tuples merged with the sorted
stream of submissions. Deterministic: ties break on sequence numbers, never on hashes.

All events at one instant are applied first (completions, then submissions), then each pool
they touched gets one scheduling pass.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from corral.errors import InputError
from corral.fleet import Fleet
from corral.scheduling.placement import PlacementConfig, Placer
from corral.scheduling.policy import Policy, Preempt, Start, Wake
from corral.sim.allocation import AllocationError, FleetState, Placement
from corral.workload import JobTable

FINISH, WAKE = 0, 1
NAN = math.nan


@dataclass
class SimResult:
    """The per-job record and the run's counters; metrics are computed from these alone."""

    policy: str
    fleet: Fleet
    jobs: JobTable
    pool: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    preemptions: np.ndarray
    hosts: list[str]
    events: int
    wall_s: float
    log: list[tuple] | None = field(default=None, repr=False)


class _EngineView:
    """The read-only face of the engine's state that policies see."""

    def __init__(self, engine: Engine) -> None:
        self._e = engine
        self.now_s = 0.0
        self.gpus = engine.gpus
        self.duration_s = engine.duration_s
        self.submit_s = engine.submit_s
        self.preemptible = engine.preemptible
        self.pool = engine.pool

    def pool_gpus(self, pool: int) -> int:
        return self._e.fleet.pool_gpus[pool]

    def free_gpus(self, pool: int) -> int:
        return self._e.state.pool_free[pool]

    def is_running(self, job: int) -> bool:
        return self._e.run_since[job] >= 0.0

    def remaining_s(self, job: int) -> float:
        e = self._e
        since = e.run_since[job]
        return e.remaining[job] - (self.now_s - since if since >= 0.0 else 0.0)

    def executed_s(self, job: int) -> float:
        return self.duration_s[job] - self.remaining_s(job)

    def last_stop_s(self, job: int) -> float:
        return self._e.last_stop[job]

    def place(self, job: int) -> Placement | None:
        e = self._e
        pool = e.pool[job]
        relax = e.placer.config.relax_after_s
        relaxed = relax is not None and self.now_s - self.submit_s[job] >= relax
        key = (e.state.release_epoch[pool], relaxed)
        if e.failed_at.get(job) == key:
            return None
        found = e.placer.find(pool, self.gpus[job], relaxed)
        if found is None:
            e.failed_at[job] = key
        return found


class Engine:
    def __init__(
        self,
        fleet: Fleet,
        jobs: JobTable,
        policy: Policy,
        placement: PlacementConfig | None = None,
        progress: Callable[[int, int], None] | None = None,
        record: bool = False,
    ) -> None:
        self.fleet = fleet
        self.jobs = jobs
        self.policy = policy
        n = len(jobs)
        self.gpus: list[int] = jobs.gpus.tolist()
        self.duration_s: list[float] = jobs.duration_s.tolist()
        self.submit_s: list[float] = jobs.submit_s.tolist()
        self.preemptible: list[bool] = jobs.preemptible.tolist()
        self.pool = self._pools_of(fleet, jobs)
        self.state = FleetState(fleet)
        self.placer = Placer(self.state, placement)
        self.remaining = list(self.duration_s)
        self.run_since = [-1.0] * n
        self.last_stop = [NAN] * n
        self.first_start = [NAN] * n
        self.end = [NAN] * n
        self.preemptions = [0] * n
        self.placement: list[Placement | None] = [None] * n
        self.last_placement: list[Placement | None] = [None] * n
        self.token = [0] * n
        self.failed_at: dict[int, tuple] = {}
        self.next_wake = [math.inf] * len(fleet.pools)
        self.progress = progress
        self.log: list[tuple] | None = [] if record else None

    @staticmethod
    def _pools_of(fleet: Fleet, jobs: JobTable) -> list[int]:
        cache: dict[str, int | None] = {}
        pools = []
        for i, q in enumerate(jobs.queue):
            if q not in cache:
                cache[q] = fleet.pool_of_queue(q)
            p = cache[q]
            if p is None:
                raise InputError(
                    f"queue '{q}' has no pool in fleet '{fleet.name}' and the fleet has no default_pool",
                    source=jobs.source,
                    line=jobs.where(i),
                    field="queue",
                )
            if jobs.gpus[i] > fleet.pool_gpus[p]:
                raise InputError(
                    f"job '{jobs.job_id[i]}' asks {int(jobs.gpus[i])} GPUs but pool '{fleet.pools[p]}' "
                    f"of fleet '{fleet.name}' has only {fleet.pool_gpus[p]}",
                    source=jobs.source,
                    line=jobs.where(i),
                    field="gpus",
                )
            pools.append(p)
        return pools

    def run(self) -> SimResult:
        began = time.perf_counter()
        n = len(self.jobs)
        order = np.lexsort((np.arange(n), self.jobs.submit_s)).tolist()
        submit = self.submit_s
        pool = self.pool
        policy = self.policy
        view = _EngineView(self)
        policy.bind(view, len(self.fleet.pools))
        heap: list[tuple] = []
        seq = 0
        nxt = 0
        events = 0
        done = 0
        report_every = max(1, n // 200)
        token = self.token
        while nxt < n or heap:
            t_submit = submit[order[nxt]] if nxt < n else math.inf
            now = heap[0][0] if heap and heap[0][0] <= t_submit else t_submit
            view.now_s = now
            touched: set[int] = set()
            while heap and heap[0][0] == now:
                _, _, kind, job, tok = heapq.heappop(heap)
                if kind == FINISH:
                    if tok != token[job]:
                        continue
                    events += 1
                    self._complete(job, now)
                    policy.finished(job)
                    touched.add(pool[job])
                    done += 1
                else:  # WAKE for pool `job`
                    if self.next_wake[job] == now:
                        self.next_wake[job] = math.inf
                        events += 1
                        touched.add(job)
            while nxt < n and submit[order[nxt]] == now:
                job = order[nxt]
                nxt += 1
                events += 1
                policy.submitted(job)
                touched.add(pool[job])
            for p in sorted(touched):
                for decision in policy.decide(p):
                    if type(decision) is Start:
                        seq += 1
                        self._start(decision.job, decision.placement, now, heap, seq)
                    elif type(decision) is Preempt:
                        self._preempt(decision.job, now)
                    elif type(decision) is Wake:
                        if now < decision.at_s < self.next_wake[decision.pool]:
                            self.next_wake[decision.pool] = decision.at_s
                            seq += 1
                            heapq.heappush(heap, (decision.at_s, seq, WAKE, decision.pool, 0))
                    else:
                        raise TypeError(f"unknown decision {decision!r}")
            if self.progress is not None and done % report_every == 0 and done:
                self.progress(done, n)
        if self.progress is not None:
            self.progress(n, n)
        unfinished = [i for i in range(n) if math.isnan(self.end[i])]
        if unfinished:
            raise RuntimeError(f"policy {policy.name} left {len(unfinished)} jobs unfinished")
        return SimResult(
            policy=policy.name,
            fleet=self.fleet,
            jobs=self.jobs,
            pool=np.asarray(self.pool),
            start_s=np.asarray(self.first_start),
            end_s=np.asarray(self.end),
            preemptions=np.asarray(self.preemptions),
            hosts=[";".join(str(h) for h, _ in p) if p else "" for p in self.last_placement],
            events=events,
            wall_s=time.perf_counter() - began,
            log=self.log,
        )

    def _start(self, job: int, placement: Placement, now: float, heap: list, seq: int) -> None:
        if self.run_since[job] >= 0.0 or not math.isnan(self.end[job]):
            raise AllocationError(f"job {job} started twice")
        if sum(g for _, g in placement) != self.gpus[job]:
            raise AllocationError(f"job {job} needs {self.gpus[job]} GPUs, placement gives {placement}")
        if now < self.submit_s[job]:
            raise AllocationError(f"job {job} started before it was submitted")
        self.state.allocate(self.pool[job], placement)
        self.placement[job] = placement
        self.last_placement[job] = placement
        self.run_since[job] = now
        if math.isnan(self.first_start[job]):
            self.first_start[job] = now
        self.token[job] += 1
        heapq.heappush(heap, (now + self.remaining[job], seq, FINISH, job, self.token[job]))
        if self.log is not None:
            self.log.append((now, "start", job, placement))

    def _preempt(self, job: int, now: float) -> None:
        if self.run_since[job] < 0.0:
            raise AllocationError(f"job {job} preempted while not running")
        self.state.release(self.pool[job], self.placement[job])  # type: ignore[arg-type]
        self.remaining[job] -= now - self.run_since[job]
        self.run_since[job] = -1.0
        self.last_stop[job] = now
        self.placement[job] = None
        self.preemptions[job] += 1
        self.token[job] += 1
        if self.log is not None:
            self.log.append((now, "stop", job, None))

    def _complete(self, job: int, now: float) -> None:
        self.state.release(self.pool[job], self.placement[job])  # type: ignore[arg-type]
        self.remaining[job] = 0.0
        self.run_since[job] = -1.0
        self.placement[job] = None
        self.end[job] = now
        if self.log is not None:
            self.log.append((now, "end", job, None))
