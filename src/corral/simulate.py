"""The library face of the simulator: `corral.simulate(...)` from a notebook does what
`corral simulate` does from a shell."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from corral.errors import InputError
from corral.fleet import Fleet, load_fleet
from corral.reliability.failures import FailureModel
from corral.scheduling.policy import Policy
from corral.scheduling.registry import make_policy
from corral.sim.engine import Engine, SimResult
from corral.state.placement import PlacementConfig
from corral.traces import read_jobs
from corral.workload import JobTable


def simulate(
    workload: JobTable | str,
    fleet: Fleet | str,
    policies: Sequence[str | Policy] = ("fifo",),
    load: float | None = None,
    relax_after_s: float | None = None,
    progress: Callable[[str], Callable[[int, int], None] | None] | None = None,
    explain: bool = False,
    failures: FailureModel | None = None,
    explain_jobs: Sequence[str] | None = None,
    record: bool = False,
    stop_when_explained: bool = False,
) -> list[SimResult]:
    """Replay `workload` on `fleet` once per policy; `load` rescales arrivals first;
    `explain` records why each job waits (only the jobs of `explain_jobs`, by id, where
    given); `record` keeps the event log; `failures` draws host failures and maintenance (the
    same draws for every policy). `stop_when_explained`: each run stops once every job of
    `explain_jobs` has ended, its result partial beyond them (what `corral explain` needs)."""
    jobs = read_jobs(workload) if isinstance(workload, str) else workload
    the_fleet = load_fleet(fleet) if isinstance(fleet, str) else fleet
    if load is not None:
        jobs = jobs.with_load(load, the_fleet.total_gpus)
    made = [make_policy(p) if isinstance(p, str) else p for p in policies]
    names = [p.name for p in made]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(f"policy '{twice[0]}' is given more than once", field="policy")
    watched = None
    if explain_jobs is not None:
        index = {job_id: i for i, job_id in enumerate(jobs.job_id)}
        unknown = [job_id for job_id in explain_jobs if job_id not in index]
        if unknown:
            raise InputError(f"no job '{unknown[0]}' in the workload", source=jobs.source, field="job_id")
        watched = {index[job_id] for job_id in explain_jobs}
    results = []
    for policy in made:
        engine = Engine(
            the_fleet,
            jobs,
            policy,
            PlacementConfig(relax_after_s),
            progress=progress(policy.name) if progress else None,
            record=record,
            explain=explain or watched is not None,
            explain_jobs=watched,
            failures=failures,
        )
        results.append(engine.run(watched if stop_when_explained else None))
    return results
