"""Scaling laws: what model and how many tokens a compute budget should buy, and what loss
to expect.

Two kinds of law:

- the parametric loss of Hoffmann et al. (2022, approach 3), L(N, D) = E + A / N^alpha +
  B / D^beta, fitted as they and Besiroglu et al. (2024) did: a Huber loss (delta 1e-3) on the
  log of the predicted loss against the log of the measured one, minimised by L-BFGS from a
  grid of starting points, with bootstrap intervals over the points;
- the compute-optimal frontier alone (approach 2; Llama 3's IsoFLOP law): fit a parabola in
  log N to each budget's losses, take its minimum, and fit N_opt (or D_opt) = k C^a.

Compute is C = 6 N D throughout, as in those papers.

Built in (REFERENCE.md section 5): `chinchilla` (Hoffmann et al.), `epoch-2024` (Besiroglu et
al.'s replication) and `llama3` (the paper's Figure 3: D*(C) = 0.299 C^0.537; it predicts
tokens, not loss).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from corral.errors import InputError, install_hint
from corral.plan.model import Transformer

HUBER_DELTA = 1e-3
BOOTSTRAP_STARTS = 6  # starting points besides the fit, per bootstrap refit


@dataclass(frozen=True)
class LossLaw:
    """L(N, D) = E + A / N^alpha + B / D^beta; `samples` are bootstrap refits (E, A, B,
    alpha, beta), for intervals."""

    name: str
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    samples: tuple[tuple[float, float, float, float, float], ...] = field(default=(), repr=False)

    def loss(self, params: float, tokens: float) -> float:
        return self.E + self.A / params**self.alpha + self.B / tokens**self.beta

    def optimal(self, flops: float) -> tuple[float, float]:
        """The N and D that minimise the loss at C = 6 N D (Hoffmann et al., appendix D.2)."""
        return _optimal(flops, self.A, self.B, self.alpha, self.beta)

    def loss_interval(self, flops: float, level: float = 0.9) -> tuple[float, float] | None:
        """The loss at each bootstrap law's own optimum for `flops`, central `level`."""
        if not self.samples:
            return None
        losses = []
        for e, a, b, alpha, beta in self.samples:
            n, d = _optimal(flops, a, b, alpha, beta)
            losses.append(e + a / n**alpha + b / d**beta)
        low, high = np.quantile(losses, [(1 - level) / 2, (1 + level) / 2])
        return float(low), float(high)

    def intervals(self, level: float = 0.9) -> dict[str, tuple[float, float]]:
        """Each constant's central `level` interval over the bootstrap refits."""
        if not self.samples:
            return {}
        table = np.array(self.samples)
        return {
            name: (
                float(np.quantile(table[:, i], (1 - level) / 2)),
                float(np.quantile(table[:, i], (1 + level) / 2)),
            )
            for i, name in enumerate(("E", "A", "B", "alpha", "beta"))
        }


@dataclass(frozen=True)
class FrontierLaw:
    """The compute-optimal frontier alone: D_opt = k C^a (or N_opt = k C^a when `of` is
    "params"); the other follows from C = 6 N D. It predicts no loss."""

    name: str
    k: float
    a: float
    of: str = "tokens"

    def optimal(self, flops: float) -> tuple[float, float]:
        value = self.k * flops**self.a
        if self.of == "params":
            return value, flops / (6 * value)
        return flops / (6 * value), value


Law = LossLaw | FrontierLaw

LAWS: dict[str, Law] = {
    # Hoffmann et al. 2022, approach 3
    "chinchilla": LossLaw("chinchilla", 1.69, 406.4, 410.7, 0.34, 0.28),
    # Besiroglu et al. 2024 (Epoch AI), "Chinchilla Scaling: A replication attempt"
    "epoch-2024": LossLaw("epoch-2024", 1.8172, 482.01, 2085.43, 0.3478, 0.3658),
    # Llama 3 paper, Figure 3 legend: optimal training tokens against FLOPs, fitted on 6e18-1e22
    "llama3": FrontierLaw("llama3", 0.299, 0.537, "tokens"),
}


def _optimal(flops: float, a: float, b: float, alpha: float, beta: float) -> tuple[float, float]:
    if not flops > 0:
        raise InputError("the compute budget must be > 0 FLOPs", field="flops")
    g = (alpha * a / (beta * b)) ** (1 / (alpha + beta))
    params = g * (flops / 6) ** (beta / (alpha + beta))
    return params, flops / (6 * params)


def load_law(spec: str) -> Law:
    """A built-in law by name, or a law file written by `corral plan scaling fit`."""
    if spec in LAWS:
        return LAWS[spec]
    path = Path(spec)
    if not path.exists():
        raise InputError(f"unknown law '{spec}'; built in: {', '.join(LAWS)}, or a law file", field="law")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read the law: {err}", source=str(path)) from None
    try:
        if data.get("kind") == "frontier":
            return FrontierLaw(
                str(data["name"]), float(data["k"]), float(data["a"]), str(data.get("of", "tokens"))
            )
        samples = tuple(tuple(float(x) for x in s) for s in data.get("samples", []))
        return LossLaw(
            str(data["name"]),
            *(float(data[k]) for k in ("E", "A", "B", "alpha", "beta")),
            samples=samples,  # type: ignore[arg-type]
        )
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"not a law file ({err})", source=str(path), field=str(err).strip("'")) from None


def save_law(law: Law, path: Path) -> None:
    data = asdict(law) | {"kind": "frontier" if isinstance(law, FrontierLaw) else "loss"}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


# --- points -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Points:
    """Training runs: parameters, tokens and final loss (and, optionally, the budget they
    were run at, for IsoFLOP grouping)."""

    params: np.ndarray
    tokens: np.ndarray
    loss: np.ndarray
    flops: np.ndarray

    def __len__(self) -> int:
        return len(self.loss)

    def take(self, index: np.ndarray) -> Points:
        return Points(self.params[index], self.tokens[index], self.loss[index], self.flops[index])


def read_points(path: Path) -> Points:
    """A CSV with columns params, tokens and loss (flops optional: 6 N D if absent). A bad
    value is an error naming the line and column."""
    try:
        handle = path.open(newline="")
    except OSError as err:
        raise InputError(f"cannot read: {err.strerror}", source=str(path)) from None
    with handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or [])
        missing = {"params", "tokens", "loss"} - columns
        if missing:
            raise InputError(f"missing column(s): {', '.join(sorted(missing))}", source=str(path), line=1)
        rows: list[tuple[float, float, float, float]] = []
        for line, row in enumerate(reader, start=2):
            values = []
            for name in ("params", "tokens", "loss", "flops"):
                text = (row.get(name) or "").strip()
                if name == "flops" and not text:
                    values.append(math.nan)
                    continue
                try:
                    value = float(text)
                except ValueError:
                    raise InputError(
                        f"'{text}' is not a number", source=str(path), line=line, field=name
                    ) from None
                if not (math.isfinite(value) and value > 0):
                    raise InputError(f"{name} must be a number > 0", source=str(path), line=line, field=name)
                values.append(value)
            rows.append(tuple(values))  # type: ignore[arg-type]
    if len(rows) < 5:
        raise InputError(f"{len(rows)} points: a law needs at least 5", source=str(path))
    table = np.array(rows)
    flops = np.where(np.isnan(table[:, 3]), 6 * table[:, 0] * table[:, 1], table[:, 3])
    return Points(table[:, 0], table[:, 1], table[:, 2], flops)


def synthetic_sweep(law: LossLaw, noise: float = 0.005, seed: int = 1) -> Points:
    """An IsoFLOP sweep drawn from `law`: six budgets from 1e18 to 1e22 FLOPs, nine sizes each
    from 1/6.3 to 6.3 times the optimum, the loss with multiplicative log-normal `noise`."""
    rng = np.random.default_rng(seed)
    rows = []
    for flops in np.logspace(18, 22, 6):
        best, _ = law.optimal(flops)
        for factor in np.logspace(-0.8, 0.8, 9):
            params = best * factor
            tokens = flops / (6 * params)
            rows.append((params, tokens, law.loss(params, tokens) * math.exp(rng.normal(0, noise)), flops))
    table = np.array(rows)
    return Points(table[:, 0], table[:, 1], table[:, 2], table[:, 3])


# --- fitting the parametric law -----------------------------------------------------------


def _objective(
    theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray
) -> tuple[float, np.ndarray]:
    """Huber loss of log-predicted against log-measured loss, and its gradient, for
    theta = (a, b, e, alpha, beta) with A = exp(a), B = exp(b), E = exp(e)."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    top = terms.max(axis=0)
    weights = np.exp(terms - top)
    total = weights.sum(axis=0)
    predicted = top + np.log(total)
    r = predicted - log_l
    small = np.abs(r) <= HUBER_DELTA
    value = np.where(small, 0.5 * r**2, HUBER_DELTA * (np.abs(r) - 0.5 * HUBER_DELTA)).sum()
    dr = np.where(small, r, HUBER_DELTA * np.sign(r))
    share = weights / total  # d predicted / d term
    grad = np.array(
        [
            (dr * share[0]).sum(),
            (dr * share[1]).sum(),
            (dr * share[2]).sum(),
            (dr * share[0] * -log_n).sum(),
            (dr * share[1] * -log_d).sum(),
        ]
    )
    return float(value), grad


def _minimise(
    starts: list[np.ndarray], log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray
) -> np.ndarray:
    try:
        from scipy.optimize import minimize
    except ImportError:
        raise InputError(f"fitting a law needs the plan extra (scipy): {install_hint('plan')}") from None

    best, best_value = starts[0], math.inf
    for start in starts:
        result = minimize(
            _objective,
            start,
            args=(log_n, log_d, log_l),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 1000},
        )
        if result.fun < best_value:
            best, best_value = result.x, float(result.fun)
    return best


def _starts() -> list[np.ndarray]:
    """Hoffmann et al.'s grid of initialisations, thinned: 4 x 4 x 3 x 3 x 3 points."""
    return [
        np.array([a, b, e, alpha, beta])
        for a in (0.0, 5.0, 10.0, 15.0)
        for b in (0.0, 5.0, 10.0, 15.0)
        for e in (-1.0, 0.0, 1.0)
        for alpha in (0.2, 0.5, 1.0)
        for beta in (0.2, 0.5, 1.0)
    ]


def _law(name: str, theta: np.ndarray, samples: tuple = ()) -> LossLaw:
    a, b, e, alpha, beta = theta
    return LossLaw(name, math.exp(e), math.exp(a), math.exp(b), float(alpha), float(beta), samples)


def fit_loss_law(
    points: Points,
    bootstrap: int = 100,
    seed: int = 0,
    name: str = "fitted",
    progress: Callable[[int, int], None] | None = None,
) -> LossLaw:
    """The parametric law that best fits `points`, with `bootstrap` refits on points drawn
    with replacement (started from the fit and near it) for intervals; `progress(done,
    total)` after each refit."""
    log_n, log_d, log_l = np.log(points.params), np.log(points.tokens), np.log(points.loss)
    rng = np.random.default_rng(seed)
    spread = np.array([1.0, 1.0, 0.2, 0.05, 0.05])  # (in log A, log B, log E, alpha, beta)
    theta = _minimise(_starts(), log_n, log_d, log_l)
    samples = []
    for _ in range(bootstrap):
        pick = rng.integers(0, len(points), len(points))
        # The Huber loss at this delta is nearly piecewise linear, so L-BFGS stalls at kinks:
        # each refit starts from the fit and from a few points scattered around it.
        starts = [theta] + [theta + spread * rng.standard_normal(5) for _ in range(BOOTSTRAP_STARTS)]
        refit = _minimise(starts, log_n[pick], log_d[pick], log_l[pick])
        law = _law(name, refit)
        samples.append((law.E, law.A, law.B, law.alpha, law.beta))
        if progress is not None:
            progress(len(samples), bootstrap)
    return _law(name, theta, tuple(samples))


# --- IsoFLOP profiles -----------------------------------------------------------------------


@dataclass(frozen=True)
class IsoFlop:
    """One budget's parabola: loss = c0 + c1 x + c2 x^2 with x = log10 N, and its minimum."""

    flops: float
    coefficients: tuple[float, float, float]
    params_opt: float
    loss_opt: float
    points: int


def isoflop_profiles(points: Points, tolerance: float = 0.05) -> list[IsoFlop]:
    """Group the points by budget (within `tolerance` in log10 C), fit a parabola in log N
    to each group of three or more, and keep those with a minimum (c2 > 0)."""
    order = np.argsort(points.flops)
    groups: list[list[int]] = []
    for i in order:
        if groups and math.log10(points.flops[i]) - math.log10(points.flops[groups[-1][0]]) <= tolerance:
            groups[-1].append(int(i))
        else:
            groups.append([int(i)])
    profiles = []
    for group in groups:
        if len(group) < 3:
            continue
        x = np.log10(points.params[group])
        c2, c1, c0 = np.polyfit(x, points.loss[group], 2)
        if c2 <= 0:
            continue
        best = -c1 / (2 * c2)
        flops = float(np.exp(np.mean(np.log(points.flops[group]))))
        profiles.append(
            IsoFlop(
                flops,
                (float(c0), float(c1), float(c2)),
                10**best,
                float(c0 + c1 * best + c2 * best**2),
                len(group),
            )
        )
    return profiles


def fit_frontier(profiles: list[IsoFlop], of: str = "params", name: str = "isoflop") -> FrontierLaw:
    """N_opt (or D_opt) = k C^a through the profiles' minima, by least squares in log-log."""
    if len(profiles) < 2:
        raise InputError(
            f"{len(profiles)} IsoFLOP profiles with a minimum: a frontier needs 2", field="points"
        )
    log_c = np.log([p.flops for p in profiles])
    values = [p.params_opt if of == "params" else p.flops / (6 * p.params_opt) for p in profiles]
    a, log_k = np.polyfit(log_c, np.log(values), 1)
    return FrontierLaw(name, float(math.exp(log_k)), float(a), of)


# --- from a size to a run ---------------------------------------------------------------------

VOCAB = 128256  # Llama 3's tokenizer


def model_for_params(params: float, name: str | None = None) -> Transformer:
    """A Llama-3-shaped decoder of about `params` weights: 128-wide heads, 8 KV heads, a
    SwiGLU MLP about 3.5 d wide, and about d / 128 layers (Llama 3's 8B and 405B ratio).
    The width is a multiple of 8 heads, the layers a multiple a deep pipeline can split,
    and the MLP's width takes up what rounding those left over."""
    if not params >= 1e6:
        raise InputError("a model needs at least 1e6 parameters", field="params")
    d = max(1024, round((128 * params / 12.5) ** (1 / 3) / 1024) * 1024)  # (heads a multiple of 8)
    heads, kv = d // 128, min(8, d // 128)

    def shape(layers: int, ffn: int) -> Transformer:
        return Transformer(name or f"dense-{params / 1e9:.3g}b", layers, d, ffn, heads, kv, VOCAB)

    probe = shape(1, round(3.5 * d / 256) * 256)
    layers = max(1.0, (params - 2 * VOCAB * d) / probe.layer_params)
    step = 1 if layers < 16 else 8 if layers < 64 else 16 if layers < 128 else 32
    layers = max(step, round(layers / step) * step)
    per_layer = (params - 2 * VOCAB * d - d) / layers
    ffn = max(256, round((per_layer - probe.attention_params - 2 * d) / (3 * d) / 256) * 256)
    return shape(layers, ffn)
