"""The terminal every command writes to, how bad input ends a command (one red line naming
file, line and field on stderr, and exit status 2), progress bars, and the `--json` option.

Markup is off: queue names, job ids and file names come from users and print as written
(`team[red]a` stays `team[red]a`); styles are given as `Text` instead."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from corral.errors import InputError

# Piped output keeps whole table rows (rich would otherwise assume 80 columns).
console = Console(width=None if sys.stdout.isatty() else 160, markup=False)
errors = Console(stderr=True, markup=False)


@contextmanager
def input_errors() -> Iterator[None]:
    try:
        yield
    except InputError as err:
        errors.print(Text.assemble(("error:", "bold red"), f" {err}"), highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def bold(head: str, rest: str) -> Text:
    """`head` in bold, then `rest`, both printed as written."""
    return Text.assemble((head, "bold"), rest)


AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


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
