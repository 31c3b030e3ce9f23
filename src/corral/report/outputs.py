"""Outputs that are checked before a run and appear whole or not at all: a run that fails
or is interrupted leaves what was there before, and two runs never mix their files."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from corral.errors import InputError, install_hint
from corral.report.terminal import console
from corral.workload import current_umask

TABLE_SUFFIXES = (".csv", ".csv.gz", ".parquet")


def pyplot() -> Any:
    """matplotlib.pyplot on a file backend, or an error naming `--plot` when the plot extra
    is not installed."""
    try:
        import matplotlib
    except ImportError:
        raise InputError(f"--plot needs the plot extra: {install_hint('plot')}", field="plot") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _writable_parent(path: Path, field: str) -> None:
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write in {parent}", source=str(path), field=field)


def check_output_dir(out: Path | None, field: str = "out") -> None:
    """Refuse, before any work, an output folder corral could not create or replace."""
    if out is None:
        return
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file; --{field} names a folder", source=str(out), field=field)
    _writable_parent(out, field)


def check_output_table(path: Path | None, field: str) -> None:
    """Refuse, before any work, a table output corral could not write, or one whose suffix
    is not a format it writes (.csv, .csv.gz, .parquet)."""
    if path is None:
        return
    if path.is_dir():
        raise InputError(f"{path} is a folder; --{field} names a file", source=str(path), field=field)
    if not path.name.endswith(TABLE_SUFFIXES):
        raise InputError(
            f"{path.name}: corral writes {', '.join(TABLE_SUFFIXES)} here", source=str(path), field=field
        )
    _writable_parent(path, field)


def check_output_file(path: Path, field: str, suffixes: tuple[str, ...]) -> None:
    """Refuse, before any work, a file output corral could not write, or of another kind
    than `suffixes`."""
    if path.is_dir():
        raise InputError(f"{path} is a folder; --{field} names a file", source=str(path), field=field)
    if path.suffix not in suffixes:
        raise InputError(
            f"{path.name}: corral draws {', '.join(suffixes)} here", source=str(path), field=field
        )
    _writable_parent(path, field)


@contextmanager
def output_dir(out: Path) -> Iterator[Path]:
    """A fresh folder to write a run's outputs into. Only once all of them are written is it
    renamed into place as `out`, replacing whatever `out` held, so an interrupted run leaves
    the previous outputs as they were and two runs never mix their files."""
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    stage.chmod(0o777 & ~current_umask())
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if out.exists():
        held = sorted(p.name for p in out.iterdir())
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old."))
        out.rename(old / out.name)
        stage.rename(out)
        shutil.rmtree(old, ignore_errors=True)
        if held:
            console.print(f"replaced {out} (it held {', '.join(held)})")
    else:
        stage.rename(out)
