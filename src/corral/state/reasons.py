"""Why a job is pending (or what it is doing), as data: a kind, the jobs and queues it names,
and a sentence with `{job0}`, `{job1}`... where those jobs go. Policies name jobs by number;
people read them by `job_id`, so the sentence is rendered only against the cluster's ids."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

KINDS = (
    "running",  # holds its GPUs
    "finished",
    "withdrawn",  # cancelled while pending, or killed while running
    "behind",  # strict order: another job goes first
    "over_quota",  # its queue (or a cohort above it) has no room
    "waiting_gpus",  # not enough free GPUs
    "fragmented",  # enough GPUs, no placement of the shape it needs
    "reserved",  # backfill reserved GPUs for it at a later time
    "holding",  # held so as not to delay a reserved job (GPUs or quota)
    "preempted",
    "interrupted",  # its host failed or was drained
    "dependency",  # waits for a job it depends on to end (or was cancelled: it cannot be met)
    "array_limit",  # its array has as many tasks live as its limit allows
    "reservation",  # the GPUs it would fit on are reserved (for another queue, or maintenance)
)


@dataclass(frozen=True, slots=True)
class Reason:
    kind: str
    text: str
    jobs: tuple[int, ...] = ()
    queues: tuple[str, ...] = ()

    def render(self, job_ids: Sequence[str]) -> str:
        """The sentence with each named job given by its id."""
        if not self.jobs:
            return self.text
        return self.text.format(**{f"job{i}": job_ids[j] for i, j in enumerate(self.jobs)})


def capacity_reason(gpus: int, free: int, level: int | None) -> Reason:
    """Why a job of `gpus` GPUs at topology `level` finds no placement with `free` GPUs free.
    The sentence leaves out the free count, which moves with every start and stop: a reason
    is recorded each time it changes."""
    if gpus > free:
        return Reason("waiting_gpus", f"waiting for GPUs: needs {gpus}, fewer are free")
    where = {None: "placement", 0: "host", 1: "rack", 2: "pod", 3: "cluster"}[level]
    return Reason("fragmented", f"no free {where} block for {gpus} GPUs (enough are free, but fragmented)")


QUEUED = Reason("behind", "waiting its turn in the policy's order")
RUNNING = Reason("running", "running")
FINISHED = Reason("finished", "finished")
WITHDRAWN = Reason("withdrawn", "withdrawn")
BY_POLICY = Reason("preempted", "preempted by the policy")
HOST_FAILED = Reason("interrupted", "its host failed: waiting to restart from its last checkpoint")
RESERVED_HOSTS = Reason(
    "reservation",
    "the GPUs it fits on are reserved: for another queue, maintenance, or a window it would run into",
)
STOPPED_FOR_RESERVATION = Reason("interrupted", "its hosts were reserved from now: waiting to restart")
HOST_DRAINED = Reason("interrupted", "its host was drained: waiting to restart")


def intervals(history: Sequence[tuple[float, Reason]]) -> Iterator[tuple[float, float, Reason]]:
    """A job's recorded reasons as (from_s, to_s, reason): each holds until the next; the
    last (finished or withdrawn, once the job has ended) is an instant."""
    for k, (t, reason) in enumerate(history):
        yield t, history[k + 1][0] if k + 1 < len(history) else t, reason
