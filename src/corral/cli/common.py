"""What the command modules share: progress bars and all-or-nothing JSON output."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from corral.report.terminal import errors


@contextmanager
def progress_bars(verb: str = "simulating") -> Iterator[Callable[[str], Callable[[int, int], None]]]:
    """A bar per task (`verb name`), on the terminal only, gone when done."""
    with Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
        transient=True,
        disable=not errors.is_terminal,
    ) as bar:

        def for_policy(name: str) -> Callable[[int, int], None]:
            task = bar.add_task(f"{verb} {name}", total=None)

            def update(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            return update

        yield for_policy


def write_json(path: Path, value: object) -> None:
    """Write through a temporary file, so a failed run leaves no half-written output."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=1) + "\n")
    tmp.replace(path)
