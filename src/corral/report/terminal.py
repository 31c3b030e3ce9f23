"""The terminal every command writes to, and how bad input ends a command: one red line
naming file, line and field on stderr, and exit status 2.

Markup is off: queue names, job ids and file names come from users and print as written
(`team[red]a` stays `team[red]a`); styles are given as `Text` instead."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
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
