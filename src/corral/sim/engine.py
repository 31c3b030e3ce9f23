"""The event loop: a heap of (time, seq, kind, job, token) tuples merged with the sorted
stream of submissions. Deterministic: ties break on sequence numbers, never on hashes.

All events at one instant are applied first (completions, then submissions), then each pool
they touched gets one scheduling pass.

Preemption follows checkpoints: a job saves its state every `checkpoint_interval_s` of useful
work (0: on preemption), loses the work since its last checkpoint when stopped, and pays
`restart_s` before useful work resumes. Quotas are accounted here (the mechanism), and checked
on every start of a policy that enforces them.
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
from corral.hardware import gpu as gpu_model
from corral.scheduling.placement import HOST, LEVELS, RACK, PlacementConfig, Placer
from corral.scheduling.policy import Hold, Policy, Preempt, Start, Wake
from corral.scheduling.quota import QuotaTree
from corral.sim.allocation import AllocationError, FleetState, Placement
from corral.workload import JobTable

FINISH, WAKE = 0, 1
NAN = math.nan
SAMPLE_S = 300.0  # at most how often (simulated) the fragmentation and busy-GPU series are sampled


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
    lost_s: np.ndarray  # useful work lost to preemption, seconds per job
    restart_s: np.ndarray  # time spent restarting after preemption, seconds per job
    contenders: np.ndarray  # queues with live jobs in the job's pool when it arrived
    series: np.ndarray  # samples of (time_s, pool, busy GPUs, free GPUs, fragmented GPUs)
    reasons: dict[int, list[tuple[float, str]]] | None = field(default=None, repr=False)
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
        self.priority = engine.priority
        self.queue = engine.queue
        self.level = engine.level
        self.quota = engine.quota
        self.explain = engine.reasons is not None

    def pool_gpus(self, pool: int) -> int:
        return self._e.fleet.pool_gpus[pool]

    def free_gpus(self, pool: int) -> int:
        return self._e.state.pool_free[pool]

    def is_running(self, job: int) -> bool:
        return self._e.run_since[job] >= 0.0

    def remaining_s(self, job: int) -> float:
        return self._e.remaining[job] - self._e.useful_s(job, self.now_s)

    def cheapest_first(self, jobs: list[int]) -> list[int]:
        """Running `jobs` ordered by what preempting each would lose: GPU-seconds since its
        last checkpoint, then the least useful work in its current run, then job number."""
        if not jobs:
            return []
        e = self._e
        idx = np.fromiter(jobs, dtype=np.int64, count=len(jobs))
        useful = np.maximum(0.0, self.now_s - e.np_run_since[idx] - e.np_overhead[idx])
        interval = e.np_checkpoint[idx]
        safe = np.where(interval > 0, interval, 1.0)
        saved = np.where(interval > 0, np.floor(useful / safe + 1e-9) * safe, useful)
        lost = (useful - saved) * e.np_gpus[idx]
        return idx[np.lexsort((idx, useful, lost))].tolist()

    def placement_of(self, job: int) -> Placement | None:
        return self._e.placement[job]

    def free_vector(self) -> np.ndarray:
        return self._e.state.free.copy()

    def place_on(self, job: int, free: np.ndarray) -> Placement | None:
        e = self._e
        return e.placer.find(e.pool[job], self.gpus[job], False, e.level[job], free)

    def executed_s(self, job: int) -> float:
        return self.duration_s[job] - self.remaining_s(job)

    def last_stop_s(self, job: int) -> float:
        return self._e.last_stop[job]

    def unplaceable_from(self, pool: int, level: int | None) -> float:
        """The fewest GPUs found unplaceable in `pool` at `level` since GPUs were last
        released there (inf if none, or if waiting jobs may be placed relaxed)."""
        e = self._e
        if e.placer.config.relax_after_s is not None:
            return math.inf
        floor = e.failed_from.get((pool, level, False))
        return floor[1] if floor is not None and floor[0] == e.state.release_epoch[pool] else math.inf

    def place(self, job: int) -> Placement | None:
        """Where `job` would go now. Failures are remembered until GPUs are next released in
        the pool (allocations only make placing harder), and they are monotone in size: if
        g GPUs cannot be placed with some topology rule, no more than g can."""
        e = self._e
        pool = e.pool[job]
        relax = e.placer.config.relax_after_s
        relaxed = relax is not None and self.now_s - self.submit_s[job] >= relax
        level = e.level[job]
        gpus = self.gpus[job]
        epoch = e.state.release_epoch[pool]
        key = (pool, level, relaxed)
        floor = e.failed_from.get(key)
        if floor is not None and floor[0] == epoch and gpus >= floor[1]:
            return None
        found = e.placer.find(pool, gpus, relaxed, level)
        if found is None and (floor is None or floor[0] != epoch or gpus < floor[1]):
            e.failed_from[key] = (epoch, gpus)
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
        explain: bool = False,
        sample_s: float = SAMPLE_S,
    ) -> None:
        self.fleet = fleet
        self.jobs = jobs
        self.policy = policy
        n = len(jobs)
        self.gpus: list[int] = jobs.gpus.tolist()
        self.duration_s: list[float] = jobs.duration_s.tolist()
        self.submit_s: list[float] = jobs.submit_s.tolist()
        self.preemptible: list[bool] = jobs.preemptible.tolist()
        self.priority: list[int] = jobs.priority.tolist()
        self.checkpoint_s: list[float] = jobs.checkpoint_interval_s.tolist()
        self.restart_cost_s: list[float] = jobs.restart_s.tolist()
        self.state = FleetState(fleet)
        self.placer = Placer(self.state, placement)
        self.pool, self.level = self._pools_of(fleet, jobs)
        names = sorted(set(jobs.queue))
        self.quota, ids = QuotaTree.for_queues(names, fleet.queues, fleet.cohorts, fleet.default_cohort)
        by_name = dict(zip(names, ids, strict=True))
        self.queue: list[int] = [by_name[q] for q in jobs.queue]
        self.enforce_quota = bool(getattr(policy, "enforces_quota", False))
        if self.enforce_quota:
            self._check_quota_ceilings()
        self.overhead = [0.0] * n  # restart cost paid at the start of the current run
        self.lost = [0.0] * n
        self.restarting = [0.0] * n
        self.contenders = [0] * n
        self.live = [dict() for _ in fleet.pools]  # pool -> {queue: live jobs}
        self.pending: list[dict[tuple, int]] = [dict() for _ in fleet.pools]
        self.sample_s = sample_s
        self.next_sample = [-math.inf] * len(fleet.pools)
        self.series: list[tuple] = []
        self.reasons: dict[int, list[tuple[float, str]]] | None = {} if explain else None
        self.remaining = list(self.duration_s)
        self.run_since = [-1.0] * n
        # numpy mirrors of what ranking preemption victims reads, for whole-set arithmetic
        self.np_run_since = np.full(n, -1.0)
        self.np_overhead = np.zeros(n)
        self.np_checkpoint = jobs.checkpoint_interval_s.astype(float)
        self.np_gpus = jobs.gpus.astype(float)
        self.last_stop = [NAN] * n
        self.first_start = [NAN] * n
        self.end = [NAN] * n
        self.preemptions = [0] * n
        self.placement: list[Placement | None] = [None] * n
        self.last_placement: list[Placement | None] = [None] * n
        self.token = [0] * n
        self.failed_from: dict[tuple, tuple[int, int]] = {}
        self.next_wake = [math.inf] * len(fleet.pools)
        self.progress = progress
        self.log: list[tuple] | None = [] if record else None

    def _pools_of(self, fleet: Fleet, jobs: JobTable) -> tuple[list[int], list[int | None]]:
        """Each job's pool and required topology level; refuses jobs that can never fit."""
        cache: dict[str, int | None] = {}
        pools: list[int] = []
        levels: list[int | None] = []
        largest: dict[tuple[int, int], int] = {}
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
            level = self._level(p, jobs.topology[i])
            if level is not None:
                if (p, level) not in largest:
                    largest[p, level] = self.placer.domain_gpus(p, level)
                if jobs.gpus[i] > largest[p, level]:
                    raise InputError(
                        f"job '{jobs.job_id[i]}' asks {int(jobs.gpus[i])} GPUs in one {jobs.topology[i]} "
                        f"but the largest in pool '{fleet.pools[p]}' has {largest[p, level]}",
                        source=jobs.source,
                        line=jobs.where(i),
                        field="topology",
                    )
            pools.append(p)
            levels.append(level)
        return pools, levels

    def _check_quota_ceilings(self) -> None:
        jobs = self.jobs
        ceiling: dict[int, float] = {}
        for i, q in enumerate(self.queue):
            if q not in ceiling:
                ceiling[q] = self.quota.ceiling(q)
            if self.gpus[i] > ceiling[q]:
                raise InputError(
                    f"job '{jobs.job_id[i]}' asks {self.gpus[i]} GPUs but queue '{jobs.queue[i]}' can "
                    f"never hold more than {ceiling[q]:g} (its quota plus what it may borrow)",
                    source=jobs.source,
                    line=jobs.where(i),
                    field="gpus",
                )

    def _level(self, pool: int, topology: str) -> int | None:
        if not topology:
            return None
        if topology != "nvlink":
            return LEVELS[topology]
        hosts = self.fleet.pool_hosts[pool]
        kind = self.fleet.gpu_names[int(self.fleet.host_gpu_type[hosts[0]])]
        return HOST if gpu_model(kind).nvlink_domain_gpus <= int(self.fleet.host_gpus[hosts].max()) else RACK

    # --- checkpoint arithmetic -----------------------------------------------------------

    def useful_s(self, job: int, now: float) -> float:
        """Useful work done in the current run (after the restart cost), 0 when not running."""
        since = self.run_since[job]
        return max(0.0, now - since - self.overhead[job]) if since >= 0.0 else 0.0

    def saved_s(self, job: int, useful: float) -> float:
        """Of `useful` seconds of this run, what the last checkpoint holds."""
        interval = self.checkpoint_s[job]
        return useful if interval <= 0.0 else math.floor(useful / interval + 1e-9) * interval

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
                self._arrive(job)
                policy.submitted(job)
                touched.add(pool[job])
            for p in sorted(touched):
                for decision in policy.decide(p):
                    if type(decision) is Start:
                        seq += 1
                        self._start(decision.job, decision.placement, now, heap, seq)
                    elif type(decision) is Preempt:
                        self._preempt(decision.job, now, decision.why, decision.by)
                    elif type(decision) is Hold:
                        self._hold(decision.job, now, decision.reason)
                    elif type(decision) is Wake:
                        if now < decision.at_s < self.next_wake[decision.pool]:
                            self.next_wake[decision.pool] = decision.at_s
                            seq += 1
                            heapq.heappush(heap, (decision.at_s, seq, WAKE, decision.pool, 0))
                    else:
                        raise TypeError(f"unknown decision {decision!r}")
                if now >= self.next_sample[p]:
                    self._sample(p, now)
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
            lost_s=np.asarray(self.lost),
            restart_s=np.asarray(self.restarting),
            contenders=np.asarray(self.contenders),
            series=np.asarray(self.series, dtype=float).reshape(-1, 5),
            reasons=self.reasons,
            log=self.log,
        )

    # --- bookkeeping the policy never sees -----------------------------------------------

    def _arrive(self, job: int) -> None:
        live = self.live[self.pool[job]]
        q = self.queue[job]
        live[q] = live.get(q, 0) + 1
        self.contenders[job] = len(live)
        self._pend(job, +1)

    def _pend(self, job: int, delta: int) -> None:
        counts = self.pending[self.pool[job]]
        key = (self.gpus[job], self.level[job])
        left = counts.get(key, 0) + delta
        if left:
            counts[key] = left
        else:
            del counts[key]

    def fragmented_gpus(self, pool: int) -> int:
        """Free GPUs no pending job can use although some pending job fits them by count:
        every such job is blocked by topology, not by capacity. 0 otherwise."""
        free = self.state.pool_free[pool]
        sizes = sorted((k for k in self.pending[pool] if k[0] <= free), key=lambda k: (k[0], k[1] or 0))
        if not sizes:
            return 0
        for gpus, level in sizes:
            if self.placer.find(pool, gpus, False, level) is not None:
                return 0
        return free

    def _sample(self, pool: int, now: float) -> None:
        free = self.state.pool_free[pool]
        busy = self.fleet.pool_gpus[pool] - free
        self.series.append((now, pool, busy, free, self.fragmented_gpus(pool)))
        self.next_sample[pool] = now + self.sample_s

    def _hold(self, job: int, now: float, reason: str) -> None:
        if self.reasons is None:
            return
        history = self.reasons.setdefault(job, [])
        if not history or history[-1][1] != reason:
            history.append((now, reason))

    def _start(self, job: int, placement: Placement, now: float, heap: list, seq: int) -> None:
        if self.run_since[job] >= 0.0 or not math.isnan(self.end[job]):
            raise AllocationError(f"job {job} started twice")
        if sum(g for _, g in placement) != self.gpus[job]:
            raise AllocationError(f"job {job} needs {self.gpus[job]} GPUs, placement gives {placement}")
        if now < self.submit_s[job]:
            raise AllocationError(f"job {job} started before it was submitted")
        if self.enforce_quota:
            over = self.quota.blocked(self.queue[job], self.gpus[job])
            if over is not None:
                raise AllocationError(f"job {job} started {over}")
        self.quota.add(self.queue[job], self.gpus[job])
        self.state.allocate(self.pool[job], placement)
        self._pend(job, -1)
        overhead = self.restart_cost_s[job] if self.preemptions[job] else 0.0
        self.overhead[job] = self.np_overhead[job] = overhead
        self.placement[job] = placement
        self.last_placement[job] = placement
        self.run_since[job] = self.np_run_since[job] = now
        if math.isnan(self.first_start[job]):
            self.first_start[job] = now
        self.token[job] += 1
        end = now + self.overhead[job] + self.remaining[job]
        heapq.heappush(heap, (end, seq, FINISH, job, self.token[job]))
        if self.reasons is not None:
            self._hold(job, now, "running")
        if self.log is not None:
            self.log.append((now, "start", job, placement))

    def _preempt(self, job: int, now: float, why: str = "", by: int = -1) -> None:
        if self.run_since[job] < 0.0:
            raise AllocationError(f"job {job} preempted while not running")
        if not self.preemptible[job]:
            raise AllocationError(f"job {job} is not preemptible")
        self.state.release(self.pool[job], self.placement[job])  # type: ignore[arg-type]
        self.quota.add(self.queue[job], -self.gpus[job])
        useful = self.useful_s(job, now)
        saved = self.saved_s(job, useful)
        self.lost[job] += useful - saved
        self.restarting[job] += min(now - self.run_since[job], self.overhead[job])
        self.remaining[job] -= saved
        self.run_since[job] = self.np_run_since[job] = -1.0
        self._pend(job, +1)
        self.last_stop[job] = now
        self.placement[job] = None
        self.preemptions[job] += 1
        self.token[job] += 1
        if self.reasons is not None:
            self._hold(job, now, f"preempted: {why}")
        if self.log is not None:
            self.log.append((now, "stop", job, (by, useful - saved)))

    def _complete(self, job: int, now: float) -> None:
        self.state.release(self.pool[job], self.placement[job])  # type: ignore[arg-type]
        self.quota.add(self.queue[job], -self.gpus[job])
        live = self.live[self.pool[job]]
        q = self.queue[job]
        live[q] -= 1
        if not live[q]:
            del live[q]
        self.remaining[job] = 0.0
        self.run_since[job] = self.np_run_since[job] = -1.0
        self.placement[job] = None
        self.end[job] = now
        if self.reasons is not None:
            self._hold(job, now, "finished")
        if self.log is not None:
            self.log.append((now, "end", job, None))
