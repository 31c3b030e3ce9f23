"""The command line: thin modules that parse, call the library and print. Bad input exits
with status 2 and a message naming the file, line and field; nothing is written unless the
whole run succeeds."""

from __future__ import annotations

import sys

from corral.cli import inputs, live, reliability, services, simulate, sweep, usage  # noqa: F401  (each registers its commands)
from corral.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    sys.exit(app())
