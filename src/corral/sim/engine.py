"""The simulator's mechanism: a clock, an event heap merged with the sorted stream of
submissions, and the generators of failures, maintenance and lent capacity. Every change to
the cluster goes through the shared cluster state (state/cluster.py); every choice is the
policy's (scheduling/). Deterministic: ties break on sequence numbers, never on hashes.

All events at one instant are applied first (completions, then submissions), then each pool
they touched gets one scheduling pass.

Failures (reliability/failures.py) stop the jobs on a host without warning, so a job that
only saves on preemption loses its whole run; planned maintenance and capacity lent to
another use let them save first.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from corral.errors import InputError
from corral.fleet import Fleet
from corral.mechanism.driver import Driver, NoEffects
from corral.reliability.ettr import daly_interval_s, mtbf_s, young_interval_s
from corral.reliability.failures import FailureModel
from corral.scheduling.hosts import drain_order, hosts_to_lend, spare_for
from corral.scheduling.policy import Policy
from corral.state.allocation import Placement
from corral.state.cluster import CANCELLED, DONE, FUTURE, PENDING, RUNNING_, ClusterState
from corral.state.gates import Gates
from corral.state.placement import PlacementConfig
from corral.state.reasons import Reason
from corral.state.runs import RunLog
from corral.workload import JobTable

FINISH, WAKE, FAIL, REPAIR, MAINTAIN, LEND, RESERVE = 0, 1, 2, 3, 4, 5, 6
PLANNED = -1  # the cause index of a planned (maintenance) interruption
RECLAIM = -2  # hosts taken back for another use (serving): jobs save first, as for maintenance
HORIZON_RUNS, HORIZON_SLACK_S = 20, 30 * 86400.0  # with failures: give up after 20x the longest job
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
    restart_s: np.ndarray  # time spent restarting after preemptions and failures, seconds per job
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
    reasons: dict[int, list[tuple[float, Reason]]] | None = field(default=None, repr=False)
    log: list[tuple] | None = field(default=None, repr=False)
    runs: RunLog = field(default_factory=RunLog, repr=False)  # every run of every job

    def reason_text(self, reason: Reason) -> str:
        """A recorded reason as people read it: jobs named by their ids."""
        return reason.render(self.jobs.job_id)


class Engine(NoEffects):
    """The simulator: the clock and the event heap around the shared driver, whose
    effects it is (a start pushes the job's end, a wake its event, a pass a sample)."""

    def __init__(
        self,
        fleet: Fleet,
        jobs: JobTable,
        policy: Policy,
        placement: PlacementConfig | None = None,
        progress: Callable[[int, int], None] | None = None,
        record: bool = False,
        explain: bool = False,
        explain_jobs: set[int] | None = None,
        sample_s: float = SAMPLE_S,
        failures: FailureModel | None = None,
        lending: list[tuple[float, int, int]] | None = None,
    ) -> None:
        self.fleet = fleet
        self.jobs = jobs
        self.policy = policy
        self.placement_config = placement
        self.cluster = ClusterState(fleet, placement, policy.enforces_quota, explain, record)
        self.cluster.add_jobs(jobs)
        self.cluster.explained = explain_jobs
        self.sample_s = sample_s
        self.next_sample = [-math.inf] * len(fleet.pools)
        self.series: list[tuple] = []
        self.progress = progress
        self.failures = failures
        self.by_cause: dict[int, dict[str, int]] = {}
        self.failure_log: list[tuple[float, int, str, int]] = []
        self.lost_by_cause: dict[str, float] = {}
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
        self.heap: list[tuple] = []
        self.seq = 0
        self.events = 0
        self.done = 0
        self.now = 0.0
        self.began = 0.0

    def _push(self, at_s: float, kind: int, what: int, token: int = 0) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (at_s, self.seq, kind, what, token))

    # --- the run -------------------------------------------------------------------------

    def run(self, until_ended: set[int] | None = None) -> SimResult:
        """The whole run; or, with `until_ended`, only until those jobs have ended (their
        history is then complete, and the rest of the result is partial: what explaining a
        job needs, without simulating what comes after it)."""
        self.begin()
        if until_ended:
            status = self.cluster.has_ended
            self.advance(done=lambda: all(status(j) for j in until_ended))
        else:
            self.advance()
        return self.result(partial=bool(until_ended))

    def begin(self) -> None:
        """Bind the policy and seed the generators: the state at time 0, before any event."""
        self.began = time.perf_counter()
        n = len(self.jobs)
        self.order = np.lexsort((np.arange(n), self.jobs.submit_s)).tolist()
        self.nxt = 0
        self.driver = Driver(self.cluster, self.policy, self)
        self.reserved_until_s = -math.inf  # reservation windows applied up to then
        for at_s in self.cluster.reservations.boundaries():
            self._push(at_s, RESERVE, 0)
        if self.failures is not None:
            self.rng = np.random.default_rng(self.failures.seed)
            self._next_failure(0.0)
            self._next_maintenance(0.0)
        for i, (at, _, _) in enumerate(self.lending):
            self._push(at, LEND, i)
        # Failures and repairs go on for ever: the run ends when every job has finished, or
        # fails loudly when failures outpace repairs so that some job can never finish.
        self.horizon = math.inf
        if self.failures is not None and n:
            self.horizon = (
                max(self.cluster.submit_s) + HORIZON_RUNS * max(self.cluster.duration_s) + HORIZON_SLACK_S
            )

    def advance(self, until_s: float = math.inf, done: Callable[[], bool] | None = None) -> None:
        """Apply every instant up to and including `until_s` (all of them by default), each
        with its scheduling passes; stop early once `done()`."""
        n = len(self.jobs)
        submit = self.cluster.submit_s
        order = self.order
        heap = self.heap
        while self.nxt < n or (heap and self.done < n):
            if done is not None and done():
                return
            if (
                heap
                and heap[0][0] > self.horizon
                and (self.nxt >= n or submit[order[self.nxt]] > self.horizon)
            ):
                raise InputError(
                    f"{n - self.done} jobs still unfinished after {self.horizon / 86400:,.0f} simulated "
                    "days: failures outpace repairs (too few spare hosts for a job as large as the fleet?)",
                    field="spares_per_pod",
                )
            t_submit = submit[order[self.nxt]] if self.nxt < n else math.inf
            now = heap[0][0] if heap and heap[0][0] <= t_submit else t_submit
            if now > until_s:
                return
            self._instant(now)

    def _instant(self, now: float) -> None:
        cluster, driver, heap = self.cluster, self.driver, self.heap
        wakes = driver.wakes
        self.now = cluster.view.now_s = now
        touched: set[int] = set()
        events = 0
        windows = False
        attempts, status = cluster.attempts, cluster.status
        while heap and heap[0][0] == now:
            _, _, kind, job, tok = heapq.heappop(heap)
            if kind == FINISH:
                if tok != attempts[job] or status[job] != RUNNING_:  # (a later run, or stopped since)
                    continue
                events += 1
                touched.add(driver.complete(job, now))
                self.done += 1
            elif kind == WAKE:  # for pool `job`
                if wakes.get(job) == now:
                    del wakes[job]
                    events += 1
                    touched.add(job)
            elif kind == LEND:
                events += 1
                touched |= self._lend(job, now)
            elif kind == RESERVE:  # (applied after the instant's other events: a job ending now ends)
                events += 1
                windows = True
            else:
                events += 1
                touched |= self._reliability_event(kind, job, tok, now)
        if windows:
            touched |= driver.reservations_due(self.reserved_until_s, now)
            self.reserved_until_s = now
        submit, order, n = cluster.submit_s, self.order, len(self.jobs)
        while self.nxt < n and submit[order[self.nxt]] == now:
            job = order[self.nxt]
            self.nxt += 1
            if status[job] == CANCELLED:  # (withdrawn before it arrived)
                continue
            events += 1
            touched.add(driver.submit(job, now))
        self.events += events
        driver.decide(touched, now)
        if self.progress is not None and self.done % max(1, n // 200) == 0 and self.done:
            self.progress(self.done, n)

    def decide_at(self, now_s: float, pools: set[int]) -> None:
        """Apply every instant up to `now_s`, then pass `pools` at `now_s`: for a mechanism
        outside the engine that changed what its policy will decide (a capacity broker's
        target for an elastic job)."""
        self.advance(now_s)
        self.now = self.cluster.view.now_s = max(self.now, now_s)
        self.driver.decide(pools, self.now, widen=False)

    def stop(self, job: int, graceful: bool = True) -> None:
        """Stop running `job` now (between instants): its GPUs are taken back for another use
        by a mechanism outside the engine. It saves first when `graceful` (else it keeps its
        last completed checkpoint) and waits again."""
        self.driver.interrupt(job, self.now, graceful)

    def withdraw(self, job: int) -> None:
        """Cancel `job` now (between instants): a waiting job never starts, a running one is
        killed and frees exactly its GPUs, which its pool's next pass may give away at once."""
        arrived = self.cluster.status[job] != FUTURE
        self.driver.withdraw(job, self.now)
        self.done += 1
        if arrived:
            self.driver.decide({self.cluster.pool[job]}, self.now)

    def replace(
        self,
        cluster: ClusterState,
        policy: Policy,
        policy_state: Any = None,
        outcomes: dict[str, bool] | None = None,
    ) -> None:
        """Carry on from `cluster` (the state exported and restored) under a fresh `policy`:
        it is bound, told of every live job in arrival order (`submitted` if it waits,
        `adopt` if it runs) and given back the state it exported. `outcomes`: how jobs the
        gates may wait on ended, where the state does not say (a live job that failed)."""
        self.cluster, self.policy = cluster, policy
        cluster.view.now_s = self.now
        driver = self.driver
        driver.bind(cluster, policy)
        arrived = set(self.order[: self.nxt])
        live = sorted(
            (
                j
                for j, s in enumerate(cluster.status)
                if s in (PENDING, RUNNING_) or (s == FUTURE and j in arrived)  # (held by a gate)
            ),
            key=lambda j: (cluster.submit_s[j], j),
        )
        driver.gates = Gates()
        for j, s in enumerate(cluster.status):
            if s in (DONE, CANCELLED):
                driver.gates.known(cluster.job_id[j], s == DONE)
        for job_id, succeeded in (outcomes or {}).items():  # (a live cluster's, failures too)
            driver.gates.known(job_id, succeeded)
        driver.take_over(live, self.now)
        if policy_state is not None:
            self.driver.restore(policy_state)

    def result(self, partial: bool = False) -> SimResult:
        """The record of the run (`partial`: stopped before every job finished)."""
        cluster, n, now = self.cluster, len(self.jobs), self.now
        if self.progress is not None:
            self.progress(n, n)
        unfinished = [i for i in range(n) if math.isnan(cluster.end[i])]
        if unfinished and not partial:
            raise RuntimeError(f"policy {self.policy.name} left {len(unfinished)} jobs unfinished")
        for host, since in self.down_since.items():
            self.down_gpu_s += (now - since) * int(self.fleet.host_gpus[host])
        for host, since in self.lent_since.items():
            self.lent_gpu_s += (now - since) * int(self.fleet.host_gpus[host])
        for pool_id in list(self.lend_short):
            self._short(pool_id, 0, now)
        return SimResult(
            policy=self.policy.name,
            fleet=self.fleet,
            jobs=self.jobs,
            pool=np.asarray(cluster.pool),
            start_s=np.asarray(cluster.first_start),
            end_s=np.asarray(cluster.end),
            preemptions=np.asarray(cluster.preemptions),
            hosts=[";".join(str(h) for h, _ in p) if p else "" for p in cluster.last_placement],
            events=self.events,
            wall_s=time.perf_counter() - self.began,
            lost_s=np.asarray(cluster.lost),
            restart_s=np.asarray(cluster.restarting),
            contenders=np.asarray(cluster.contenders),
            series=np.asarray(self.series, dtype=float).reshape(-1, 5),
            interruptions=np.asarray(cluster.interruptions),
            unexpected=np.asarray(cluster.unexpected),
            checkpoint_s=np.asarray(cluster.writing),
            interval_s=np.asarray(cluster.checkpoint_s),
            by_cause=self.by_cause,
            failures=self.failure_log,
            lost_by_cause=self.lost_by_cause,
            down_gpu_s=self.down_gpu_s,
            end_of_run_s=now,
            lent_gpu_s=self.lent_gpu_s,
            lend_short_gpu_s=self.lend_short_gpu_s,
            reasons=cluster.reasons,
            log=cluster.log,
            runs=cluster.runs,
        )

    # --- the driver's effects -------------------------------------------------------------

    def starting(self, job: int, placement: Placement, now_s: float) -> None:
        """A run's checkpoint interval, where the failure model sets it, before it starts."""
        cluster = self.cluster
        if self.failures is not None and self.failures.checkpoint != "fixed" and cluster.write_s[job] > 0:
            cluster.set_interval(job, self._interval_s(job, len(placement)))

    def started(self, job: int, end_s: float, now_s: float) -> None:
        self._push(end_s, FINISH, job, self.cluster.attempts[job])

    resized = started

    def woken(self, pool: int, at_s: float) -> None:
        self._push(at_s, WAKE, pool)

    def passed(self, pool: int, now_s: float) -> None:
        if now_s >= self.next_sample[pool]:
            self._sample(pool, now_s)

    def cancelled(self, job: int, why: str, now_s: float) -> None:
        self.done += 1

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
        return rule(self.cluster.write_s[job], mtbf)

    def _sample(self, pool: int, now: float) -> None:
        cluster = self.cluster
        free = cluster.alloc.pool_free[pool]
        busy = cluster.fleet.pool_gpus[pool] - free
        self.series.append((now, pool, busy, free, cluster.fragmented_gpus(pool)))
        self.next_sample[pool] = now + self.sample_s

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
                self.cluster.alloc.take_out(h)
            self.spares[pod] = spares
        for p in range(len(self.fleet.pools)):
            if self.cluster.alloc.pool_free[p] <= 0:
                raise InputError(f"spares leave pool '{self.fleet.pools[p]}' no GPUs", field="spares_per_pod")
        largest = [self.cluster.alloc.pool_free[p] for p in self.cluster.pool]
        for i, (g, cap) in enumerate(zip(self.cluster.gpus, largest, strict=True)):
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
            if (
                pod in self.spares
                and len(self.spares[pod]) < model.spares_per_pod
                and not self.cluster.waiting_sizes[pool]
            ):
                self.spares[pod].append(host)  # refills the pod's spares unless a job waits for hosts
            else:
                self.cluster.alloc.put_back(host)
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
            self.cluster.alloc.put_back(host)
        if len(lent) < want:
            cluster = self.cluster
            running = [j for h in self.fleet.pool_hosts[pool].tolist() for j in cluster.on_host.get(h, ())]
            victims = iter(drain_order(cluster.view, running))
            while len(lent) < want:
                self._take_idle(pool, want - len(lent), now)
                if len(lent) >= want:
                    break
                victim = next(victims, None)
                if victim is None:
                    break
                self._interrupt(victim, now, RECLAIM, requeue=True)
        self._short(pool, want - len(lent), now)
        return touched

    def _take_idle(self, pool: int, need: int, now: float) -> None:
        """Lend up to `need` idle hosts of the pool (scheduling.hosts decides which)."""
        alloc = self.cluster.alloc
        idle = ~alloc.out & (alloc.free == self.fleet.host_gpus)
        for host in hosts_to_lend(self.cluster.view, pool, idle, need):
            alloc.take_out(host)
            self.lent[pool].append(host)
            self.lent_since[host] = now

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
        elif not self.cluster.alloc.out[host]:
            self.cluster.alloc.take_out(host)
        self.down_since[host] = now
        self._push(now + repair_s, REPAIR, host)

    def _stop_hosts(
        self, hosts: list[int], now: float, cause: int, repair_s: float, touched: set[int]
    ) -> int:
        """Stop every job on `hosts` and take them down until repaired; each job restarts on
        spares (one per lost host, of the lost host's pod) if enough are left, or waits to be
        placed again. Returns how many jobs were stopped."""
        cluster = self.cluster
        jobs = sorted({j for h in hosts for j in cluster.on_host.get(h, ())})
        for job in jobs:
            self._interrupt(job, now, cause, requeue=False)
        for h in hosts:
            self._down(h, now, repair_s)
        lost = set(hosts)
        pods, pools = self.fleet.host_pod, self.fleet.host_pool
        for job in jobs:
            placement = cluster.last_placement[job]
            assert placement is not None
            taken = {
                h: spare_for(cluster.view, self.spares, pools, job, int(pods[h]))
                for h, _ in placement
                if h in lost
            }
            if all(s is not None for s in taken.values()):
                for spare in taken.values():
                    cluster.alloc.put_back(spare)  # type: ignore[arg-type]
                moved = tuple((taken.get(h, h), g) for h, g in placement)
                self.driver.restart(job, moved, now)  # the policy still counts it as running
            else:
                for spare in taken.values():  # not enough: give back what was taken
                    if spare is not None:
                        self.spares[int(pods[spare])].append(spare)
                self.driver.requeue(job)
                touched.add(cluster.pool[job])
        return len(jobs)

    def _interrupt(self, job: int, now: float, cause: int, requeue: bool) -> None:
        """A failure (cause >= 0) loses the work since the last completed checkpoint; planned
        maintenance and reclaim let the job save first. With `requeue` the job waits again;
        otherwise the caller restarts it on spares or requeues it."""
        graceful = cause in (PLANNED, RECLAIM)
        if graceful:
            name = "planned" if cause == PLANNED else "reclaimed"
        else:
            name = self.failures.causes[cause].name  # type: ignore[union-attr]
        lost = self.driver.interrupt(job, now, graceful, requeue)
        counts = self.by_cause.setdefault(job, {})
        counts[name] = counts.get(name, 0) + 1
        self.lost_by_cause[name] = self.lost_by_cause.get(name, 0.0) + lost * self.cluster.gpus[job]
        if self.cluster.log is not None:
            self.cluster.log.append((now, "fail", job, (name, lost)))
