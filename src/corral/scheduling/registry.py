"""Policy names as the CLI, scenario files and the library accept them, with the parameters
papers vary: `las:thresholds=3250,7200:knob=8`, `fair-decay:half_life=86400`,
`ftf:lease=300:margin=1.5`, `fifo-backfill:depth=100`. Any policy followed by `+elastic`
resizes elastic jobs around its decisions (scheduling/elastic.py): `fair+elastic:hold=600`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from corral.errors import InputError
from corral.scheduling.elastic import Elastic
from corral.scheduling.fifo import Fifo, FifoBackfill, FifoFirstFit
from corral.scheduling.ftf import FinishTimeFair
from corral.scheduling.las import ORDERS, STARVE_FROM, Las
from corral.scheduling.policy import Policy
from corral.scheduling.preemptive import Srtf
from corral.scheduling.sharing import Parts, Shared
from corral.scheduling.sjf import Sjf

WEEK_S = 7 * 24 * 3600.0  # Slurm's default PriorityDecayHalfLife


def _positive(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise ValueError("must be a positive finite number")
    return value


def _at_least_zero(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise ValueError("must be a finite number >= 0")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be a whole number >= 1")
    return value


def _list_of_positive(text: str) -> tuple[float, ...]:
    return tuple(_positive(part) for part in text.split(","))


def _choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return text

    return parse


@dataclass(frozen=True)
class Param:
    """One settable parameter: how to read it and the keyword it fills."""

    parse: Callable[[str], Any]
    keyword: str


DEPTH = Param(_count, "depth")
BACKFILL_DEPTH = Param(_count, "backfill_depth")


def _shared(name: str, order: str, **parts: Any) -> Callable[..., Shared]:
    """A sharing policy's maker: these parts, and those a spec sets."""
    return lambda **given: Shared(name, Parts(order, **{**parts, **given}))


@dataclass(frozen=True)
class Kind:
    make: Callable[..., Policy]
    params: dict[str, Param]


POLICY_KINDS: dict[str, Kind] = {
    "fifo": Kind(Fifo, {}),
    "fifo-firstfit": Kind(FifoFirstFit, {}),
    "fifo-backfill": Kind(FifoBackfill, {"depth": DEPTH}),
    "sjf": Kind(Sjf, {}),
    "srtf": Kind(Srtf, {}),
    "las": Kind(
        Las,
        {
            "thresholds": Param(_list_of_positive, "thresholds_gpu_s"),
            "knob": Param(_at_least_zero, "promote_knob"),
            "order": Param(_choice(*ORDERS), "order"),
            "starve": Param(_choice(*STARVE_FROM), "starve_from"),
        },
    ),
    "ftf": Kind(
        FinishTimeFair,
        {
            "lease": Param(_positive, "lease_s"),
            "margin": Param(_positive, "margin"),
        },
    ),
    "quota-fifo": Kind(_shared("quota-fifo", "fifo"), {}),
    "fair": Kind(_shared("fair", "fair", reclaim=True, backfill=True), {"depth": BACKFILL_DEPTH}),
    "fair-decay": Kind(
        _shared("fair-decay", "fair", reclaim=True, backfill=True, half_life_s=WEEK_S),
        {"depth": BACKFILL_DEPTH, "half_life": Param(_positive, "half_life_s")},
    ),
    "priority": Kind(
        _shared("priority", "priority", reclaim=True, priority_preemption=True, backfill=True),
        {"depth": BACKFILL_DEPTH},
    ),
}

# name -> a policy with its defaults
POLICIES: dict[str, Callable[[], Policy]] = {name: kind.make for name, kind in POLICY_KINDS.items()}


def make_policy(spec: str) -> Policy:
    """The policy a spec names: `name` or `name:key=value:key=value`. A policy made with
    parameters carries the spec as its name, so its results say what ran."""
    name, *settings = [part.strip() for part in spec.strip().split(":")]
    key = name.lower()
    elastic = key.endswith("+elastic")
    key = key.removesuffix("+elastic")
    if key not in POLICY_KINDS:
        raise InputError(f"unknown policy '{name}'; known: {', '.join(POLICY_KINDS)}", field="policy")
    kind = POLICY_KINDS[key]
    given: dict[str, Any] = {}
    hold: dict[str, float] = {}
    elastic_settings = settings
    settings = [x for x in settings if not (elastic and x.partition("=")[0] == "hold")]
    for setting in elastic_settings:
        param, sep, text = setting.partition("=")
        if elastic and param == "hold":
            try:
                hold["hold_s"] = _at_least_zero(text)
            except ValueError as e:
                raise InputError(f"policy {key}+elastic: hold={text!r}: {e}", field="policy") from None
            continue
        if param not in kind.params:
            known = ", ".join(kind.params) or "none"
            raise InputError(f"policy {key} has no parameter '{param}' (it has: {known})", field="policy")
        if not sep or not text:
            raise InputError(f"policy {key}: give '{param}=value'", field="policy")
        target = kind.params[param].keyword
        if target in given:
            raise InputError(f"policy {key}: '{param}' given twice", field="policy")
        try:
            given[target] = kind.params[param].parse(text)
        except ValueError as e:
            raise InputError(f"policy {key}: {param}={text!r}: {e}", field="policy") from None
    try:
        policy = kind.make(**given)
    except ValueError as e:
        raise InputError(f"policy {spec.strip()}: {e}", field="policy") from None
    if settings:
        policy.name = ":".join([key, *settings])
    if elastic:
        policy = Elastic(policy, **hold)
        policy.name = ":".join([f"{key}+elastic", *elastic_settings])
    return policy


def policy_help() -> str:
    """Every policy and its parameters, for --help."""
    parts = []
    for name, kind in POLICY_KINDS.items():
        params = ",".join(kind.params)
        parts.append(f"{name}[:{params}=..]" if params else name)
    return "; ".join(parts) + "; any of them +elastic[:hold=SECONDS]"
