"""`corral plan`: predict a training step and run, search layouts, and price a recipe."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from corral.cli.plan_programme import programme
from corral.cli.plan_roadmap import fleet
from corral.cli.plan_scaling import scaling_app
from corral.config import MAX_COUNT, parse_count
from corral.errors import InputError
from corral.hardware import GPU, load_gpu
from corral.plan.estimate import Prices, Reliability, RunEstimate, estimate_run, tokens_for_flops
from corral.plan.layout import Layout
from corral.plan.model import load_model
from corral.plan.network import Network
from corral.plan.recipe import LLAMA3_405B_GPU_HOURS, estimate_recipe, load_recipe
from corral.plan.search import search
from corral.plan.step import StepEstimate, estimate_step
from corral.reliability.failures import LLAMA3_RATE
from corral.report import tables
from corral.report.terminal import AsJson, console, input_errors

plan_app = typer.Typer(no_args_is_help=True, help="Predict a training run: MFU, memory, days, energy, cost.")
plan_app.add_typer(scaling_app, name="scaling")
plan_app.command("programme")(programme)
plan_app.command("fleet")(fleet)

Model = Annotated[str, typer.Option(help="Preset (llama3-8b/70b/405b, mixtral-8x7b) or a TOML/JSON file.")]
Gpu = Annotated[str, typer.Option(help="GPU (a100, h100, h200, b200, gb200) or a TOML/JSON file.")]
Seq = Annotated[int, typer.Option(min=1, max=MAX_COUNT, help="Sequence length in tokens.")]
Batch = Annotated[str, typer.Option(help="Global batch in tokens; K/M are binary (16M = 2048 x 8192).")]
ScaleOut = Annotated[float | None, typer.Option(help="Scale-out bandwidth per GPU in Gb/s (default: GPU's).")]
Oversub = Annotated[float, typer.Option(help="Oversubscription of links between pods.")]
PodGpus = Annotated[int, typer.Option(help="GPUs per full-bisection pod.")]
Precision = Annotated[str, typer.Option(help="Matmul precision: bf16 or fp8.")]


def _network(the_gpu: GPU, scale_out_gbps: float | None, oversubscription: float, pod_gpus: int) -> Network:
    if scale_out_gbps is not None and not scale_out_gbps > 0:
        raise InputError("--scale-out-gbps must be > 0", field="scale-out-gbps")
    if not oversubscription >= 1 or pod_gpus < 1:
        raise InputError("--oversubscription must be >= 1 and --pod-gpus >= 1", field="oversubscription")
    return Network.for_gpu(
        the_gpu,
        scale_out_bytes_per_s=None if scale_out_gbps is None else scale_out_gbps * 1e9 / 8,
        oversubscription=oversubscription,
        pod_gpus=pod_gpus,
    )


def _step_rows(est: StepEstimate) -> list[tuple[str, str]]:
    lay = est.layout
    schedule = "1F1B" if est.virtual_stages == 1 else f"interleaved, {est.virtual_stages} virtual stages"
    rows = [
        (
            "layout",
            f"TP {lay.tp} x PP {lay.pp} x CP {lay.cp} x DP {lay.dp}"
            + (f", EP {lay.ep}" if lay.ep > 1 else ""),
        ),
        ("schedule", f"{schedule}; {est.micro_batches} micro-batches of {lay.micro_batch}"),
        ("ZeRO / recompute", f"{lay.zero} / {lay.recompute}"),
        ("batch", f"{est.batch_tokens:,} tokens of {est.seq:,}"),
        (
            "TFLOPs per GPU, model / hardware",
            f"{est.model_tflops_per_gpu:,.0f} / {est.hardware_tflops_per_gpu:,.0f}",
        ),
        ("MFU / HFU", f"{est.mfu:.1%} / {est.hfu:.1%}"),
        ("tokens per second", f"{est.tokens_per_s:,.0f}"),
        ("step", f"{est.step_s:.3f} s"),
    ]
    for name in ("compute", "tp_comm", "cp_comm", "ep_comm", "bubble", "pp_p2p", "dp_exposed", "optimizer"):
        seconds = getattr(est, f"{name}_s")
        if seconds > 0:
            rows.append((f"  {name.replace('_', ' ')}", f"{seconds:.3f} s ({seconds / est.step_s:.0%})"))
    mem = est.memory
    rows += [
        (
            "memory per GPU",
            f"{mem.total_gib:.1f} GiB of {est.memory_capacity_gib:.1f} usable (rank {mem.rank})",
        ),
        (
            "  weights / grads / optimizer",
            f"{mem.weights_gib:.1f} / {mem.gradients_gib:.1f} / {mem.optimizer_gib:.1f} GiB",
        ),
        ("  activations / buffers", f"{mem.activations_gib:.1f} / {mem.buffers_gib:.1f} GiB"),
        (
            "fits",
            f"yes, {est.memory_margin_gib:.1f} GiB spare"
            if est.fits
            else f"NO, {-est.memory_margin_gib:.1f} GiB over",
        ),
    ]
    return rows


def _run_rows(run: RunEstimate) -> list[tuple[str, str]]:
    return [
        ("tokens", tables.count(run.tokens)),
        ("steps", f"{run.steps:,}"),
        ("days (compute only)", f"{run.compute_days:,.1f}"),
        (
            "ETTR (failures, checkpoints)",
            f"{run.ettr:.3f}, checkpoint {tables.interval(run.checkpoint_interval_s)}",
        ),
        ("days", f"{run.days:,.1f}"),
        ("GPU-hours", f"{run.gpu_hours:,.0f}"),
        ("energy", f"{run.energy_mwh:,.0f} MWh"),
        ("cost", f"${run.cost_usd:,.0f}"),
        ("CO2", f"{run.co2_tonnes:,.0f} t"),
    ]


@plan_app.command("train")
def plan_train(
    model: Model,
    gpu: Gpu,
    gpus: Annotated[int, typer.Option(min=1, max=MAX_COUNT, help="GPUs of the job.")],
    tp: Annotated[int, typer.Option(help="Tensor parallel.")] = 1,
    pp: Annotated[int, typer.Option(help="Pipeline parallel.")] = 1,
    cp: Annotated[int, typer.Option(help="Context parallel.")] = 1,
    dp: Annotated[int | None, typer.Option(help="Data parallel (default: what the GPUs leave).")] = None,
    ep: Annotated[int, typer.Option(help="Expert parallel, inside DP.")] = 1,
    zero: Annotated[int, typer.Option(help="ZeRO stage of the DP group (3 = FSDP).")] = 1,
    recompute: Annotated[
        str,
        typer.Option(
            help="none, pointwise (norms and activation functions rebuilt, as torch.compile does), "
            "selective or full."
        ),
    ] = "selective",
    virtual_stages: Annotated[int | None, typer.Option(help="Interleaved stages (1 = 1F1B).")] = None,
    micro_batch: Annotated[int, typer.Option(help="Sequences per micro-batch.")] = 1,
    tp_overlap: Annotated[
        bool, typer.Option("--tp-overlap", help="Overlap TP collectives with the GEMMs beside them.")
    ] = False,
    fp32_grads: Annotated[
        bool, typer.Option("--fp32-grads", help="Keep gradients in an FP32 buffer (Megatron's main_grad).")
    ] = False,
    seq: Seq = 8192,
    batch_tokens: Batch = "16M",
    precision: Precision = "bf16",
    tokens: Annotated[
        str | None, typer.Option(help="Train this many tokens (15.6T) and report the run.")
    ] = None,
    flops: Annotated[str | None, typer.Option(help="Or a model-FLOPs budget (3.8e25).")] = None,
    failure_rate: Annotated[float, typer.Option(help="Host failures per 1000 node-days.")] = LLAMA3_RATE,
    usd_per_gpu_hour: Annotated[float, typer.Option(help="Price of a GPU-hour.")] = Prices.usd_per_gpu_hour,
    capex_usd_per_gpu: Annotated[
        float | None, typer.Option(help="Instead: all-in capex per GPU, amortised, plus electricity.")
    ] = None,
    grid_kg_per_kwh: Annotated[float, typer.Option(help="Grid CO2 intensity.")] = Prices.grid_kg_co2_per_kwh,
    pue: Annotated[float, typer.Option(help="Datacenter PUE.")] = Prices.pue,
    scale_out_gbps: ScaleOut = None,
    oversubscription: Oversub = Network.oversubscription,
    pod_gpus: PodGpus = Network.pod_gpus,
    require_fit: Annotated[
        bool,
        typer.Option("--require-fit", help="Exit 1 when the layout does not fit in memory (for scripts)."),
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Throughput, MFU, memory and step time of one layout; with --tokens, the whole run.
    A layout that does not fit is an answer, not an error (exit 0), unless --require-fit."""
    with input_errors():
        the_model, the_gpu = load_model(model), load_gpu(gpu)
        if dp is None:
            if min(tp, pp, cp) < 1 or gpus % (tp * pp * cp):
                raise InputError(f"TP {tp} x PP {pp} x CP {cp} does not divide {gpus} GPUs", field="dp")
            dp = gpus // (tp * pp * cp)
        layout = Layout(
            tp, pp, cp, dp, ep, micro_batch, virtual_stages, zero, recompute, tp_overlap, fp32_grads
        )
        net = _network(the_gpu, scale_out_gbps, oversubscription, pod_gpus)
        batch = parse_count(batch_tokens, "batch-tokens", binary=True)
        est = estimate_step(the_model, the_gpu, gpus, layout, seq, batch, net, precision)
        run = None
        if tokens is not None and flops is not None:
            raise InputError("give --tokens or --flops, not both", field="tokens")
        if tokens is not None or flops is not None:
            total = (
                parse_count(tokens, "tokens")
                if tokens is not None
                else tokens_for_flops(est, parse_count(flops or "", "flops"))
            )
            for name, value in (("usd-per-gpu-hour", usd_per_gpu_hour), ("grid-kg-per-kwh", grid_kg_per_kwh)):
                if not value >= 0:
                    raise InputError(f"--{name} must be >= 0", field=name)
            if not pue >= 1 or (capex_usd_per_gpu is not None and not capex_usd_per_gpu >= 0):
                raise InputError("--pue must be >= 1 and --capex-usd-per-gpu >= 0", field="pue")
            prices = Prices(
                usd_per_gpu_hour=usd_per_gpu_hour,
                capex_usd_per_gpu=capex_usd_per_gpu,
                pue=pue,
                grid_kg_co2_per_kwh=grid_kg_per_kwh,
            )
            run = estimate_run(est, total, Reliability(rate_per_1000_node_days=failure_rate), prices)
    if as_json:
        out = est.as_dict() | (run.as_dict() if run else {})
        print(json.dumps(out))
    else:
        console.print(tables.key_values(f"{the_model.name} on {gpus:,} {the_gpu.name}", _step_rows(est)))
        if run is not None:
            console.print(tables.key_values("the run", _run_rows(run)))
    if require_fit and not est.fits:
        raise typer.Exit(1)


@plan_app.command("search")
def plan_search(
    model: Model,
    gpu: Gpu,
    gpus: Annotated[int, typer.Option(min=1, max=MAX_COUNT, help="GPUs of the job.")],
    seq: Seq = 8192,
    batch_tokens: Batch = "4M",
    precision: Precision = "bf16",
    top: Annotated[int, typer.Option(help="How many layouts to show.")] = 10,
    scale_out_gbps: ScaleOut = None,
    oversubscription: Oversub = Network.oversubscription,
    pod_gpus: PodGpus = Network.pod_gpus,
    as_json: AsJson = False,
) -> None:
    """Every valid layout that fits, ranked by predicted throughput."""
    with input_errors():
        the_model, the_gpu = load_model(model), load_gpu(gpu)
        net = _network(the_gpu, scale_out_gbps, oversubscription, pod_gpus)
        result = search(
            the_model,
            the_gpu,
            gpus,
            seq,
            parse_count(batch_tokens, "batch-tokens", binary=True),
            net,
            precision,
        )
        if not result.ranked:
            raise InputError(
                f"no layout of {the_model.name} fits on {gpus} {the_gpu.name} GPUs "
                f"({result.invalid} invalid, {result.too_big} over memory)",
                field="gpus",
            )
    best = result.ranked[: max(1, top)]
    if as_json:
        print(json.dumps([e.as_dict() for e in best]))
        return
    table = tables.Table(
        title=f"{the_model.name} on {gpus:,} {the_gpu.name}: best of {len(result.ranked):,} layouts that fit",
        title_justify="left",
    )
    for name in (
        "#",
        "TP",
        "PP",
        "CP",
        "DP",
        "EP",
        "mb",
        "v",
        "ZeRO",
        "recompute",
        "model TF",
        "hw TF",
        "MFU",
        "step",
        "tok/s",
        "GiB",
    ):
        table.add_column(name, justify="left" if name == "recompute" else "right")
    for i, e in enumerate(best, 1):
        lay = e.layout
        table.add_row(
            str(i),
            *(
                str(x)
                for x in (lay.tp, lay.pp, lay.cp, lay.dp, lay.ep, lay.micro_batch, e.virtual_stages, lay.zero)
            ),
            lay.recompute,
            f"{e.model_tflops_per_gpu:,.0f}",
            f"{e.hardware_tflops_per_gpu:,.0f}",
            f"{e.mfu:.1%}",
            f"{e.step_s:.2f}s",
            f"{e.tokens_per_s:,.0f}",
            f"{e.memory_gib_per_gpu:.1f}",
            style="bold green" if i == 1 else None,
        )
    same = result.tried - result.invalid - result.too_big - len(result.ranked)
    table.caption = (
        f"{result.tried:,} candidates: {result.invalid:,} invalid for the model or batch, "
        f"{result.too_big:,} over memory, {same:,} the same layout as another once the pipeline "
        f"schedule is chosen; {len(result.ranked):,} fit"
    )
    console.print(table)


@plan_app.command("recipe")
def plan_recipe(
    recipe: Annotated[
        str, typer.Argument(help="Built-in recipe (llama3-405b) or a TOML/JSON file.")
    ] = "llama3-405b",
    failure_rate: Annotated[float, typer.Option(help="Host failures per 1000 node-days.")] = LLAMA3_RATE,
    as_json: AsJson = False,
) -> None:
    """A pre-training recipe phase by phase: throughput, days, GPU-hours and energy."""
    with input_errors():
        the_recipe = load_recipe(recipe)
        phases = estimate_recipe(the_recipe, Reliability(rate_per_1000_node_days=failure_rate))
    total = {
        key: sum(getattr(p.run, key) for p in phases)
        for key in ("tokens", "days", "gpu_hours", "energy_mwh", "cost_usd", "co2_tonnes")
    }
    if as_json:
        rows = [
            {
                "phase": p.phase.name,
                **p.run.as_dict(),
                "tflops_per_gpu": p.step.tflops_per_gpu,
                "model_tflops_per_gpu": p.step.model_tflops_per_gpu,
                "hardware_tflops_per_gpu": p.step.hardware_tflops_per_gpu,
                "mfu": p.step.mfu,
                "hfu": p.step.hfu,
            }
            for p in phases
        ]
        print(json.dumps({"recipe": the_recipe.name, "phases": rows, "total": total}))
        return
    table = tables.Table(
        title=f"recipe {the_recipe.name}: {the_recipe.model} on {the_recipe.gpu}", title_justify="left"
    )
    for name in (
        "phase",
        "GPUs",
        "layout",
        "seq",
        "batch",
        "tokens",
        "TFLOPs",
        "MFU",
        "ETTR",
        "days",
        "GPU-hours",
        "MWh",
    ):
        table.add_column(name, justify="left" if name in ("phase", "layout") else "right")
    for p in phases:
        lay = p.step.layout
        table.add_row(
            p.phase.name,
            f"{p.phase.gpus:,}",
            f"{lay.tp}/{lay.pp}/{lay.cp}/{lay.dp}",
            f"{p.phase.seq:,}",
            f"{p.step.batch_tokens / 2**20:.0f}M",
            tables.count(p.run.tokens),
            f"{p.step.tflops_per_gpu:,.0f}",
            f"{p.step.mfu:.1%}",
            f"{p.run.ettr:.3f}",
            f"{p.run.days:.1f}",
            f"{p.run.gpu_hours / 1e6:.2f}M",
            f"{p.run.energy_mwh:,.0f}",
        )
    table.add_row(
        "total",
        "",
        "TP/PP/CP/DP",
        "",
        "",
        tables.count(total["tokens"]),
        "",
        "",
        "",
        f"{total['days']:.1f}",
        f"{total['gpu_hours'] / 1e6:.2f}M",
        f"{total['energy_mwh']:,.0f}",
        style="bold",
    )
    if the_recipe.name == "llama3-405b":
        error = total["gpu_hours"] / LLAMA3_405B_GPU_HOURS - 1
        table.caption = f"Meta reports 30.84M H100 GPU-hours for pre-training: {error:+.1%}"
    console.print(table)
    console.print(f"cost ${total['cost_usd']:,.0f} at the default price; CO2 {total['co2_tonnes']:,.0f} t")
