"""The event loop: a heap of (time, seq, kind, job, token) tuples merged with the sorted
stream of submissions. Deterministic: ties break on sequence numbers, never on hashes.

All events at one instant are applied first (completions, then submissions), then each pool
they touched gets one scheduling pass.

Preemption follows checkpoints: a job saves its state every `checkpoint_interval_s` of useful
work (0: on preemption), each save blocking it for `checkpoint_write_s`; it loses the work
since its last completed checkpoint when stopped, and pays `restart_s` before useful work
resumes. Failures (reliability/failures.py) stop the jobs on a host without warning, so a job
that only saves on preemption loses its whole run; planned maintenance lets them save first.
Quotas are accounted here (the mechanism), and checked on every start of a policy that
enforces them.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from corral.errors import InputError
from corral.fleet import Fleet
from corral.hardware import gpu as gpu_model
from corral.reliability.ettr import daly_interval_s, mtbf_s, young_interval_s
from corral.reliability.failures import FailureModel
from corral.scheduling.placement import HOST, LEVELS, RACK, PlacementConfig, Placer
from corral.scheduling.policy import Hold, Policy, Preempt, Start, Wake
from corral.scheduling.quota import QuotaTree
from corral.sim.allocation import AllocationError, FleetState, Placement
from corral.workload import JobTable

FINISH, WAKE, FAIL, REPAIR, MAINTAIN, LEND = 0, 1, 2, 3, 4, 5
PLANNED = -1  # the cause index of a planned (maintenance) interruption
RECLAIM = -2  # hosts taken back for another use (serving): jobs save first, as for maintenance
HORIZON_RUNS, HORIZON_SLACK_S = 20, 30 * 86400.0  # with failures: give up after 20x the longest job
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
    interruptions: np.ndarray  # failures and maintenance that stopped each job
    unexpected: np.ndarray  # of which failures
    checkpoint_s: np.ndarray  # time each job spent blocked writing checkpoints
    interval_s: np.ndarray  # each job's checkpoint interval in its last run
    by_cause: dict[int, dict[str, int]]  # job -> {cause: interruptions}, jobs interrupted only
    failures: list[tuple[float, int, str, int]]  # (time_s, host, cause, jobs stopped)
    lost_by_cause: dict[str, float]  # GPU-seconds of work lost per cause ("planned" included)
    down_gpu_s: float  # GPU-seconds hosts spent failed or in maintenance
    end_of_run_s: float  # when the last job finished
    lent_gpu_s: float = 0.0  # GPU-seconds hosts spent lent out (the `lending` schedule)
    lend_short_gpu_s: float = 0.0  # GPU-seconds the schedule asked for but no host could be freed
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
        self.host_gpus = engine.fleet.host_gpus

    def pool_hosts(self, pool: int) -> np.ndarray:
        return self._e.fleet.pool_hosts[pool]

    def pool_gpus(self, pool: int) -> int:
        return self._e.fleet.pool_gpus[pool]

    def free_gpus(self, pool: int) -> int:
        return self._e.state.pool_free[pool]

    def max_host_gpus(self, pool: int) -> int:
        """The most GPUs of one host in `pool`: a job of no more goes on a single host."""
        return self._e.state.pool_max_host_gpus[pool]

    def is_running(self, job: int) -> bool:
        return self._e.run_since[job] >= 0.0

    def remaining_s(self, job: int) -> float:
        e = self._e
        return e.remaining[job] if e.run_since[job] < 0.0 else e.remaining[job] - e.useful_s(job, self.now_s)

    def run_s(self, job: int) -> float:
        """How long waiting `job` would run if started now: its remaining work, the checkpoint
        writes on the way and, if it ran before, its restart cost (what the engine charges)."""
        e = self._e
        again = e.preemptions[job] or e.interruptions[job]
        return (e.restart_cost_s[job] if again else 0.0) + e.wall_s(job, e.remaining[job])

    def cheapest_first(self, jobs: Sequence[int] | np.ndarray) -> np.ndarray:
        """Running `jobs` ordered by what preempting each would lose: GPU-seconds since its
        last checkpoint, then the least useful work in its current run, then job number."""
        e = self._e
        idx = np.asarray(jobs, dtype=np.int64)
        if not len(idx):
            return idx
        elapsed = np.maximum(0.0, self.now_s - e.np_run_since[idx] - e.np_overhead[idx])
        interval = e.np_checkpoint[idx]
        cycle = np.where(interval > 0, interval + e.np_write[idx], 1.0)
        done = np.floor(elapsed / cycle + 1e-9)
        useful = np.where(
            interval > 0, done * interval + np.minimum(elapsed - done * cycle, interval), elapsed
        )
        saved = np.where(interval > 0, done * interval, useful)
        lost = (useful - saved) * e.np_gpus[idx]
        return idx[np.lexsort((idx, useful, lost))]

    def placement_of(self, job: int) -> Placement | None:
        return self._e.placement[job]

    def free_vector(self) -> np.ndarray:
        return self._e.state.free.copy()

    def free_with(self, jobs: Sequence[int] | np.ndarray) -> np.ndarray:
        """The free-GPU vector once the running `jobs` released theirs (jobs on one host,
        the common case, added at once)."""
        e = self._e
        free = e.state.free.copy()
        idx = np.asarray(jobs, dtype=np.int64)
        hosts = e.np_host[idx]
        one = hosts >= 0
        np.add.at(free, hosts[one], e.np_gpus[idx[one]].astype(np.int64))
        for job in idx[~one].tolist():
            for host, gpus in e.placement[job]:  # type: ignore[union-attr]
                free[host] += gpus
        return free

    def place_on(self, job: int, free: np.ndarray) -> Placement | None:
        e = self._e
        return e.placer.find(e.pool[job], self.gpus[job], False, e.level[job], free)

    def executed_s(self, job: int) -> float:
        return self.duration_s[job] - self.remaining_s(job)

    def last_stop_s(self, job: int) -> float:
        return self._e.last_stop[job]

    def contenders(self, job: int) -> int:
        """Queues with live jobs in the job's pool when it arrived (Themis' N)."""
        return self._e.contenders[job]

    def unplaceable_from(self, pool: int, level: int | None) -> float:
        """The fewest GPUs found unplaceable in `pool` at `level` since GPUs were last
        released there (inf if none, or if waiting jobs may be placed relaxed)."""
        epoch = self.release_epoch(pool)
        floor = self._e.failed_from.get((pool, level, False))
        return floor[1] if epoch is not None and floor is not None and floor[0] == epoch else math.inf

    def release_epoch(self, pool: int) -> int | None:
        """A count that moves whenever GPUs return to `pool` (a job stops, a host comes
        back): a placement that failed cannot succeed before it moves. None when waiting
        jobs may be placed relaxed, which also changes with time alone."""
        e = self._e
        return None if e.placer.config.relax_after_s is not None else e.state.release_epoch[pool]

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
        failures: FailureModel | None = None,
        lending: list[tuple[float, int, int]] | None = None,
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
        self.write_s: list[float] = jobs.checkpoint_write_s.tolist()
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
        self.np_write = jobs.checkpoint_write_s.astype(float)
        self.np_gpus = jobs.gpus.astype(float)
        self.np_host = np.full(n, -1, dtype=np.int64)  # the host of a job running on one host, else -1
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
        self.failures = failures
        self.interruptions = [0] * n
        self.unexpected = [0] * n
        self.writing = [0.0] * n
        self.by_cause: dict[int, dict[str, int]] = {}
        self.failure_log: list[tuple[float, int, str, int]] = []
        self.lost_by_cause: dict[str, float] = {}
        self.on_host: dict[int, set[int]] = {}
        self.down_since: dict[int, float] = {}
        self.down_gpu_s = 0.0
        self.spares: dict[int, list[int]] = {}  # pod -> idle spare hosts
        self.host_s_seen = 0.0  # host-seconds of exposure and failures seen, for `adaptive`
        self.failures_seen = 0
        if failures is not None:
            self._set_aside_spares()
        # (time_s, pool, hosts to hold out of the pool from then on), for capacity lent to
        # another use; a reclaim stops the cheapest preemptible jobs, which save first.
        self.lending = sorted(lending or [])
        self.lent: dict[int, list[int]] = {}
        self.lent_since: dict[int, float] = {}
        self.lend_short: dict[int, tuple[int, float]] = {}  # pool -> (hosts missing, since)
        self.lent_gpu_s = self.lend_short_gpu_s = 0.0
        for _, pool_id, hosts in self.lending:
            if not 0 <= pool_id < len(fleet.pools) or not 0 <= hosts <= len(fleet.pool_hosts[pool_id]):
                raise InputError(f"cannot lend {hosts} hosts of pool {pool_id}", field="lending")

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

    def run_parts(self, job: int, now: float) -> tuple[float, float, float]:
        """Of the current run up to `now` (after the restart cost): useful seconds, the
        useful seconds the last completed checkpoint holds (a job with no interval holds
        everything, since it saves when stopped gracefully), and seconds spent writing."""
        since = self.run_since[job]
        if since < 0.0:
            return 0.0, 0.0, 0.0
        elapsed = max(0.0, now - since - self.overhead[job])
        interval, write = self.checkpoint_s[job], self.write_s[job]
        if interval <= 0.0:
            return elapsed, elapsed, 0.0
        done = math.floor(elapsed / (interval + write) + 1e-9)
        into = elapsed - done * (interval + write)
        return (
            done * interval + min(into, interval),
            done * interval,
            done * write + max(0.0, into - interval),
        )

    def useful_s(self, job: int, now: float) -> float:
        return self.run_parts(job, now)[0]

    def wall_s(self, job: int, useful: float) -> float:
        """Running time that `useful` seconds take, with a checkpoint write every interval
        (none after the last useful second)."""
        interval, write = self.checkpoint_s[job], self.write_s[job]
        if interval <= 0.0 or write <= 0.0 or useful <= 0.0:
            return useful
        return useful + (math.ceil(useful / interval - 1e-9) - 1) * write

    def _push(self, at_s: float, kind: int, what: int, token: int = 0) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (at_s, self.seq, kind, what, token))

    def run(self) -> SimResult:
        began = time.perf_counter()
        n = len(self.jobs)
        order = np.lexsort((np.arange(n), self.jobs.submit_s)).tolist()
        submit = self.submit_s
        pool = self.pool
        policy = self.policy
        view = _EngineView(self)
        policy.bind(view, len(self.fleet.pools))
        self.heap: list[tuple] = []
        heap = self.heap
        self.seq = 0
        nxt = 0
        events = 0
        done = 0
        report_every = max(1, n // 200)
        token = self.token
        if self.failures is not None:
            self.rng = np.random.default_rng(self.failures.seed)
            self._next_failure(0.0)
            self._next_maintenance(0.0)
        for i, (at, _, _) in enumerate(self.lending):
            self._push(at, LEND, i)
        now = 0.0
        # Failures and repairs go on for ever: the run ends when every job has finished, or
        # fails loudly when failures outpace repairs so that some job can never finish.
        horizon = math.inf
        if self.failures is not None and n:
            horizon = max(submit) + HORIZON_RUNS * max(self.duration_s) + HORIZON_SLACK_S
        while nxt < n or (heap and done < n):
            if heap and heap[0][0] > horizon and (nxt >= n or submit[order[nxt]] > horizon):
                raise InputError(
                    f"{n - done} jobs still unfinished after {horizon / 86400:,.0f} simulated days: failures "
                    "outpace repairs (too few spare hosts for a job as large as the fleet?)",
                    field="spares_per_pod",
                )
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
                elif kind == WAKE:  # for pool `job`
                    if self.next_wake[job] == now:
                        self.next_wake[job] = math.inf
                        events += 1
                        touched.add(job)
                elif kind == LEND:
                    events += 1
                    touched |= self._lend(job, now)
                else:
                    events += 1
                    touched |= self._reliability_event(kind, job, tok, now)
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
                        self._start(decision.job, decision.placement, now)
                    elif type(decision) is Preempt:
                        self._preempt(decision.job, now, decision.why, decision.by)
                    elif type(decision) is Hold:
                        self._hold(decision.job, now, decision.reason)
                    elif type(decision) is Wake:
                        if now < decision.at_s < self.next_wake[decision.pool]:
                            self.next_wake[decision.pool] = decision.at_s
                            self._push(decision.at_s, WAKE, decision.pool)
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
        for host, since in self.down_since.items():
            self.down_gpu_s += (now - since) * int(self.fleet.host_gpus[host])
        for host, since in self.lent_since.items():
            self.lent_gpu_s += (now - since) * int(self.fleet.host_gpus[host])
        for pool_id in list(self.lend_short):
            self._short(pool_id, 0, now)
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
            interruptions=np.asarray(self.interruptions),
            unexpected=np.asarray(self.unexpected),
            checkpoint_s=np.asarray(self.writing),
            interval_s=np.asarray(self.checkpoint_s),
            by_cause=self.by_cause,
            failures=self.failure_log,
            lost_by_cause=self.lost_by_cause,
            down_gpu_s=self.down_gpu_s,
            end_of_run_s=now,
            lent_gpu_s=self.lent_gpu_s,
            lend_short_gpu_s=self.lend_short_gpu_s,
            reasons=self.reasons,
            log=self.log,
        )

    # --- failures, repairs and maintenance -----------------------------------------------

    def _set_aside_spares(self) -> None:
        """Keep the last `spares_per_pod` hosts of each pod out of scheduling as hot spares."""
        k = self.failures.spares_per_pod  # type: ignore[union-attr]
        if k == 0:
            return
        pods = self.fleet.host_pod
        for pod in np.unique(pods).tolist():
            hosts = np.flatnonzero(pods == pod)
            if len(hosts) <= k:
                raise InputError(
                    f"{k} spares per pod leave no host to schedule in pod {pod} of fleet '{self.fleet.name}'",
                    field="spares_per_pod",
                )
            spares = hosts[-k:].tolist()
            for h in spares:
                self.state.take_out(h)
            self.spares[pod] = spares
        for p in range(len(self.fleet.pools)):
            if self.state.pool_free[p] <= 0:
                raise InputError(f"spares leave pool '{self.fleet.pools[p]}' no GPUs", field="spares_per_pod")
        largest = [self.state.pool_free[p] for p in self.pool]
        for i, (g, cap) in enumerate(zip(self.gpus, largest, strict=True)):
            if g > cap:
                raise InputError(
                    f"job '{self.jobs.job_id[i]}' asks {g} GPUs but only {cap} are left besides the spares",
                    source=self.jobs.source,
                    line=self.jobs.where(i),
                    field="gpus",
                )

    def _next_failure(self, now: float) -> None:
        model = self.failures
        rate = model.rate_per_host_s * len(self.fleet.host_gpus)  # type: ignore[union-attr]
        if rate > 0:
            host = int(self.rng.integers(len(self.fleet.host_gpus)))
            cause = int(self.rng.choice(len(model.causes), p=model.shares))  # type: ignore[union-attr]
            self._push(now + float(self.rng.exponential(1.0 / rate)), FAIL, host, cause)

    def _next_maintenance(self, now: float) -> None:
        model = self.failures
        if model.maintenance_per_day > 0:  # type: ignore[union-attr]
            gap = float(self.rng.exponential(86400.0 / model.maintenance_per_day))  # type: ignore[union-attr]
            first = int(self.rng.integers(len(self.fleet.host_gpus)))
            self._push(now + gap, MAINTAIN, first)

    def _reliability_event(self, kind: int, host: int, cause: int, now: float) -> set[int]:
        """Apply a failure, repair or maintenance window; the pools that need a pass."""
        model = self.failures
        assert model is not None
        touched: set[int] = set()
        if kind == FAIL:
            self._next_failure(now)
            self._expose(now)
            if host in self.down_since:
                return touched  # a failed host does not fail again (Poisson per host that is up)
            self.failures_seen += 1
            name = model.causes[cause].name
            repair_s = float(self.rng.exponential(model.causes[cause].repair_s))
            hit = self._stop_hosts([host], now, cause, repair_s, touched)
            self.failure_log.append((now, host, name, hit))
        elif kind == MAINTAIN:
            self._next_maintenance(now)
            last = min(len(self.fleet.host_gpus), host + model.maintenance_hosts)
            batch = [h for h in range(host, last) if h not in self.down_since]
            self._stop_hosts(batch, now, PLANNED, model.maintenance_s, touched)
        else:  # REPAIR
            self.down_gpu_s += (now - self.down_since.pop(host)) * int(self.fleet.host_gpus[host])
            pod = int(self.fleet.host_pod[host])
            pool = int(self.fleet.host_pool[host])
            if pod in self.spares and len(self.spares[pod]) < model.spares_per_pod and not self.pending[pool]:
                self.spares[pod].append(host)  # refills the pod's spares unless a job waits for hosts
            else:
                self.state.put_back(host)
                touched.add(int(self.fleet.host_pool[host]))
        return touched

    # --- capacity lent to another use ----------------------------------------------------

    def _lend(self, idx: int, now: float) -> set[int]:
        """Hold `hosts` of the pool out from now: give back the surplus, or take idle hosts
        and then stop the preemptible jobs that lose least (cheapest first) until enough
        hosts are idle. Jobs never stopped: the non-preemptible ones."""
        _, pool, want = self.lending[idx]
        lent = self.lent.setdefault(pool, [])
        touched = {pool}
        while len(lent) > want:
            host = lent.pop()
            self.lent_gpu_s += (now - self.lent_since.pop(host)) * int(self.fleet.host_gpus[host])
            self.state.put_back(host)
        if len(lent) < want:
            view = _EngineView(self)
            view.now_s = now
            running = [j for h in self.fleet.pool_hosts[pool].tolist() for j in self.on_host.get(h, ())]
            victims = iter(view.cheapest_first(sorted({j for j in running if self.preemptible[j]})).tolist())
            while len(lent) < want:
                self._take_idle(pool, want - len(lent), now)
                if len(lent) >= want:
                    break
                victim = next(victims, None)
                if victim is None:
                    break
                self._interrupt(victim, now, RECLAIM)
                self.policy.interrupted(victim)
        self._short(pool, want - len(lent), now)
        return touched

    def _take_idle(self, pool: int, need: int, now: float) -> None:
        """Lend up to `need` idle hosts of the pool, highest-numbered first (best fit packs
        jobs onto the lowest)."""
        state, cap = self.state, self.fleet.host_gpus
        for host in reversed(self.fleet.pool_hosts[pool].tolist()):
            if need <= 0:
                return
            if not state.out[host] and state.free[host] == cap[host]:
                state.take_out(host)
                self.lent[pool].append(host)
                self.lent_since[host] = now
                need -= 1

    def _short(self, pool: int, missing: int, now: float) -> None:
        """Account GPU-seconds the schedule asked for but could not have (non-preemptible
        jobs held the hosts)."""
        before, since = self.lend_short.pop(pool, (0, now))
        gpus = int(self.fleet.host_gpus[self.fleet.pool_hosts[pool][0]])
        self.lend_short_gpu_s += before * gpus * (now - since)
        if missing > 0:
            self.lend_short[pool] = (missing, now)

    def _expose(self, now: float) -> None:
        """Host-seconds of exposure up to now (all hosts; failed ones are few), for `adaptive`."""
        self.host_s_seen = now * len(self.fleet.host_gpus)

    def _down(self, host: int, now: float, repair_s: float) -> None:
        pod = int(self.fleet.host_pod[host])
        if host in self.spares.get(pod, ()):
            self.spares[pod].remove(host)
        elif not self.state.out[host]:
            self.state.take_out(host)
        self.down_since[host] = now
        self._push(now + repair_s, REPAIR, host)

    def _stop_hosts(
        self, hosts: list[int], now: float, cause: int, repair_s: float, touched: set[int]
    ) -> int:
        """Stop every job on `hosts` and take them down until repaired; each job restarts on
        spares (one per lost host, of the lost host's pod) if enough are left, or waits to be
        placed again. Returns how many jobs were stopped."""
        jobs = sorted({j for h in hosts for j in self.on_host.get(h, ())})
        for job in jobs:
            self._interrupt(job, now, cause)
        for h in hosts:
            self._down(h, now, repair_s)
        lost = set(hosts)
        for job in jobs:
            placement = self.last_placement[job]
            assert placement is not None
            taken = {h: self._spare_for(job, int(self.fleet.host_pod[h])) for h, _ in placement if h in lost}
            if all(s is not None for s in taken.values()):
                for spare in taken.values():
                    self.state.put_back(spare)  # type: ignore[arg-type]
                moved = tuple((taken.get(h, h), g) for h, g in placement)
                self._start(job, moved, now)  # type: ignore[arg-type]  # the policy still counts it as running
            else:
                for spare in taken.values():  # not enough: give back what was taken
                    if spare is not None:
                        self.spares[int(self.fleet.host_pod[spare])].append(spare)
                self.policy.interrupted(job)
                touched.add(self.pool[job])
        return len(jobs)

    def _spare_for(self, job: int, pod: int) -> int | None:
        """A spare of the failed host's pod; for a job with no topology rule, of any pod of
        its pool when that pod has none left."""
        if self.spares.get(pod):
            return self.spares[pod].pop(0)
        if self.level[job] is None:
            for hosts in self.spares.values():
                if hosts and int(self.fleet.host_pool[hosts[0]]) == self.pool[job]:
                    return hosts.pop(0)
        return None

    def _interrupt(self, job: int, now: float, cause: int) -> None:
        """A failure (cause >= 0) loses the work since the last completed checkpoint; planned
        maintenance lets the job save first."""
        useful, saved, writing = self.run_parts(job, now)
        if cause in (PLANNED, RECLAIM):
            saved = useful
            name = "planned" if cause == PLANNED else "reclaimed"
        else:
            saved = saved if self.checkpoint_s[job] > 0.0 else 0.0
            name = self.failures.causes[cause].name  # type: ignore[union-attr]
            self.unexpected[job] += 1
        self.interruptions[job] += 1
        counts = self.by_cause.setdefault(job, {})
        counts[name] = counts.get(name, 0) + 1
        self.lost_by_cause[name] = self.lost_by_cause.get(name, 0.0) + (useful - saved) * self.gpus[job]
        self._stop(job, now, useful, saved, writing)
        if self.log is not None:
            self.log.append((now, "fail", job, (name, useful - saved)))

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

    def _start(self, job: int, placement: Placement, now: float) -> None:
        if self.run_since[job] >= 0.0 or not math.isnan(self.end[job]):
            raise AllocationError(f"job {job} started twice")
        if sum(g for _, g in placement) != self.gpus[job]:
            raise AllocationError(f"job {job} needs {self.gpus[job]} GPUs, placement gives {placement}")
        if now < self.submit_s[job]:
            raise AllocationError(f"job {job} started before it was submitted")
        if self.enforce_quota and self.gpus[job] > self.quota.headroom(self.queue[job]) + 1e-6:
            over = self.quota.blocked(self.queue[job], self.gpus[job])  # (the exact walk, to word it)
            if over is not None:
                raise AllocationError(f"job {job} started {over}")
        self.quota.add(self.queue[job], self.gpus[job])
        self.state.allocate(self.pool[job], placement)
        for host, _ in placement:
            self.on_host.setdefault(host, set()).add(job)
        self._pend(job, -1)
        again = self.preemptions[job] or self.interruptions[job]
        overhead = self.restart_cost_s[job] if again else 0.0
        self.overhead[job] = self.np_overhead[job] = overhead
        if self.failures is not None and self.failures.checkpoint != "fixed" and self.write_s[job] > 0:
            self.checkpoint_s[job] = self.np_checkpoint[job] = self._interval_s(job, len(placement))
        self.placement[job] = placement
        self.np_host[job] = placement[0][0] if len(placement) == 1 else -1
        self.last_placement[job] = placement
        self.run_since[job] = self.np_run_since[job] = now
        if math.isnan(self.first_start[job]):
            self.first_start[job] = now
        self.token[job] += 1
        self._push(now + overhead + self.wall_s(job, self.remaining[job]), FINISH, job, self.token[job])
        if self.reasons is not None:
            self._hold(job, now, "running")
        if self.log is not None:
            self.log.append((now, "start", job, placement))

    def _interval_s(self, job: int, hosts: int) -> float:
        """Young's or Daly's interval for this run, from the configured failure rate or, for
        `adaptive`, the rate seen so far (one failure at the configured rate as the prior)."""
        model = self.failures
        assert model is not None
        rate = model.rate_per_1000_node_days
        if model.checkpoint == "adaptive" and rate > 0:
            prior_s = 1.0 / model.rate_per_host_s
            rate *= (self.failures_seen + 1) / (self.host_s_seen + prior_s) * prior_s
        mtbf = mtbf_s(hosts, rate)
        if math.isinf(mtbf):
            return self.jobs.checkpoint_interval_s[job] or math.inf
        rule = young_interval_s if model.checkpoint == "young" else daly_interval_s
        return rule(self.write_s[job], mtbf)

    def _stop(self, job: int, now: float, useful: float, saved: float, writing: float) -> None:
        """Release a running job's GPUs and quota, keeping `saved` seconds of its run."""
        self._release(job)
        self.lost[job] += useful - saved
        self.restarting[job] += min(now - self.run_since[job], self.overhead[job])
        self.writing[job] += writing
        self.remaining[job] -= saved
        self.run_since[job] = self.np_run_since[job] = -1.0
        self.last_stop[job] = now
        self.placement[job] = None
        self.np_host[job] = -1
        self.token[job] += 1
        self._pend(job, +1)

    def _preempt(self, job: int, now: float, why: str = "", by: int = -1) -> None:
        if self.run_since[job] < 0.0:
            raise AllocationError(f"job {job} preempted while not running")
        if not self.preemptible[job]:
            raise AllocationError(f"job {job} is not preemptible")
        useful, saved, writing = self.run_parts(job, now)
        self._stop(job, now, useful, saved, writing)
        self.preemptions[job] += 1
        if self.reasons is not None:
            self._hold(job, now, f"preempted: {why}")
        if self.log is not None:
            self.log.append((now, "stop", job, (by, useful - saved)))

    def _release(self, job: int) -> None:
        """Give a running job's GPUs and quota back."""
        placement = self.placement[job]
        self.state.release(self.pool[job], placement)  # type: ignore[arg-type]
        for host, _ in placement:  # type: ignore[union-attr]
            self.on_host[host].discard(job)
        self.quota.add(self.queue[job], -self.gpus[job])

    def _complete(self, job: int, now: float) -> None:
        self._release(job)
        self.writing[job] += self.run_parts(job, now)[2]
        live = self.live[self.pool[job]]
        q = self.queue[job]
        live[q] -= 1
        if not live[q]:
            del live[q]
        self.remaining[job] = 0.0
        self.run_since[job] = self.np_run_since[job] = -1.0
        self.placement[job] = None
        self.np_host[job] = -1
        self.end[job] = now
        if self.reasons is not None:
            self._hold(job, now, "finished")
        if self.log is not None:
            self.log.append((now, "end", job, None))
