"""What the command modules share: all-or-nothing output files."""

from __future__ import annotations

import json
from pathlib import Path


def write_json(path: Path, value: object) -> None:
    """Write through a temporary file, so a failed run leaves no half-written output."""
    write_text(path, json.dumps(value, indent=1) + "\n")


def write_text(path: Path, text: str, mode: int = 0o644) -> None:
    """`text` in `path`, whole or not at all: written beside it with `mode`, then renamed, so
    whoever waits for the file (a script sourcing `corral up`'s env) never reads it half
    written."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.touch(mode=mode)
    tmp.write_text(text)
    tmp.replace(path)
