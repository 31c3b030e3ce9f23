"""The terminal every command writes to, and how bad input ends a command: one red line
naming file, line and field on stderr, and exit status 2."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from corral.errors import InputError

# Piped output keeps whole table rows (rich would otherwise assume 80 columns).
console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True)


@contextmanager
def input_errors() -> Iterator[None]:
    try:
        yield
    except InputError as err:
        errors.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
