"""The research programme before a flagship run: an IsoFLOP ladder to fit the scaling law
on, ablations at small scale, then the flagship itself; what each costs and how long, and
what the ladder buys: the uncertainty of the flagship's predicted loss.

The ladder's outcomes are drawn from a `truth` law with noise (what the runs would measure
if the world followed it); the law fitted to them, with bootstrap intervals, sizes the
flagship. Smaller ladders cost fewer GPU-hours and calendar days but leave a wider interval
on the flagship's loss: `tradeoff` draws that curve, a ladder with its top levels dropped
at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from corral.errors import InputError
from corral.hardware import GPU
from corral.plan.estimate import HOST_OVERHEAD, PUE
from corral.plan.scaling import Law, LossLaw, Points, fit_loss_law
from corral.workload import JobTable

HOUR_S = 3600.0


@dataclass(frozen=True)
class Run:
    """One training run of the programme."""

    kind: str  # ladder, ablation, flagship
    flops: float
    params: float
    tokens: float
    gpus: int
    hours: float  # wall clock on its GPUs

    @property
    def gpu_hours(self) -> float:
        return self.gpus * self.hours


@dataclass(frozen=True)
class Rung:
    """A ladder that stops at `top_flops`: what it costs and what it leaves uncertain."""

    top_flops: float
    runs: int
    gpu_hours: float
    days: float
    loss: float
    loss_low: float
    loss_high: float

    @property
    def width(self) -> float:
        return self.loss_high - self.loss_low


@dataclass(frozen=True)
class Programme:
    ladder: list[Run]
    ablations: list[Run]
    flagship_flops: float
    fitted: LossLaw
    flagship_params: float
    flagship_tokens: float
    ladder_days: float
    tradeoff: list[Rung]

    @property
    def flagship_loss(self) -> float:
        return self.fitted.loss(self.flagship_params, self.flagship_tokens)


def run_hours(flops: float, gpus: int, gpu: GPU, mfu: float) -> float:
    """Wall-clock hours of a run of `flops` model FLOPs on `gpus` at `mfu` of BF16 peak."""
    return flops / (gpus * gpu.bf16_flops * mfu) / HOUR_S


def energy_mwh(runs: list[Run], gpu: GPU) -> float:
    """Energy of the runs at the GPUs' TDP, hosts and PUE included (as `estimate_run` counts
    it: an upper bound)."""
    return sum(r.gpu_hours for r in runs) * gpu.power_w * HOST_OVERHEAD * PUE / 1e6


def calendar_days(runs: list[Run], share_gpus: int) -> float:
    """Days the runs take on `share_gpus` if packed perfectly: their GPU-hours over the
    share, but no less than the longest run."""
    if not runs:
        return 0.0
    packed = sum(r.gpu_hours for r in runs) / share_gpus / 24
    return max(packed, max(r.hours for r in runs) / 24)


def ladder_runs(
    prior: Law, levels: np.ndarray, sizes: int, run_gpus: int, gpu: GPU, mfu: float, spread: float = 0.8
) -> list[Run]:
    """`sizes` models per budget, spread log-evenly over `spread` decades either side of the
    `prior` law's optimum (where the ladder is centred before anything is known)."""
    runs = []
    for flops in levels:
        best, _ = prior.optimal(float(flops))
        for factor in np.logspace(-spread, spread, sizes):
            params = best * factor
            runs.append(
                Run(
                    "ladder",
                    float(flops),
                    params,
                    float(flops) / (6 * params),
                    run_gpus,
                    run_hours(flops, run_gpus, gpu, mfu),
                )
            )
    return runs


def outcomes(runs: list[Run], truth: LossLaw, noise: float, seed: int) -> Points:
    """What the ladder would measure if the world followed `truth`: its loss, with
    multiplicative log-normal noise."""
    rng = np.random.default_rng(seed)
    params = np.array([r.params for r in runs])
    tokens = np.array([r.tokens for r in runs])
    loss = np.array([truth.loss(n, d) for n, d in zip(params, tokens, strict=True)]) * np.exp(
        rng.normal(0, noise, len(runs))
    )
    return Points(params, tokens, loss, np.array([r.flops for r in runs]))


def plan_programme(
    flagship_flops: float,
    truth: LossLaw,
    prior: Law,
    gpu: GPU,
    share_gpus: int,
    run_gpus: int,
    levels: np.ndarray,
    sizes: int,
    ablations: int,
    ablation_flops: float,
    mfu: float = 0.4,
    noise: float = 0.005,
    bootstrap: int = 30,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Programme:
    """Plan the ladder and ablations on a share of the fleet, fit the law on the ladder, size
    the flagship; and the trade-off of ladders stopped at lower budgets."""
    if not flagship_flops > max(levels):
        raise InputError("the flagship's budget must exceed the ladder's top", field="flops")
    if run_gpus > share_gpus:
        raise InputError(f"a run of {run_gpus} GPUs does not fit a share of {share_gpus}", field="run-gpus")
    if len(levels) < 3 or sizes < 3:
        raise InputError("a ladder needs 3 budgets or more, of 3 sizes or more", field="levels")
    ladder = ladder_runs(prior, levels, sizes, run_gpus, gpu, mfu)
    best, _ = prior.optimal(ablation_flops)
    ablation_runs = [
        Run(
            "ablation",
            ablation_flops,
            best,
            ablation_flops / (6 * best),
            run_gpus,
            run_hours(ablation_flops, run_gpus, gpu, mfu),
        )
        for _ in range(ablations)
    ]
    measured = outcomes(ladder, truth, noise, seed)
    rungs = []
    tops = sorted(set(levels))
    total = len(tops) - 2
    fitted = None
    for k in range(3, len(tops) + 1):
        keep = np.flatnonzero(measured.flops <= tops[k - 1] * (1 + 1e-9))
        law = fit_loss_law(measured.take(keep), bootstrap, seed, name=f"ladder to {tops[k - 1]:.0e}")
        params, tokens = law.optimal(flagship_flops)
        low, high = law.loss_interval(flagship_flops) or (math.nan, math.nan)
        subset = [ladder[i] for i in keep]
        rungs.append(
            Rung(
                tops[k - 1],
                len(subset),
                sum(r.gpu_hours for r in subset),
                calendar_days(subset, share_gpus),
                law.loss(params, tokens),
                low,
                high,
            )
        )
        fitted = law
        if progress is not None:
            progress(k - 2, total)
    assert fitted is not None
    params, tokens = fitted.optimal(flagship_flops)
    return Programme(
        ladder,
        ablation_runs,
        flagship_flops,
        fitted,
        params,
        tokens,
        calendar_days(ladder + ablation_runs, share_gpus),
        rungs,
    )


def job_table(programme: Programme, flagship: Run | None, queue: str, priority: int) -> JobTable:
    """The programme as the simulator's job table: ladder and ablations (experiments, named
    ladder-N and ablation-N) submitted at once, the flagship (pre-training) when the ladder
    is planned to end."""
    runs = programme.ladder + programme.ablations
    rows = [(f"{r.kind}-{i}", 0.0, r) for i, r in enumerate(runs)]
    if flagship is not None:
        rows.append(("flagship", programme.ladder_days * 86400.0, flagship))
    n = len(rows)
    return JobTable(
        job_id=[name for name, _, _ in rows],
        submit_s=np.array([t for _, t, _ in rows]),
        gpus=np.array([r.gpus for _, _, r in rows], dtype=np.int64),
        duration_s=np.array([r.hours * HOUR_S for _, _, r in rows]),
        queue=[queue] * n,
        user=["programme"] * n,
        kind=["pretrain" if r.kind == "flagship" else "experiment" for _, _, r in rows],
        priority=np.full(n, priority, dtype=np.int64),
        preemptible=np.array([r.kind != "flagship" for _, _, r in rows]),
        source="corral plan programme",
    )
