"""Record every start, stop and end of the simulator on a fixed set of runs, and compare two
such records job by job: the check that a refactoring changed no schedule.

    python scripts/compare_schedules.py run before/          # about 3 minutes on 2 cores
    ... change the code ...
    python scripts/compare_schedules.py run after/
    python scripts/compare_schedules.py diff before/ after/  # one line per differing job; exit 1 if any

The runs: the Philly trace on `philly` (one pool per virtual cluster, what `corral demo`
runs) and on `philly-shared` (the virtual clusters as queues with quotas), at the trace's
own load and at load 0.8, under every policy; and a synthetic workload with host failures,
maintenance, and one with capacity lent away and back, where interruptions, spares and
drains are exercised too.
Each run writes `<fleet>-<load>-<policy>.jsonl`: one line per event, (time_s, what, job_id,
hosts or the job it made room for), in the order the simulator applied them.
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path

import numpy as np

from corral.fleet import load_fleet
from corral.reliability.failures import FailureModel
from corral.scheduling.registry import POLICIES, make_policy
from corral.sim.engine import Engine
from corral.synth import synth_jobs

try:
    from corral.traces import read_jobs
except ImportError:  # (before read_jobs moved to corral.traces)
    from corral.workload import read_jobs
from corral.workload import JobTable

CORE = ("fifo", "fifo-firstfit", "fifo-backfill", "sjf", "srtf", "las", "ftf")
LOADS = (None, 0.8)


def runs() -> list[tuple[str, str | None, str]]:
    """(fleet, load, policy) of every run compared."""
    out = [("philly", load, p) for load in LOADS for p in CORE]
    out += [("philly-shared", load, p) for load in LOADS for p in POLICIES]
    out += [(kind, None, p) for kind in ("failures", "lending") for p in POLICIES]
    return out


def _events(result) -> list[list]:
    """The event log with job numbers replaced by job ids."""
    ids = result.jobs.job_id
    rows = []
    for at, what, job, detail in result.log:
        if what == "start":
            detail = [[int(h), int(g)] for h, g, *_ in detail]
        elif what == "stop":
            detail = [str(ids[detail[0]]) if detail[0] >= 0 else "", round(float(detail[1]), 6)]
        elif what == "fail":
            detail = [detail[0], round(float(detail[1]), 6)]
        rows.append([at, what, str(ids[job]), detail])
    return rows


def _checkpointing(jobs: JobTable) -> JobTable:
    """Every other job checkpoints every 30 minutes (10 s writes, 60 s restarts), every third
    one has priority 1, so failures and preemptions keep partial work."""
    n = len(jobs)
    every_other = np.arange(n) % 2 == 0
    return JobTable(
        **{
            **jobs.__dict__,
            "checkpoint_interval_s": np.where(every_other, 1800.0, 0.0),
            "checkpoint_write_s": np.where(every_other, 10.0, 0.0),
            "restart_s": np.where(every_other, 60.0, 0.0),
            "priority": (np.arange(n) % 3 == 0).astype(np.int64),
        }
    )


def run(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with resources.as_file(resources.files("corral.data").joinpath("philly_pollux.csv.gz")) as path:
        philly = read_jobs(str(path))
    synth = _checkpointing(synth_jobs(3000, 40.0, seed=3, queues=4, max_gpus=64))
    failures = FailureModel(rate_per_1000_node_days=400.0, maintenance_per_day=2.0, spares_per_pod=1, seed=5)
    for fleet_name, load, policy in runs():
        if fleet_name in ("failures", "lending"):
            fleet = load_fleet("64x8")
            jobs = synth.with_load(0.9, fleet.total_gpus)
            if fleet_name == "failures":
                kwargs = {"failures": failures}
            else:
                kwargs = {"lending": [(3600.0 * h, 0, 16 * (h % 4)) for h in range(1, 100)]}
        else:
            fleet = load_fleet(fleet_name)
            jobs = philly if load is None else philly.with_load(load, fleet.total_gpus)
            kwargs = {}
        result = Engine(fleet, jobs, make_policy(policy), record=True, **kwargs).run()
        name = f"{fleet_name}-{load or 'trace'}-{policy}.jsonl"
        with open(out / name, "w") as f:
            for row in _events(result):
                f.write(json.dumps(row) + "\n")
        print(f"{name}: {len(result.log)} events in {result.wall_s:.1f} s", flush=True)


def by_job(lines: list[str]) -> dict[str, list]:
    """Each job's events, in order: (time_s, what, hosts or the job it made room for)."""
    events: dict[str, list] = {}
    for line in lines:
        time_s, what, job, extra = json.loads(line)
        events.setdefault(job, []).append((time_s, what, extra))
    return events


def diff(before: Path, after: Path) -> int:
    """Compare each run of `before` with its namesake in `after`: one line per identical run,
    and for a run that differs, the first event where it does and one line per job whose
    own events differ (its first differing event on each side)."""
    differ = 0
    for path in sorted(before.glob("*.jsonl")):
        other = after / path.name
        if not other.exists():
            print(f"{path.name}: missing in {after}")
            differ += 1
            continue
        a, b = path.read_text().splitlines(), other.read_text().splitlines()
        first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
        if first is None and len(a) == len(b):
            print(f"{path.name}: identical ({len(a)} events)")
            continue
        differ += 1
        at = first if first is not None else min(len(a), len(b))
        print(f"{path.name}: differs at event {at}:")
        print(f"  before: {a[at] if at < len(a) else '(end)'}")
        print(f"  after:  {b[at] if at < len(b) else '(end)'}")
        jobs_a, jobs_b = by_job(a), by_job(b)
        changed = [job for job in sorted(jobs_a.keys() | jobs_b.keys()) if jobs_a.get(job) != jobs_b.get(job)]
        print(f"  {len(changed)} jobs differ:")
        for job in changed:
            x, y = jobs_a.get(job, []), jobs_b.get(job, [])
            i = next((i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), min(len(x), len(y)))
            was, now = (x[i] if i < len(x) else "(none)"), (y[i] if i < len(y) else "(none)")
            print(f"  {job}: before {was}, after {now}")
    return 1 if differ else 0


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "run":
        run(Path(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "diff":
        sys.exit(diff(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
