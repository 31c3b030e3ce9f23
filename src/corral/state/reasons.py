"""Why a job is pending (or what it is doing), as data: a kind, the jobs and queues it names,
and a sentence with `{job0}`, `{job1}`... where those jobs go. Policies name jobs by number;
people read them by `job_id`, so the sentence is rendered only against the cluster's ids."""

from __future__ import annotations

from collections.abc import Sequence
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

    def to_dict(self, job_ids: Sequence[str]) -> dict:
        return {
            "kind": self.kind,
            "text": self.render(job_ids),
            "jobs": [job_ids[j] for j in self.jobs],
            "queues": list(self.queues),
        }


RUNNING = Reason("running", "running")
FINISHED = Reason("finished", "finished")
WITHDRAWN = Reason("withdrawn", "withdrawn")
