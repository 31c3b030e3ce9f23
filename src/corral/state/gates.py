"""Which arrived jobs a policy may see yet: dependencies and array limits, as Slurm's
`--dependency=afterok:J` and `--array=0-99%8` behave.

A job that names dependencies (the `after` column: `J:ok`, `J:any` or `J:notok`, several
separated by spaces) is held out of its policy's sight until each has ended as it asks;
one whose dependency can no longer be met (it ended the other way) is cancelled, with a
reason that names the dependency. An array's tasks (the `array_job` and `array_limit`
columns) are let through while fewer than the limit of its tasks are live (waiting or
running), in arrival order: at most that many run at once, whatever the policy.

No clock, no I/O: the driver tells the gates each arrival and each end, and both faces
drive them alike. Nothing here is exported: a live reconciler rebuilt from its database
gives the gates the same arrivals and ends and they hold the same jobs.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from corral.errors import InputError
from corral.state.reasons import Reason
from corral.workload import JobTable

AFTER_KINDS = ("ok", "any", "notok")
MAX_ARRAY_TASKS = 10_000
AFTER_WORDS = {"ok": "succeed", "any": "end", "notok": "fail or be cancelled"}
GATE_COLUMNS = ("after", "array_job", "array_limit")


def parse_after(text: str, source: str = "<memory>", line: int | None = None) -> list[tuple[str, str]]:
    """`J:ok J2:any` as [(J, ok), (J2, any)]; a bare `J` means `J:ok` (Slurm's afterok)."""
    out = []
    for word in text.replace(",", " ").split():
        job, _, kind = word.partition(":")
        kind = kind or "ok"
        if not job or kind not in AFTER_KINDS:
            raise InputError(
                f"dependency '{word}' is not JOB, JOB:ok, JOB:any or JOB:notok",
                source=source,
                line=line,
                field="after",
            )
        out.append((job, kind))
    return out


def parse_array(text: str) -> tuple[list[int], int]:
    """Slurm's array syntax: `0-99%8`, `1,3,5-7`, `0-15:4` as (the task indices, in order,
    and the limit of tasks live at once, 0 for none). Raises ValueError saying what is
    wrong."""
    spec, _, limit_text = text.strip().partition("%")
    limit = 0
    if limit_text:
        if not limit_text.isdigit() or int(limit_text) < 1:
            raise ValueError(f"the limit after % must be a whole number of at least 1, not '{limit_text}'")
        limit = int(limit_text)
    indices: list[int] = []
    for part in spec.split(","):
        span, _, step_text = part.partition(":")
        first, dash, last = span.partition("-")
        if not first.isdigit() or (dash and not last.isdigit()) or (step_text and not step_text.isdigit()):
            raise ValueError(f"'{part}' is not N, N-M or N-M:STEP (as in 0-99%8 or 1,3,5-7)")
        lo, hi, step = int(first), int(last) if dash else int(first), int(step_text or 1)
        if hi < lo or step < 1:
            raise ValueError(f"'{part}' is an empty range")
        if (hi - lo) // step + 1 + len(indices) > MAX_ARRAY_TASKS:
            raise ValueError(f"an array has at most {MAX_ARRAY_TASKS:,} tasks")
        indices += range(lo, hi + 1, step)
    if len(set(indices)) != len(indices):
        raise ValueError("an index is given twice")
    return indices, limit


@dataclass
class GateColumns:
    """Each job's dependencies, array and array limit (0: none), from a job table."""

    after: list[list[tuple[str, str]]]
    array_job: list[str]
    array_limit: list[int]


def gate_columns(jobs: JobTable, known: set[str] | None = None) -> GateColumns:
    """The gate columns of `jobs` (empty where absent). A dependency names a job other than
    itself, or an array of the table (which stands for all its tasks); where `known` is
    given it must be a job of the table or of `known`, and no chain of dependencies may
    come back to where it began. An array's tasks must agree on its limit. Refuses, naming
    the line and field, what breaks that."""
    n = len(jobs.job_id)
    after_text = jobs.extra.get("after", [""] * n)
    array_job = [str(a).strip() for a in jobs.extra.get("array_job", [""] * n)]
    limit_text = jobs.extra.get("array_limit", [""] * n)
    ids = set(jobs.job_id) | (known or set())
    checked = known is not None
    tasks: dict[str, list[str]] = {}
    for job_id, array in zip(jobs.job_id, array_job, strict=True):
        if array:
            tasks.setdefault(array, []).append(job_id)
    after: list[list[tuple[str, str]]] = []
    limits: list[int] = []
    limit_of: dict[str, int] = {}
    for i in range(n):
        where = jobs.where(i)
        deps = []
        for job, kind in parse_after(str(after_text[i]), jobs.source, where):
            if job == jobs.job_id[i] or (job in tasks and job == array_job[i]):
                raise InputError(
                    f"job '{jobs.job_id[i]}' cannot depend on itself",
                    source=jobs.source,
                    line=where,
                    field="after",
                )
            if job in ids or (not checked and job not in tasks):
                deps.append((job, kind))
            elif job in tasks:
                deps += [(task, kind) for task in tasks[job]]
            else:
                raise InputError(
                    f"job '{jobs.job_id[i]}' depends on job '{job}', which is not in the table",
                    source=jobs.source,
                    line=where,
                    field="after",
                )
        after.append(deps)
        text = str(limit_text[i]).strip()
        limit = 0
        if text:
            if not text.isdigit():
                raise InputError(
                    f"array_limit '{text}' is not a whole number",
                    source=jobs.source,
                    line=where,
                    field="array_limit",
                )
            limit = int(text)
            if limit and not array_job[i]:
                raise InputError(
                    "array_limit is given but array_job is empty",
                    source=jobs.source,
                    line=where,
                    field="array_limit",
                )
        if array_job[i]:
            first = limit_of.setdefault(array_job[i], limit)
            if first != limit:
                raise InputError(
                    f"array '{array_job[i]}' has limit {first} on an earlier line and {limit} here",
                    source=jobs.source,
                    line=where,
                    field="array_limit",
                )
        limits.append(limit)
    if checked:
        _refuse_cycles(jobs, after)
    return GateColumns(after, array_job, limits)


def _refuse_cycles(jobs: JobTable, after: list[list[tuple[str, str]]]) -> None:
    """Dependencies that come back to where they began would hold every job on the way for
    ever: refuse the first such job, naming its line."""
    row = {job_id: i for i, job_id in enumerate(jobs.job_id)}
    state = [0] * len(after)  # 0 unseen, 1 on the path, 2 done
    for start in range(len(after)):
        if state[start]:
            continue
        stack = [(start, iter(after[start]))]
        state[start] = 1
        while stack:
            i, deps = stack[-1]
            for dep, _ in deps:
                j = row.get(dep)
                if j is None or state[j] == 2:
                    continue
                if state[j] == 1:
                    raise InputError(
                        f"job '{jobs.job_id[j]}' depends on itself through a chain of dependencies",
                        source=jobs.source,
                        line=jobs.where(j),
                        field="after",
                    )
                state[j] = 1
                stack.append((j, iter(after[j])))
                break
            else:
                state[i] = 2
                stack.pop()


def dependency_reason(dep: str, kind: str, met: bool) -> Reason:
    """Why a job waits on dependency `dep` (`met`: it still can be) or was cancelled for it."""
    if met:
        return Reason("dependency", f"waiting for job {dep} to {AFTER_WORDS[kind]} ({dep}:{kind})")
    return Reason("dependency", f"cancelled: its dependency {dep}:{kind} can no longer be met")


class Gates:
    """Arrived jobs held from the policy, by dependency or array limit. A job is one of:
    not gated, held (`waiting_on` or `queued`), or let through (it counts in its array's
    `live` until it ends)."""

    def __init__(self) -> None:
        self.after: dict[int, list[tuple[str, str]]] = {}  # job -> its dependencies
        self.array: dict[int, str] = {}  # job -> its array (where it has a limit)
        self.limit: dict[str, int] = {}
        self.outcome: dict[str, bool] = {}  # an ended job -> whether it succeeded
        self.waiters: dict[str, set[int]] = {}  # job id -> held jobs waiting for it to end
        self.waiting_on: dict[int, set[str]] = {}  # held job -> the dependencies not yet ended
        self.queued: dict[str, list[tuple[float, int]]] = {}  # array -> (arrival, job) held by the limit
        self.arrival: dict[int, float] = {}
        self.live: dict[str, int] = {}  # array -> tasks let through and not ended
        self.through: set[int] = set()  # those tasks

    def __bool__(self) -> bool:
        return bool(self.after or self.array)

    def register(self, job: int, after: list[tuple[str, str]], array: str, limit: int) -> None:
        """`job`'s dependencies and array (its limit 0: none), before it arrives."""
        if after:
            self.after[job] = after
        if array and limit:
            self.array[job] = array
            self.limit[array] = limit

    def known(self, job_id: str, succeeded: bool) -> None:
        """`job_id` ended before these gates were made (a live job ended before a rebuild)."""
        self.outcome[job_id] = succeeded

    def adopt(self, job: int) -> None:
        """`job` is found running (a rebuild): it counts as live in its array."""
        array = self.array.get(job)
        if array is not None:
            self.live[array] = self.live.get(array, 0) + 1
            self.through.add(job)

    def arrive(self, job: int, arrival_s: float) -> tuple[bool, tuple[str, str] | None]:
        """`job` arrives at `arrival_s`: (whether it goes through now, the dependency that
        can no longer be met, if one cannot: then it is to be cancelled)."""
        self.arrival[job] = arrival_s
        pending = set()
        for dep, kind in self.after.get(job, ()):
            ended = self.outcome.get(dep)
            if ended is None:
                pending.add(dep)
            elif not _met(kind, ended):
                return False, (dep, kind)
        if pending:
            self.waiting_on[job] = pending
            for dep in pending:
                self.waiters.setdefault(dep, set()).add(job)
            return False, None
        return self._through(job), None

    def _through(self, job: int) -> bool:
        array = self.array.get(job)
        if array is None:
            return True
        if self.live.get(array, 0) < self.limit[array]:
            self.live[array] = self.live.get(array, 0) + 1
            self.through.add(job)
            return True
        heapq.heappush(self.queued.setdefault(array, []), (self.arrival[job], job))
        return False

    def why(self, job: int) -> Reason | None:
        """Why held `job` waits (None: it is not held)."""
        pending = self.waiting_on.get(job)
        if pending:
            dep = min(pending, key=lambda d: (len(d), d))
            kind = next(k for d, k in self.after[job] if d == dep)
            return dependency_reason(dep, kind, True)
        array = self.array.get(job)
        if array is not None and any(j == job for _, j in self.queued.get(array, ())):
            return Reason(
                "array_limit",
                f"array {array} has {self.limit[array]} tasks live, its limit (%{self.limit[array]})",
            )
        return None

    def ended(self, job: int, job_id: str, succeeded: bool) -> tuple[list[int], list[tuple[int, str, str]]]:
        """`job` (named `job_id`) ended, `succeeded` or not (a job cancelled while held
        too): the held jobs that go through now, in arrival order, and those whose
        dependency can no longer be met, each with it and its kind. The caller ends the
        latter and tells each here in turn."""
        released: list[int] = []
        doomed: list[tuple[int, str, str]] = []
        held = self.waiting_on.pop(job, None)
        if held is not None:  # (cancelled while it waited on its dependencies)
            for dep in held:
                self.waiters.get(dep, set()).discard(job)
        array = self.array.get(job)
        if array is not None:
            queue = self.queued.get(array, [])
            if any(j == job for _, j in queue):  # (cancelled while held by its array's limit)
                queue[:] = [(t, j) for t, j in queue if j != job]
                heapq.heapify(queue)
            elif job in self.through:
                self.through.discard(job)
                self.live[array] -= 1
            while queue and self.live[array] < self.limit[array]:
                _, task = heapq.heappop(queue)
                self.live[array] += 1
                self.through.add(task)
                released.append(task)
        self.outcome[job_id] = succeeded
        for waiter in sorted(self.waiters.pop(job_id, ()), key=lambda j: (self.arrival[j], j)):
            kind = next(k for d, k in self.after[waiter] if d == job_id)
            pending = self.waiting_on[waiter]
            if not _met(kind, succeeded):
                doomed.append((waiter, job_id, kind))
                continue
            pending.discard(job_id)
            if not pending:
                del self.waiting_on[waiter]
                if self._through(waiter):
                    released.append(waiter)
        return released, doomed


def _met(kind: str, succeeded: bool) -> bool:
    return kind == "any" or (kind == "ok") == succeeded
