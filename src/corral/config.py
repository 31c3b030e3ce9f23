"""Models, GPUs and recipes from TOML or JSON files, validated by pydantic against the
dataclass they build (extra keys forbidden, types coerced only where lossless), with errors
that name the file and key."""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import MISSING, fields
from functools import cache
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_type_hints

from pydantic import BeforeValidator, ConfigDict, Field, ValidationError, create_model

from corral.errors import InputError

T = TypeVar("T")

DECIMAL = {"": 1.0, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12, "P": 1e15}
BINARY = {"": 1.0, "K": 2.0**10, "M": 2.0**20, "G": 2.0**30}


def parse_count(text: str, field: str, binary: bool = False) -> float:
    """'15.6T' (decimal: token totals, FLOPs) or '16M' (binary: batch sizes, which are
    sequences times a power-of-two length); plain and scientific numbers pass through."""
    units = BINARY if binary else DECIMAL
    match = re.fullmatch(r"\s*([0-9.]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]?)\s*", text)
    if not match or match.group(2).upper() not in units:
        raise InputError(
            f"'{text}' is not a count (a number with an optional {'/'.join(k for k in units if k)} suffix)",
            field=field,
        )
    try:
        value = float(match.group(1)) * units[match.group(2).upper()]
    except ValueError:
        raise InputError(f"'{text}' is not a number", field=field) from None
    if not value > 0 or not math.isfinite(value):
        raise InputError(f"{field} must be a finite number > 0", field=field)
    return value


def _count(binary: bool) -> BeforeValidator:
    def parse(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return parse_count(value, "", binary)
        except InputError as err:
            raise ValueError(err.message) from None

    return BeforeValidator(parse)


# A file's count of tokens or FLOPs ("15.6T"), or of batch tokens ("16M" = 16 x 2^20).
Count = Annotated[float, _count(binary=False)]
BinaryCount = Annotated[float, _count(binary=True)]


# Config value types as the dataclasses declare them (plain code reads them as int, float,
# str; `build` holds files to them): no bool for a number, no number for a name.
MAX_COUNT = 10_000_000  # hosts, GPUs per host, hosts per rack, racks per pod: far past any fleet
Name = Annotated[str, Field(strict=True, min_length=1)]
Text = Annotated[str, Field(strict=True)]
Whole = Annotated[int, Field(strict=True, ge=1, le=MAX_COUNT)]
NonNegative = Annotated[float, Field(strict=True, ge=0.0, allow_inf_nan=False)]


DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([smhd]?)\s*$")


def parse_duration_s(text: str, field: str) -> float:
    """'90', '90s', '30m', '2h', '1.5d'."""
    match = DURATION.match(text)
    if not match:
        raise InputError(f"'{text}' is not a duration (a number with s, m, h or d)", field=field)
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def read_mapping(path: Path, section: str) -> dict[str, Any]:
    """The file's `[section]` table, or the whole file when it has none."""
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except OSError as err:
        raise InputError(f"cannot read: {err.strerror}", source=str(path)) from None
    except UnicodeDecodeError:
        raise InputError("cannot read: not UTF-8 text", source=str(path)) from None
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        raise InputError(f"cannot parse: {err}", source=str(path)) from None
    if not isinstance(data, dict):
        raise InputError("expected a table of keys", source=str(path))
    return data.get(section, data)


@cache
def _schema(cls: type) -> type:
    """A pydantic model of the dataclass `cls`'s fields: its types, its defaults, no others."""
    hints = get_type_hints(cls, include_extras=True)
    spec: dict[str, Any] = {}
    for f in fields(cls):
        if f.default is not MISSING:
            spec[f.name] = (hints[f.name], f.default)
        elif f.default_factory is not MISSING:
            spec[f.name] = (hints[f.name], f.default_factory())
        else:
            spec[f.name] = (hints[f.name], ...)
    config = ConfigDict(extra="forbid", allow_inf_nan=False, arbitrary_types_allowed=True)
    return create_model(cls.__name__, __config__=config, **spec)


def build(cls: type[T], data: dict[str, Any], source: str, prefix: str = "") -> T:
    """`cls(**data)` once pydantic has checked every key and type; the dataclass's own
    checks (`__post_init__`) then say what values it refuses. Errors name the key as
    `prefix` + key (`queues[2].nominal_gpus`)."""
    try:
        checked = _schema(cls).model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = prefix + ".".join(str(part) for part in first["loc"])
        if first["type"] == "extra_forbidden":
            message = f"unknown key '{where}'"
        elif first["type"] == "missing":
            message = f"missing '{where}'"
        elif first["type"] == "value_error":  # (our own messages, which quote the value)
            message = first["msg"].removeprefix("Value error, ")
        else:
            message = f"{first['msg']}: {first['input']!r}"
        raise InputError(message, source=source, field=where) from None
    try:
        return cls(**{f.name: getattr(checked, f.name) for f in fields(cls)})  # type: ignore[arg-type]
    except InputError as err:
        field = None if err.field is None else prefix + err.field
        raise InputError(err.message, source=source, field=field) from None
