"""The cluster state both mechanisms apply decisions to: jobs as growable columns, who holds
which GPUs, quota accounting and the run ledger, changed only through transitions.

    submit      a registered job arrives and waits
    start       a waiting job takes GPUs (quota checked where the policy enforces it)
    preempt     a policy stops it; it keeps its last checkpoint (all, if it saves on stop)
    interrupt   a host under it was lost or drained; graceful stops save first
    complete    it finished its work
    withdraw    cancelled while waiting, or killed while running
    resize      an elastic job's run ends at a checkpoint and restarts at a new size
    adopt       a job found running (a restart, or a live agent's report)
    report_checkpoint / settle
                a live job's own checkpoint reports replace the model: what a stop keeps
    add_host / remove_host

No clock: every transition is told `now`. No I/O: `export` gives plain data (JSON-able) and
`ClusterState.restore` rebuilds the same state from it.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import numpy as np

from corral.errors import InputError
from corral.fleet import Fleet, Segment
from corral.hardware import gpu as gpu_model
from corral.quota import QuotaTree
from corral.state.allocation import AllocationError, FleetState, GpuIds, Placement
from corral.state.checkpoint import run_parts, wall_s
from corral.state.elastic import ELASTIC_COLUMNS, elastic_columns, speed
from corral.state.gates import GATE_COLUMNS, gate_columns
from corral.state.placement import HOST, LEVELS, RACK, PlacementConfig, Placer
from corral.state.reasons import (
    BY_POLICY,
    FINISHED,
    HOST_DRAINED,
    HOST_FAILED,
    QUEUED,
    RUNNING,
    WITHDRAWN,
    Reason,
)
from corral.state.reservations import Reservation, Reservations, pick_hosts
from corral.state.runs import CANCELLED as RUN_CANCELLED
from corral.state.runs import COMPLETED, DRAINED, FAILED, PREEMPTED, RESIZED, RunLog
from corral.state.view import ClusterView
from corral.windows import ReservationSpec
from corral.workload import JobTable, parse_number

FUTURE, PENDING, RUNNING_, DONE, CANCELLED = 0, 1, 2, 3, 4
NAN = math.nan
# job columns a job is registered with, as exported
SPEC = (
    "job_id",
    "submit_s",
    "ref_gpus",
    "duration_s",
    "estimate_s",
    "queue_name",
    "priority",
    "preemptible",
    "checkpoint_s",
    "write_s",
    "restart_cost_s",
    "topology",
    "min_gpus",
    "max_gpus",
    "step_gpus",
    "scaling",
    "after",
    "array_job",
    "array_limit",
)
# what the run ledger keeps per job, as exported
LEDGER = (
    "status",
    "contenders",
    "remaining",
    "run_since",
    "overhead",
    "first_start",
    "end",
    "last_stop",
    "preemptions",
    "interruptions",
    "unexpected",
    "lost",
    "restarting",
    "writing",
    "attempts",
    "expected_end",
    "reported",
    "kept",
    "resizes",
    "gpus",
    "rate",
    "kept_rate",
    "released_s",
    "released_rank",
)


class Column:
    """A numpy column that grows by doubling: vectorised reads index it by job number."""

    def __init__(self, values: np.ndarray) -> None:
        self.a = values
        self.n = len(values)

    def extend(self, values: np.ndarray) -> None:
        need = self.n + len(values)
        if need > len(self.a):
            grown = np.empty(max(need, 2 * len(self.a), 16), dtype=self.a.dtype)
            grown[: self.n] = self.a[: self.n]
            self.a = grown
        self.a[self.n : need] = values
        self.n = need


class ClusterState:
    def __init__(
        self,
        fleet: Fleet,
        placement: PlacementConfig | None = None,
        enforce_quota: bool = False,
        explain: bool = False,
        record: bool = False,
    ) -> None:
        self.fleet = fleet
        self.added: list[Segment] = []  # hosts added since `fleet` was configured
        self.alloc = FleetState(fleet)
        self.placer = Placer(self.alloc, placement)
        self.removed: set[int] = set()
        self.quota = QuotaTree(list(fleet.queues.values()), fleet.cohorts)
        self.queue_id = {name: i for i, name in enumerate(self.quota.names[: len(self.quota.specs)])}
        self.enforce_quota = enforce_quota
        # job spec columns
        self.job_id: list[str] = []
        self.index: dict[str, int] = {}
        self.submit_s: list[float] = []
        # what a job holds while it runs, else what it asks for; an elastic job's changes
        self.gpus: list[int] = []
        self.ref_gpus: list[int] = []  # the size its duration refers to (what it asked)
        self.min_gpus: list[int] = []
        self.max_gpus: list[int] = []
        self.step_gpus: list[int] = []
        self.scaling: list[float] = []
        # dependencies ("J:ok J2:any"), array and array limit: what the driver's gates read
        self.after: list[str] = []
        self.array_job: list[str] = []
        self.array_limit: list[int] = []
        self.depended: set[str] = set()  # the jobs some job depends on
        self.duration_s: list[float] = []
        self.estimate_s: list[float] = []
        self.queue_name: list[str] = []
        self.queue: list[int] = []
        self.pool: list[int] = []
        self.level: list[int | None] = []
        self.topology: list[str] = []
        self.priority: list[int] = []
        self.preemptible: list[bool] = []
        self.checkpoint_s: list[float] = []
        self.write_s: list[float] = []
        self.restart_cost_s: list[float] = []
        # the run ledger. Work (remaining, lost, kept) is in seconds at the size a job asked
        # for; a run at another size does `rate` of them per second.
        self.status: list[int] = []
        self.contenders: list[int] = []
        self.remaining: list[float] = []
        self.rate: list[float] = []  # of the current (or next) run
        self.kept_rate: list[float] = []  # of the last stopped run, for its late reports
        self.resizes: list[int] = []
        self.run_since: list[float] = []
        self.overhead: list[float] = []  # restart cost paid at the start of the current run
        self.first_start: list[float] = []
        self.end: list[float] = []
        self.last_stop: list[float] = []
        self.preemptions: list[int] = []
        self.interruptions: list[int] = []
        self.unexpected: list[int] = []
        self.lost: list[float] = []
        self.restarting: list[float] = []
        self.writing: list[float] = []
        self.attempts: list[int] = []  # starts so far: a live attempt's number
        # when a gate let a job through (NaN: no gate held it), and, for one held at its
        # arrival, the how-manieth such (else 0): the policy saw it then, not at submission
        self.released_s: list[float] = []
        self.released_rank: list[int] = []
        self.expected_end: list[float] = []  # of a running job, if nothing stops it
        # how long a job would run if started now (the view's `run_s`; NaN: not worked out
        # since its work left or checkpoint interval last changed), asked pass after pass
        self.run_estimate: list[float] = []
        self.revisions = 0  # changes to waiting jobs' work left besides stops (live reports)
        # Live jobs that report their checkpoints: the useful seconds of the current run the
        # last report holds (NaN: the job never reported; the checkpoint model applies)
        self.reported: list[float] = []
        self.kept: list[float] = []  # useful seconds the last stopped run kept
        self.placement: list[Placement | None] = []
        self.last_placement: list[Placement | None] = []
        self.gpu_ids: list[GpuIds | None] = []
        # numpy mirrors of what ranking preemption victims reads, for whole-set arithmetic
        self.np_run_since = Column(np.zeros(0))
        self.np_overhead = Column(np.zeros(0))
        self.np_checkpoint = Column(np.zeros(0))
        self.np_write = Column(np.zeros(0))
        self.np_gpus = Column(np.zeros(0))
        self.np_host = Column(np.zeros(0, dtype=np.int64))  # the host of a job on one host, else -1
        self.np_reported = Column(np.zeros(0))
        self.live: list[dict[int, int]] = [{} for _ in fleet.pools]  # pool -> {queue: live jobs}
        # free GPUs per pool that elastic jobs may not grow into: what a broker expects
        # services to want back within its lending horizon (a mechanism sets it)
        self.reserved: list[int] = [0] * len(fleet.pools)
        self.waiting_sizes: list[dict[tuple, int]] = [{} for _ in fleet.pools]  # (gpus, level) -> jobs
        self.on_host: dict[int, set[int]] = {}
        self.failed_from: dict[tuple, tuple[int, int]] = {}  # placement failures since GPUs came back
        self.failed_whole: dict[tuple, tuple[int, int]] = {}  # of whole hosts, since one became free
        self.reasons: dict[int, list[tuple[float, Reason]]] | None = {} if explain else None
        self.explained: set[int] | None = None  # where reasons are recorded for these jobs only
        self.log: list[tuple] | None = [] if record else None
        self.runs = RunLog()
        self.reservations = Reservations()
        for spec in fleet.reservations:
            self.add_reservation(spec)
        self.view = ClusterView(self)

    def __len__(self) -> int:
        return len(self.job_id)

    # --- registering jobs, queues and hosts ----------------------------------------------

    def add_jobs(self, jobs: JobTable, whole: bool = True) -> range:
        """Register every job of `jobs` (not yet arrived: `submit` each when it does).
        Refuses, naming the file, line and field, a job whose queue has no pool, that asks
        for more GPUs than its pool, its topology domain or (where quotas bind) its queue
        can ever hold, or (where `jobs` is `whole`, not a live cluster's latest arrivals)
        that depends on a job neither here nor registered before."""
        first = len(self.job_id)
        n = len(jobs)
        ids = list(jobs.job_id)
        seen = set(self.index)
        for i, job_id in enumerate(ids):
            if job_id in seen:
                raise InputError(
                    f"job '{job_id}' is already known", source=jobs.source, line=jobs.where(i), field="job_id"
                )
            seen.add(job_id)
        names = sorted(set(jobs.queue) - set(self.queue_id))
        for name in names:  # (a refused table registers no job; the queues it names stay known)
            self.add_queue(name)
        gates = gate_columns(jobs, set(self.index) if whole else None)
        pools, levels = self._pools_of(jobs)
        queue = [self.queue_id[q] for q in jobs.queue]
        if self.enforce_quota:
            self._check_ceilings(jobs, queue)
        self.index.update((job_id, first + i) for i, job_id in enumerate(ids))
        duration = jobs.duration_s.tolist()
        elastic = elastic_columns(jobs)
        self.job_id += ids
        self.submit_s += jobs.submit_s.tolist()
        self.gpus += jobs.gpus.tolist()
        self.ref_gpus += jobs.gpus.tolist()
        self.min_gpus += elastic.min_gpus
        self.max_gpus += elastic.max_gpus
        self.step_gpus += elastic.step_gpus
        self.scaling += elastic.scaling
        self.after += [" ".join(f"{d}:{k}" for d, k in deps) for deps in gates.after]
        self.array_job += gates.array_job
        self.array_limit += gates.array_limit
        self.depended.update(dep for deps in gates.after for dep, _ in deps)
        self.duration_s += duration
        self.estimate_s += self._estimates(jobs, duration)
        self.queue_name += list(jobs.queue)
        self.queue += queue
        self.pool += pools
        self.level += levels
        self.topology += list(jobs.topology)
        self.priority += jobs.priority.tolist()
        self.preemptible += jobs.preemptible.tolist()
        self.checkpoint_s += jobs.checkpoint_interval_s.tolist()
        self.write_s += jobs.checkpoint_write_s.tolist()
        self.restart_cost_s += jobs.restart_s.tolist()
        self.status += [FUTURE] * n
        self.contenders += [0] * n
        self.remaining += duration
        self.run_since += [-1.0] * n
        self.overhead += [0.0] * n
        for column in (
            self.first_start,
            self.end,
            self.last_stop,
            self.expected_end,
            self.reported,
            self.run_estimate,
        ):
            column += [NAN] * n
        self.released_s += [NAN] * n
        self.released_rank += [0] * n
        for column in (self.preemptions, self.interruptions, self.unexpected, self.attempts, self.resizes):
            column += [0] * n
        self.rate += [1.0] * n
        self.kept_rate += [1.0] * n
        for column in (self.lost, self.restarting, self.writing, self.kept):
            column += [0.0] * n
        for column in (self.placement, self.last_placement, self.gpu_ids):
            column += [None] * n
        self.np_run_since.extend(np.full(n, -1.0))
        self.np_overhead.extend(np.zeros(n))
        self.np_checkpoint.extend(jobs.checkpoint_interval_s.astype(float))
        self.np_write.extend(jobs.checkpoint_write_s.astype(float))
        self.np_gpus.extend(jobs.gpus.astype(float))
        self.np_host.extend(np.full(n, -1, dtype=np.int64))
        self.np_reported.extend(np.full(n, NAN))
        return range(first, first + n)

    @staticmethod
    def _estimates(jobs: JobTable, duration: list[float]) -> list[float]:
        """The `estimate_s` column where a job gives one (a number > 0), else its duration."""
        given = jobs.extra.get("estimate_s")
        if given is None:
            return duration
        out = []
        for i, (text, d) in enumerate(zip(given, duration, strict=True)):
            if not str(text).strip():
                out.append(d)
                continue
            out.append(
                parse_number(str(text), jobs.source, jobs.where(i) or 0, "estimate_s", 0.0, strict=True)
            )
        return out

    def add_queue(self, name: str) -> int:
        """A queue jobs name but the configuration does not list: it borrows only (nominal
        0) in the default cohort, or has no quota at all where there is none."""
        if name not in self.queue_id:
            self.queue_id[name] = self.quota.add_queue(name, self.fleet.default_cohort)
        return self.queue_id[name]

    def _pools_of(self, jobs: JobTable) -> tuple[list[int], list[int | None]]:
        """Each job's pool and required topology level; refuses jobs that can never fit."""
        fleet = self.fleet
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

    def _check_ceilings(self, jobs: JobTable, queue: list[int]) -> None:
        ceiling: dict[int, float] = {}
        for i, q in enumerate(queue):
            if q not in ceiling:
                ceiling[q] = self.quota.ceiling(q)
            if jobs.gpus[i] > ceiling[q]:
                raise InputError(
                    f"job '{jobs.job_id[i]}' asks {int(jobs.gpus[i])} GPUs but queue '{jobs.queue[i]}' can "
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

    def add_reservation(self, spec: ReservationSpec, names: list[str] | None = None) -> Reservation:
        """Hold hosts of `spec.pool` over its window (`names`: the hosts' names, where it
        gives names). Raises InputError if the pool or hosts are not there."""
        fleet = self.fleet
        if spec.pool not in fleet.pools:
            raise InputError(f"reservation '{spec.name}': no pool '{spec.pool}'", field="pool")
        pool_hosts = fleet.pool_hosts[fleet.pools.index(spec.pool)]
        hosts = pick_hosts(spec, pool_hosts, fleet.host_gpus, names or [])
        reservation = Reservation(spec, hosts)
        self.reservations.add(reservation)
        return reservation

    def barred_hosts(self, job: int, now_s: float) -> np.ndarray | None:
        """The hosts reservations keep `job` off at `now_s` (None: none): by its estimate
        of the work it has left, and its queue."""
        if not self.reservations:
            return None
        left = max(0.0, self.estimate_s[job] - (self.duration_s[job] - self.remaining[job]))
        return self.reservations.barred(self.queue_name[job], left, now_s)

    def add_hosts(self, segment: Segment) -> range:
        """Hosts that join an existing pool (a node registers, capacity is bought): appended
        after every existing host, idle, in racks and pods of their own."""
        if segment.pool not in self.fleet.pools:
            raise InputError(f"pool '{segment.pool}' is not in fleet '{self.fleet.name}'", field="pool")
        first = len(self.fleet.host_gpus)
        fleet = Fleet(
            self.fleet.name,
            [*self.fleet.segments, segment],
            self.fleet.default_pool,
            list(self.fleet.queues.values()),
            self.fleet.cohorts,
            self.fleet.default_cohort,
            self.fleet.reservations,
        )
        self.fleet = fleet
        self.added.append(segment)
        self.alloc.grow(fleet)
        self.placer.grow(fleet)
        self.failed_from.clear()
        self.failed_whole.clear()
        return range(first, len(fleet.host_gpus))

    def remove_host(self, host: int, now: float) -> list[int]:
        """Take `host` out for good (decommissioned, or its agent is gone): the jobs on it are
        interrupted without a save, as a failure would, and returned to be placed again."""
        if host in self.removed or not 0 <= host < len(self.fleet.host_gpus):
            raise InputError(f"host {host} is not in the fleet", field="host")
        jobs = sorted(self.on_host.get(host, ()))
        for job in jobs:
            self.interrupt(job, now, graceful=False)
        if not self.alloc.out[host]:
            self.alloc.reopen(host)  # (a cordoned host: its hidden GPUs go out with it)
            self.alloc.take_out(host)
        self.removed.add(host)
        return jobs

    # --- transitions ---------------------------------------------------------------------

    def submit(self, job: int, now_s: float | None = None) -> None:
        """Registered `job` arrives and waits (`now_s`: when a gate let it through, if after
        its submission)."""
        if self.status[job] != FUTURE:
            raise AllocationError(f"job {self.job_id[job]} submitted twice")
        self.status[job] = PENDING
        live = self.live[self.pool[job]]
        q = self.queue[job]
        live[q] = live.get(q, 0) + 1
        self.contenders[job] = len(live)
        self._wait(job, +1)
        if self.reasons is not None:
            self.hold(job, self.submit_s[job] if now_s is None else now_s, QUEUED)

    def seen_order(self, job: int) -> tuple[float, int, int]:
        """Where `job` comes in the order its policy was told of arrivals: by submission, a
        job a gate held by when it was let through, before the jobs submitted at that
        instant (a face applies ends before arrivals)."""
        rank = self.released_rank[job]
        if not rank:
            return self.submit_s[job], 1, job
        return self.released_s[job], 0, rank

    def _wait(self, job: int, delta: int) -> None:
        counts = self.waiting_sizes[self.pool[job]]
        key = (self.gpus[job], self.level[job])
        left = counts.get(key, 0) + delta
        if left:
            counts[key] = left
        else:
            del counts[key]

    def start(
        self, job: int, placement: Placement, now: float, ids: GpuIds | None = None, extra_s: float = 0.0
    ) -> float:
        """Give waiting `job` the GPUs of `placement` (at `ids`, else the lowest free indices),
        after `extra_s` of overhead besides a restart's; returns when it will end if nothing
        stops it."""
        if self.status[job] != PENDING:
            raise AllocationError(f"job {job} started while not waiting")
        size = sum(g for _, g in placement)
        if size != self.gpus[job]:
            if self.min_gpus[job] == self.max_gpus[job]:
                raise AllocationError(f"job {job} needs {self.gpus[job]} GPUs, placement gives {placement}")
            self._set_size(job, size)
        if now < self.submit_s[job]:
            raise AllocationError(f"job {job} started before it was submitted")
        if self.enforce_quota and self.gpus[job] > self.quota.headroom(self.queue[job]) + 1e-6:
            over = self.quota.blocked(self.queue[job], self.gpus[job])  # (the exact walk, to word it)
            if over is not None:
                raise AllocationError(f"job {job} started {over}")
        taken = self.alloc.allocate(self.pool[job], placement, ids)
        self.quota.add(self.queue[job], self.gpus[job])
        for host, _ in placement:
            self.on_host.setdefault(host, set()).add(job)
        self._wait(job, -1)
        self.status[job] = RUNNING_
        again = self.preemptions[job] or self.interruptions[job] or self.resizes[job]
        overhead = (self.restart_cost_s[job] if again else 0.0) + extra_s
        self.overhead[job] = self.np_overhead.a[job] = overhead
        self.placement[job] = self.last_placement[job] = placement
        self.gpu_ids[job] = taken
        self.np_host.a[job] = placement[0][0] if len(placement) == 1 else -1
        self.run_since[job] = self.np_run_since.a[job] = now
        if not math.isnan(self.reported[job]):  # (a new run has saved nothing of its own yet)
            self.reported[job] = self.np_reported.a[job] = 0.0
        if math.isnan(self.first_start[job]):
            self.first_start[job] = now
        self.attempts[job] += 1
        self.rate[job] = speed(self.gpus[job], self.ref_gpus[job], self.scaling[job])
        run = self.wall_s(job, self.remaining[job] / self.rate[job])
        self.expected_end[job] = now + (overhead + run)
        if self.reasons is not None:
            self.hold(job, now, RUNNING)
        self.runs.begin(job, now, placement)
        if self.log is not None:
            self.log.append((now, "start", job, placement))
        return now + overhead + run

    def adopt(self, job: int, placement: Placement, since_s: float, ids: GpuIds | None = None) -> float:
        """`job` is found running on `placement` since `since_s` (its attempt was committed
        and launched before a restart, or an agent reports it): hold its GPUs as `start`
        would have, without a quota check (it runs already). Returns its expected end."""
        if self.status[job] == FUTURE:
            self.submit(job)
        enforce, self.enforce_quota = self.enforce_quota, False
        try:
            return self.start(job, placement, since_s, ids)
        finally:
            self.enforce_quota = enforce

    def resume(self, job: int, worked_s: float, stops: int, stopped_s: float = NAN) -> None:
        """Registered `job` ran before, `stops` times stopped after `worked_s` of work kept
        (seconds at the size it asked for; a live cluster rebuilt from its records): it has
        that much less left. `stopped_s`: when that run was stopped (its last stop, read by
        LAS's starvation promotion)."""
        if not math.isnan(stopped_s):
            last = self.last_stop[job]
            self.last_stop[job] = stopped_s if math.isnan(last) else max(last, stopped_s)
        self.remaining[job] = max(0.0, self.remaining[job] - worked_s)
        self.preemptions[job] += stops
        self.run_estimate[job] = NAN
        self.revisions += 1
        self.kept[job] = worked_s

    def report_checkpoint(self, job: int, at_s: float) -> None:
        """`job` (live) reported a completed checkpoint at `at_s`: from now on a stop keeps
        what its reports hold rather than what the checkpoint model assumes. A running job's
        current run holds its work up to `at_s`."""
        held = 0.0
        if self.status[job] == RUNNING_:
            held = max(0.0, at_s - self.run_since[job] - self.overhead[job])
        if not math.isnan(self.reported[job]):
            held = max(held, self.reported[job])
        self.reported[job] = self.np_reported.a[job] = held

    def settle(self, job: int, kept_s: float) -> None:
        """The run `job` stopped last kept `kept_s` useful seconds (of that run's time), as
        its checkpoint reports came to say once it had ended (those written in its grace
        period count), rather than what was assumed when it was stopped."""
        delta = kept_s * self.kept_rate[job] - self.kept[job]
        if delta == 0.0:
            return
        self.kept[job] += delta
        self.lost[job] -= delta
        self.remaining[job] = max(0.0, self.remaining[job] - delta)
        self.run_estimate[job] = NAN
        self.revisions += 1
        if self.status[job] == RUNNING_:
            self.expected_end[job] -= delta / self.rate[job]

    def set_interval(self, job: int, interval_s: float) -> None:
        """How often `job` checkpoints from its next start (a rule that follows failures)."""
        self.checkpoint_s[job] = self.np_checkpoint.a[job] = interval_s
        self.run_estimate[job] = NAN

    def preempt(self, job: int, now: float, reason: Reason | None = None, by: int = -1) -> None:
        """A policy stops `job`: it keeps its last checkpoint (everything, with no interval)."""
        if self.status[job] != RUNNING_:
            raise AllocationError(f"job {job} preempted while not running")
        if not self.preemptible[job]:
            raise AllocationError(f"job {job} is not preemptible")
        useful, saved, writing = self.run_parts(job, now)
        self._stop(job, now, useful, saved, writing, PREEMPTED)
        self.preemptions[job] += 1
        if self.reasons is not None:
            if reason is None:
                reason = Reason("preempted", "preempted for job {job0}", (by,)) if by >= 0 else BY_POLICY
            self.hold(job, now, reason)
        if self.log is not None:
            self.log.append((now, "stop", job, (by, useful - saved)))

    def interrupt(self, job: int, now: float, graceful: bool) -> float:
        """A host under running `job` was lost (it keeps its last completed checkpoint, or
        nothing if it saves only on stop) or drained (`graceful`: it saves first, unless it
        reports its checkpoints: then it keeps what it reported). Returns the useful
        seconds lost."""
        if self.status[job] != RUNNING_:
            raise AllocationError(f"job {job} interrupted while not running")
        useful, saved, writing = self.run_parts(job, now)
        if graceful and math.isnan(self.reported[job]):
            saved = useful
        else:
            saved = saved if self.checkpoint_s[job] > 0.0 else 0.0
            self.unexpected[job] += 1
        self.interruptions[job] += 1
        rate = self.rate[job]
        self._stop(job, now, useful, saved, writing, DRAINED if graceful else FAILED)
        if self.reasons is not None:
            self.hold(job, now, HOST_DRAINED if graceful else HOST_FAILED)
        return (useful - saved) * rate

    def resize(
        self, job: int, placement: Placement, now: float, graceful: bool = True, ids: GpuIds | None = None
    ) -> float:
        """Elastic `job` ends its run and starts again on `placement`, of another whole
        number of steps within its bounds. `graceful`: it checkpoints first (everything
        kept; the write is paid before the new run, with the restart); else (too short a
        notice) it keeps its last completed checkpoint. A run resized at the instant it
        started has not begun: it is placed again at no cost. Returns the new expected end."""
        if self.status[job] != RUNNING_:
            raise AllocationError(f"job {job} resized while not running")
        gpus = sum(g for _, g in placement)
        if self.min_gpus[job] == self.max_gpus[job]:
            raise AllocationError(f"job {self.job_id[job]} is not elastic")
        fresh = now == self.run_since[job]
        useful, saved, writing = self.run_parts(job, now)
        write = 0.0
        if graceful and math.isnan(self.reported[job]) and not fresh:
            saved, write = useful, self.write_s[job]
        self._stop(job, now, useful, saved, writing, RESIZED)
        self.resizes[job] += not fresh
        if self.log is not None:
            self.log.append((now, "resize", job, gpus))
        return self.start(job, placement, now, ids, write)

    def _set_size(self, job: int, gpus: int) -> None:
        """Waiting elastic `job` is to run on `gpus`: a whole number of steps in its bounds."""
        lo, hi, step = self.min_gpus[job], self.max_gpus[job], self.step_gpus[job]
        if not lo <= gpus <= hi or gpus % step:
            raise AllocationError(
                f"job {self.job_id[job]} cannot run on {gpus} GPUs (elastic {lo}-{hi} in steps of {step})"
            )
        self._wait(job, -1)
        self.gpus[job] = gpus
        self.np_gpus.a[job] = float(gpus)
        self._wait(job, +1)

    def _stop(self, job: int, now: float, useful: float, saved: float, writing: float, why: str) -> None:
        """Release a running job's GPUs and quota, keeping `saved` seconds of its run."""
        self._release(job)
        self.runs.close(job, now, why, saved)
        rate = self.kept_rate[job] = self.rate[job]
        self.lost[job] += (useful - saved) * rate
        self.kept[job] = saved * rate
        self.restarting[job] += min(now - self.run_since[job], self.overhead[job])
        self.writing[job] += writing
        self.remaining[job] -= saved * rate
        self.run_estimate[job] = NAN
        if self.gpus[job] != self.ref_gpus[job]:  # (a resized job asks for its own size again)
            self.gpus[job] = self.ref_gpus[job]
            self.np_gpus.a[job] = float(self.gpus[job])
        self.run_since[job] = self.np_run_since.a[job] = -1.0
        self.last_stop[job] = now
        self.placement[job] = self.gpu_ids[job] = None
        self.expected_end[job] = NAN
        self.np_host.a[job] = -1
        self.status[job] = PENDING
        self._wait(job, +1)

    def _release(self, job: int) -> None:
        """Give a running job's GPUs and quota back."""
        placement = self.placement[job]
        self.alloc.release(self.pool[job], placement, self.gpu_ids[job])  # type: ignore[arg-type]
        for host, _ in placement:  # type: ignore[union-attr]
            self.on_host[host].discard(job)
        self.quota.add(self.queue[job], -self.gpus[job])

    def complete(self, job: int, now: float) -> None:
        if self.status[job] != RUNNING_:
            raise AllocationError(f"job {job} completed while not running")
        self._release(job)
        useful, _, writing = self.run_parts(job, now)
        self.runs.close(job, now, COMPLETED, useful)
        self.restarting[job] += min(now - self.run_since[job], self.overhead[job])
        self.writing[job] += writing
        self._leave(job, now, DONE, FINISHED)
        self.remaining[job] = 0.0
        if self.log is not None:
            self.log.append((now, "end", job, None))

    def withdraw(self, job: int, now: float) -> bool:
        """Cancel `job`: a waiting one leaves the queue, a running one is killed and frees
        exactly its GPUs and quota. Whether it was running."""
        status = self.status[job]
        if status in (DONE, CANCELLED):
            raise AllocationError(f"job {self.job_id[job]} has already ended")
        running = status == RUNNING_
        if running:
            useful, _, writing = self.run_parts(job, now)
            self._release(job)
            self.runs.close(job, now, RUN_CANCELLED, 0.0)
            self.restarting[job] += min(now - self.run_since[job], self.overhead[job])
            self.lost[job] += useful * self.rate[job]
            self.writing[job] += writing
        elif status == PENDING:
            self._wait(job, -1)
        if status != FUTURE:
            self._leave(job, now, CANCELLED, WITHDRAWN)
        else:
            self.status[job] = CANCELLED
            self.end[job] = now
        if self.log is not None:
            self.log.append((now, "withdraw", job, None))
        return running

    def _leave(self, job: int, now: float, status: int, reason: Reason) -> None:
        live = self.live[self.pool[job]]
        q = self.queue[job]
        live[q] -= 1
        if not live[q]:
            del live[q]
        self.status[job] = status
        self.run_since[job] = self.np_run_since.a[job] = -1.0
        self.placement[job] = self.gpu_ids[job] = None
        self.expected_end[job] = NAN
        self.np_host.a[job] = -1
        self.end[job] = now
        if self.reasons is not None:
            self.hold(job, now, reason)

    def hold(self, job: int, now: float, reason: Reason) -> None:
        """Record why `job` is where it is, when it changed (reasons are recorded): the last
        word at one instant stands, so a history holds no interval of zero length."""
        if self.reasons is None or (self.explained is not None and job not in self.explained):
            return
        history = self.reasons.setdefault(job, [])
        if history and history[-1][0] == now:
            history.pop()
        if not history or history[-1][1] != reason:
            history.append((now, reason))

    # --- the checkpoint model, per job ---------------------------------------------------

    def run_parts(self, job: int, now: float) -> tuple[float, float, float]:
        """Of the current run up to `now` (after its restart cost): useful seconds, those the
        last completed checkpoint holds, and seconds spent writing (checkpoint.run_parts)."""
        since = self.run_since[job]
        if since < 0.0:
            return 0.0, 0.0, 0.0
        elapsed = max(0.0, now - since - self.overhead[job])
        reported = self.reported[job]
        if not math.isnan(reported):  # (what the job's reports hold, not the model)
            return elapsed, min(reported, elapsed), 0.0
        return run_parts(elapsed, self.checkpoint_s[job], self.write_s[job])

    def wall_s(self, job: int, useful: float) -> float:
        return wall_s(useful, self.checkpoint_s[job], self.write_s[job])

    # --- queries the mechanisms use ------------------------------------------------------

    def is_running(self, job: int) -> bool:
        return self.status[job] == RUNNING_

    def has_ended(self, job: int) -> bool:
        """Whether `job` completed or was withdrawn (neither waits, runs, nor will arrive)."""
        return self.status[job] in (DONE, CANCELLED)

    def waiting_jobs(self) -> list[int]:
        """Jobs waiting, in arrival order (submit time, then job number)."""
        waiting = [j for j, s in enumerate(self.status) if s == PENDING]
        return sorted(waiting, key=lambda j: (self.submit_s[j], j))

    def fragmented_gpus(self, pool: int) -> int:
        """Free GPUs no waiting job can use although some waiting job fits them by count:
        every such job is blocked by topology, not by capacity. 0 otherwise."""
        free = self.alloc.pool_free[pool]
        sizes = sorted((k for k in self.waiting_sizes[pool] if k[0] <= free), key=lambda k: (k[0], k[1] or 0))
        if not sizes:
            return 0
        for gpus, level in sizes:
            if self.placer.find(pool, gpus, False, level) is not None:
                return 0
        return free

    # --- plain data ----------------------------------------------------------------------

    def configured_fleet(self) -> Fleet:
        """The fleet as it was configured, before the hosts `add_hosts` added (what
        `restore` takes: the export adds them again)."""
        fleet, kept = self.fleet, len(self.fleet.segments) - len(self.added)
        return Fleet(
            fleet.name, fleet.segments[:kept], fleet.default_pool, list(fleet.queues.values()),
            fleet.cohorts, fleet.default_cohort, fleet.reservations,
        )  # fmt: skip

    def export(self) -> dict[str, Any]:
        """Everything needed to rebuild this state, as plain data (lists, numbers, strings):
        the hosts added and removed and those held out, the queues, every job's spec and
        ledger, and where each running job holds which GPUs."""
        n = len(self)
        return {
            "added": [asdict(seg) for seg in self.added],
            "removed": sorted(self.removed),
            "out": np.flatnonzero(self.alloc.out).tolist(),
            "queues": list(self.queue_id),
            "spec": {name: list(getattr(self, name)) for name in SPEC},
            "ledger": {name: list(getattr(self, name)) for name in LEDGER},
            "runs": self.runs.export(),
            "gpu_ids": {
                str(j): [[h, list(ids)] for h, ids in self.gpu_ids[j]]  # type: ignore[union-attr]
                for j in range(n)
                if self.gpu_ids[j] is not None
            },
            "last_placement": {
                str(j): [list(p) for p in self.last_placement[j]]  # type: ignore[union-attr]
                for j in range(n)
                if self.last_placement[j] is not None
            },
        }

    @staticmethod
    def spec_table(spec: dict[str, Any]) -> JobTable:
        """The jobs of an export's `spec`, as a table registers them (job for job, in order)."""
        return JobTable(
            job_id=spec["job_id"],
            submit_s=np.asarray(spec["submit_s"], dtype=float),
            gpus=np.asarray(spec["ref_gpus"], dtype=np.int64),
            duration_s=np.asarray(spec["duration_s"], dtype=float),
            queue=spec["queue_name"],
            user=[""] * len(spec["job_id"]),
            kind=["experiment"] * len(spec["job_id"]),
            priority=np.asarray(spec["priority"], dtype=np.int64),
            preemptible=np.asarray(spec["preemptible"], dtype=bool),
            checkpoint_interval_s=np.asarray(spec["checkpoint_s"], dtype=float),
            restart_s=np.asarray(spec["restart_cost_s"], dtype=float),
            checkpoint_write_s=np.asarray(spec["write_s"], dtype=float),
            topology=spec["topology"],
            extra={
                "estimate_s": spec["estimate_s"],
                **{c: [str(v) for v in spec[c]] for c in ELASTIC_COLUMNS + GATE_COLUMNS if c in spec},
            },
        )

    @classmethod
    def restore(
        cls,
        fleet: Fleet,
        data: dict[str, Any],
        placement: PlacementConfig | None = None,
        enforce_quota: bool = False,
        explain: bool = False,
        record: bool = False,
    ) -> ClusterState:
        """The state `export` gave, on `fleet` as configured."""
        state = cls(fleet, placement, enforce_quota, explain, record)
        for seg in data["added"]:
            state.add_hosts(Segment(**seg))
        for name in data["queues"]:
            state.add_queue(name)
        spec = data["spec"]
        jobs = cls.spec_table(spec)
        enforce, state.enforce_quota = state.enforce_quota, False  # (checked when first registered)
        state.add_jobs(jobs, whole=False)  # (its dependencies were checked when first registered)
        state.enforce_quota = enforce
        ledger = data["ledger"]
        gpu_ids = {int(j): tuple((h, tuple(ids)) for h, ids in v) for j, v in data["gpu_ids"].items()}
        for j, status in enumerate(ledger["status"]):
            if status == FUTURE:
                continue
            state.submit(j)
            if status == RUNNING_:
                ids = gpu_ids[j]
                placement = tuple((h, len(taken)) for h, taken in ids)
                state.preemptions[j] = ledger["preemptions"][j]  # (whether a restart cost is due)
                state.interruptions[j] = ledger["interruptions"][j]
                state.resizes[j] = ledger["resizes"][j]
                state.remaining[j] = ledger["remaining"][j]
                state.adopt(j, placement, ledger["run_since"][j], ids)
            elif status in (DONE, CANCELLED):
                state._leave(j, ledger["end"][j], status, FINISHED if status == DONE else WITHDRAWN)
        for name in LEDGER:
            column = getattr(state, name)
            column[:] = ledger[name]
        for name, mirror in (
            ("run_since", state.np_run_since),
            ("overhead", state.np_overhead),
            ("reported", state.np_reported),
        ):
            mirror.a[: len(state)] = ledger[name]
        state.np_checkpoint.a[: len(state)] = spec["checkpoint_s"]
        state.np_gpus.a[: len(state)] = state.gpus
        for j, p in data["last_placement"].items():
            state.last_placement[int(j)] = tuple((h, g) for h, g in p)
        for host in data["removed"]:
            state.removed.add(host)
        for host in data["out"]:
            if not state.alloc.out[host]:
                state.alloc.take_out(host)
        state.runs = RunLog.restore(data["runs"])  # (adopting running jobs opened runs again)
        state.run_estimate[:] = [NAN] * len(state)
        if state.reasons is not None:
            state.reasons.clear()
        if state.log is not None:
            state.log.clear()
        return state
