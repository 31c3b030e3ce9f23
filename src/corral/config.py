"""Models, GPUs and recipes from TOML or JSON files, with errors that name the file and key."""

from __future__ import annotations

import json
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from corral.errors import InputError

T = TypeVar("T")


def read_mapping(path: Path, section: str) -> dict[str, Any]:
    """The file's `[section]` table, or the whole file when it has none."""
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except OSError as err:
        raise InputError(f"cannot read: {err.strerror}", source=str(path)) from None
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        raise InputError(f"cannot parse: {err}", source=str(path)) from None
    if not isinstance(data, dict):
        raise InputError("expected a table of keys", source=str(path))
    return data.get(section, data)


def build(cls: type[T], data: dict[str, Any], source: str) -> T:
    """`cls(**data)`, rejecting keys the dataclass does not have and values it refuses."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"unknown key(s) {', '.join(unknown)}", source=source, field=unknown[0])
    try:
        return cls(**data)
    except InputError as err:
        raise InputError(err.message, source=source, field=err.field) from None
    except TypeError as err:
        raise InputError(str(err), source=source) from None
