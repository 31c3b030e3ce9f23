"""corral simulate, explain and demo."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from corral.cli.app import app
from corral.cli.capacity import SCENARIO as FUNGIBLE
from corral.cli.capacity import simulate_fungible
from corral.cli.common import write_json
from corral.errors import InputError
from corral.fleet import Fleet, load_fleet
from corral.hardware import gpu
from corral.plan.layout import Layout
from corral.plan.model import PRESETS
from corral.plan.recipe import RECIPES, estimate_recipe
from corral.plan.step import estimate_step
from corral.reliability.failures import FailureModel
from corral.report import tables
from corral.report.outputs import check_output_dir, check_output_table, output_dir
from corral.report.terminal import bold, console, input_errors, progress_bars
from corral.scenarios import SCENARIOS, Scenario, load_scenario
from corral.scheduling.registry import policy_help
from corral.sim.engine import SimResult
from corral.sim.metrics import (
    by_queue,
    by_size,
    job_reliability,
    reliability,
    summary,
    write_job_record,
    write_run_record,
)
from corral.simulate import simulate as run_simulation
from corral.state.reasons import intervals
from corral.traces import read_jobs
from corral.workload import JobTable, write_table

DEMO_LOAD = 0.5
DEMO_POLICIES = ("fifo", "las", "sjf")


def _inputs(
    workload: str | None, fleet: str | None, scenario: str | None, days: float, seed: int
) -> Scenario:
    """The fleet and jobs (and failures) from a scenario, or from --workload and --fleet."""
    if scenario is not None:
        if workload is not None or fleet is not None:
            raise InputError("give either --scenario or --workload and --fleet", field="scenario")
        return load_scenario(scenario, days, seed)
    if workload is None or fleet is None:
        raise InputError("give --workload and --fleet (or --scenario)", field="workload")
    return Scenario(load_fleet(fleet), read_jobs(workload))


def _run_and_report(
    the_fleet: Fleet,
    jobs: JobTable,
    policies: list[str],
    load: float | None,
    relax_after_s: float | None,
    out: Path | None,
    queues: bool,
    sizes: bool = False,
    reasons: Path | None = None,
    failures: FailureModel | None = None,
) -> list[SimResult]:
    with input_errors():
        check_output_dir(out)
        check_output_table(reasons, "reasons")
    with input_errors(), progress_bars() as progress:
        results = run_simulation(
            jobs, the_fleet, policies, load, relax_after_s, progress, reasons is not None, failures
        )
    rows = [summary(r) for r in results]
    load_text = f" at load {load:g}" if load is not None else ""
    console.print(
        tables.comparison(
            rows,
            f"{len(jobs):,} jobs on {the_fleet.name} ({the_fleet.total_gpus:,} GPUs){load_text}",
            console.width,
        )
    )
    if any(r["preemptions"] or r["fragmented_gpus"] for r in rows) or the_fleet.queues:
        console.print(tables.sharing(rows))
    if queues:
        for r in results:
            console.print(tables.per_queue(r.policy, by_queue(r)))
    if sizes:
        for r in results:
            console.print(tables.by_size(r.policy, by_size(r)))
    training = [i for i, kind in enumerate(jobs.kind) if kind == "pretrain"]
    if failures is not None:
        for r in results:
            console.print(
                tables.reliability(r.policy, reliability(r), [job_reliability(r, i) for i in training])
            )
    if reasons is not None:
        _write_reasons(results, reasons)
        console.print(f"wrote pending reasons to {reasons}")
    if out is not None:
        with output_dir(out) as stage:
            _write_outputs(stage, results, rows, jobs, failures, training)
        names = ", ".join(r.policy for r in results)
        console.print(f"wrote {out}/metrics.json, and jobs-<policy>.csv and runs-<policy>.csv for {names}")
    return results


def _write_outputs(
    out: Path,
    results: list[SimResult],
    rows: list[dict],
    jobs: JobTable,
    failures: FailureModel | None,
    training: list[int],
) -> None:
    for r in results:
        write_job_record(r, out / f"jobs-{r.policy}.csv")
        write_run_record(r, out / f"runs-{r.policy}.csv")
    metrics = [
        {
            **row,
            "by_queue": by_queue(r),
            "by_size": by_size(r),
            **({"reliability": reliability(r)} if failures is not None else {}),
            "training_jobs": {jobs.job_id[i]: job_reliability(r, i) for i in training},
        }
        for row, r in zip(rows, results, strict=True)
    ]
    write_json(out / "metrics.json", metrics)


def _write_reasons(results: list[SimResult], path: Path) -> None:
    """Each job's states as intervals, a row each time its state or the reason it waits
    changes: policy, job_id, queue, from_s, to_s, kind, reason (jobs named by id), and the
    jobs and queues it names (;-separated)."""
    import pyarrow as pa

    names = ("policy", "job_id", "queue", "from_s", "to_s", "kind", "reason", "names_jobs", "names_queues")
    cols: dict[str, list] = {name: [] for name in names}
    for r in results:
        ids = r.jobs.job_id
        for job, history in sorted((r.reasons or {}).items()):
            for start_s, end_s, reason in intervals(history):
                cols["policy"].append(r.policy)
                cols["job_id"].append(ids[job])
                cols["queue"].append(r.jobs.queue[job])
                cols["from_s"].append(start_s)
                cols["to_s"].append(end_s)
                cols["kind"].append(reason.kind)
                cols["reason"].append(reason.render(ids))
                cols["names_jobs"].append(";".join(ids[j] for j in reason.jobs))
                cols["names_queues"].append(";".join(reason.queues))
    write_table(pa.table(cols), path)


@app.command()
def simulate(
    workload: Annotated[
        str | None, typer.Option(help="Job table (CSV/Parquet) or a Philly-format trace.")
    ] = None,
    fleet: Annotated[
        str | None,
        typer.Option(help="Preset (philly, philly-shared, meta-24k, meta-2024), TOML file, or NxG."),
    ] = None,
    policy: Annotated[
        list[str] | None,
        typer.Option(
            help=f"{policy_help()}; repeat to compare (docs/simulator.md says what each parameter does)."
        ),
    ] = None,
    scenario: Annotated[
        str | None, typer.Option(help=f"A built-in scenario: {', '.join([*SCENARIOS, FUNGIBLE])}.")
    ] = None,
    days: Annotated[
        float | None, typer.Option(help="Days a scenario runs (research-fleet 30, fungible-fleet 14).")
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Random seed of a scenario.")] = 0,
    load: Annotated[float | None, typer.Option(help="Rescale arrivals to this offered load.")] = None,
    broker: Annotated[
        list[str] | None,
        typer.Option(help="fungible-fleet: static, reactive, predictive; repeat to compare (default all)."),
    ] = None,
    research_policy: Annotated[
        str | None,
        typer.Option(help="fungible-fleet: also replay the research teams' jobs under this sharing policy."),
    ] = None,
    relax_after: Annotated[float | None, typer.Option(help="Seconds after which a gang may spread.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write metrics.json and jobs-<policy>.csv here.")] = None,
    by_queue: Annotated[bool, typer.Option("--by-queue", help="Also print the per-queue breakdown.")] = False,
    by_size: Annotated[
        bool, typer.Option("--by-size", help="Also print JCT and waits by gang size.")
    ] = False,
    reasons: Annotated[
        Path | None, typer.Option(help="Write why every pending job waited, over time (CSV/Parquet).")
    ] = None,
) -> None:
    """Replay a workload on a fleet under one or more policies and compare them."""
    if scenario == FUNGIBLE:
        given = {
            "--workload": workload,
            "--fleet": fleet,
            "--policy": policy,
            "--load": load,
            "--relax-after": relax_after,
            "--reasons": reasons,
            "--by-queue": by_queue or None,
            "--by-size": by_size or None,
        }
        with input_errors():
            for flag, value in given.items():
                if value is not None:
                    raise InputError(f"{flag} does not apply to --scenario {FUNGIBLE}", field=flag.strip("-"))
        simulate_fungible(broker, days, seed, out, research_policy)
        return
    with input_errors():
        if scenario is not None and scenario not in SCENARIOS:
            known = ", ".join([*SCENARIOS, FUNGIBLE])
            raise InputError(f"unknown scenario '{scenario}'; known: {known}", field="scenario")
        if broker or research_policy:
            raise InputError(
                "--broker and --research-policy apply to --scenario fungible-fleet only", field="broker"
            )
        setup = _inputs(workload, fleet, scenario, 30.0 if days is None else days, seed)
        if not policy:
            if scenario is None:
                raise InputError("give at least one --policy", field="policy")
            policy = list(setup.policies)
    _run_and_report(
        setup.fleet,
        setup.jobs,
        policy,
        load,
        relax_after,
        out,
        by_queue,
        by_size or (bool(scenario) and setup.failures is None),
        reasons,
        setup.failures,
    )


@app.command()
def explain(
    job: Annotated[str, typer.Argument(help="The job id.")],
    policy: Annotated[
        str | None, typer.Option(help="The policy to replay (none: ask the live cluster).")
    ] = None,
    workload: Annotated[str | None, typer.Option(help="Job table or Philly-format trace.")] = None,
    fleet: Annotated[str | None, typer.Option(help="Preset, TOML file, or NxG.")] = None,
    scenario: Annotated[str | None, typer.Option(help="A built-in scenario.")] = None,
    days: Annotated[float, typer.Option(help="Days of arrivals a scenario generates.")] = 30.0,
    seed: Annotated[int, typer.Option(min=0, help="Random seed of a scenario.")] = 0,
    load: Annotated[float | None, typer.Option(help="Rescale arrivals to this offered load.")] = None,
    server: Annotated[
        str | None, typer.Option(envvar="CORRAL_SERVER", help="The live cluster's URL.")
    ] = None,
    token: Annotated[str | None, typer.Option(envvar="CORRAL_TOKEN", help="Your token there.")] = None,
) -> None:
    """Replay, then print one job's history: why it waited, when it ran, who preempted it.
    Without --policy, the same history of a job of the live cluster (CORRAL_SERVER)."""
    if policy is None and workload is None and scenario is None:
        _explain_live(job, server, token)
        return
    with input_errors():
        if policy is None:
            raise InputError("give the --policy to replay", field="policy")
        setup = _inputs(workload, fleet, scenario, days, seed)
        the_fleet, jobs = setup.fleet, setup.jobs
        with progress_bars() as progress:
            (result,) = run_simulation(
                jobs,
                the_fleet,
                [policy],
                load,
                None,
                progress,
                failures=setup.failures,
                explain_jobs=[job],
                stop_when_explained=True,
            )
    i = jobs.job_id.index(job)
    console.print(
        bold(
            job,
            f": {int(jobs.gpus[i])} GPUs, queue {jobs.queue[i]}, priority {int(jobs.priority[i])}, "
            f"runs {tables.duration(float(jobs.duration_s[i]))}; policy {policy} on {the_fleet.name}",
        )
    )
    table = tables.Table(title_justify="left")
    for name in ("from", "since submit", "for", "state or reason"):
        table.add_column(name, justify="left" if name == "state or reason" else "right")
    submit = float(result.jobs.submit_s[i])
    for start_s, end_s, reason in intervals((result.reasons or {}).get(i, [])):
        table.add_row(
            f"{start_s:,.0f}s",
            tables.duration(start_s - submit),
            tables.duration(end_s - start_s) if end_s > start_s else "",
            result.reason_text(reason),
        )
    console.print(table)
    console.print(
        f"waited {tables.duration(float(result.end_s[i] - submit - jobs.duration_s[i]))} in all; "
        f"preempted {int(result.preemptions[i])} times, "
        f"losing {tables.duration(float(result.lost_s[i]))} of work"
    )


def _explain_live(job: str, server: str | None, token: str | None) -> None:
    """A live job's recorded reasons, in the words the simulator prints."""
    from corral.cli.live import _call

    with input_errors():
        detail = _call(server, token, "GET", f"/v1/jobs/{job}")
        history = _call(server, token, "GET", f"/v1/jobs/{job}/reasons")
    console.print(
        bold(
            job,
            f": {detail['gpus']} GPUs, queue {detail['queue']}, "
            f"priority {detail['priority']}, {detail['state']}",
        )
    )
    table = tables.Table(title_justify="left")
    for name in ("since submit", "for", "state or reason"):
        table.add_column(name, justify="left" if name == "state or reason" else "right")
    ends = [h["time_s"] for h in history[1:]] + [None]
    for h, end in zip(history, ends, strict=True):
        lasted = "" if end is None else tables.duration(end - h["time_s"])
        table.add_row(tables.duration(h["time_s"] - detail["submit_s"]), lasted, h["reason"])
    console.print(table)
    if detail["state"] == "pending":
        with input_errors():
            at_s = _call(server, token, "GET", f"/v1/jobs/{job}/forecast")["forecast_start_s"]
        console.print(
            "not expected to start (a dependency or reservation it never gets past)"
            if at_s is None
            else f"expected to start at {tables.clock_time(at_s)}, if the running jobs end at their "
            "estimates and nothing that ranks above it arrives"
        )
    if detail.get("service"):  # (a replica: the broker's moves that sized its service)
        with input_errors():
            moves = [m for m in _call(server, token, "GET", "/v1/moves") if m["service"] == detail["service"]]
        console.print(f"a replica of service {detail['service']}; the broker's last moves for it:")
        for m in moves[-5:]:
            console.print(f"  {m['time_s']:,.0f}s  {m['before']} -> {m['after']} replicas: {m['reason']}")


@app.command()
def demo(out: Annotated[Path | None, typer.Option(help="Also write the results here.")] = None) -> None:
    """Replay Microsoft's Philly trace on its own virtual clusters under fifo, las and sjf."""
    trace = resources.files("corral.data").joinpath("philly_pollux.csv.gz")
    with resources.as_file(trace) as path:
        console.print(
            bold(
                "corral demo",
                ": Microsoft's Philly trace (82,247 GPU jobs, Sep-Dec 2017; CC-BY 4.0, "
                "as reduced by the Pollux OSDI'21 artifact) on the Philly fleet (one pool per virtual "
                f"cluster), arrivals compressed to offered load {DEMO_LOAD}.\n",
            )
        )
        with input_errors():
            philly, jobs = load_fleet("philly"), read_jobs(str(path))
        results = _run_and_report(philly, jobs, list(DEMO_POLICIES), DEMO_LOAD, None, out, False)
    by_name = {r.policy: summary(r) for r in results}
    fifo, las, sjf = by_name["fifo"], by_name["las"], by_name["sjf"]
    console.print(
        f"\nSame jobs, same GPUs: first-come first-served makes the average job take "
        f"{tables.duration(fifo['avg_jct_s'])}, because long jobs at the head block short ones. "
        f"Tiresias' LAS, which knows no durations, cuts that to {tables.duration(las['avg_jct_s'])} "
        f"({fifo['avg_jct_s'] / las['avg_jct_s']:.1f}x lower) by preempting jobs that have had the "
        f"most GPU time; an oracle shortest-job-first reaches {tables.duration(sjf['avg_jct_s'])}, "
        f"what knowing every duration buys."
    )
    step = estimate_step(PRESETS["llama3-405b"], gpu("h100"), 16384, Layout(8, 16, 1, 128), 8192, 16 * 2**20)
    hours = sum(p.run.gpu_hours for p in estimate_recipe(RECIPES["llama3-405b"]))
    console.print()
    console.print(
        bold("Planning", ": Llama 3 405B on 16,384 H100s (TP 8, PP 16, DP 128, 16M-token batches) ")
        + f"should run at {step.tflops_per_gpu:.0f} TFLOPs per GPU ({step.mfu:.1%} MFU; Meta measured 400) "
        f"in {step.memory_gib_per_gpu:.0f} GiB per GPU, and its whole pre-training recipe with "
        f"failures should take {hours / 1e6:.1f}M GPU-hours (Meta reports 30.84M). "
        "`corral plan --help` for more."
    )
