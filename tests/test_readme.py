"""Every `corral` command the README and docs/ quote runs as written: the fast ones in the
suite, in the README's order (later ones read what earlier ones wrote), the slow ones with
`-m slow`. Options the docs give in [brackets] are run too."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from unittest import mock

import pytest
from typer.testing import CliRunner

from corral.cli import app

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# minutes rather than seconds on a 2-core machine
SLOW = ("--scenario", "explain ", "reliability study", "--jobs 1000000", "--reasons", "corral sweep")
# commands of a running cluster (tests/test_live_up.py runs that loop in real processes)
LIVE = (
    "corral up",
    "corral serve",
    "corral agent",
    "corral team",
    "corral submit",
    "corral jobs",
    "corral logs",
    "corral cancel",
    "corral wait",
    "corral nodes",
    "corral quota",
    "corral history",
    "corral fleet export",
    "corral explain JOB",
    "corral config",
    "corral cordon",
    "corral service",
    "corral proxy",
    "corral moves",
    "corral reserve",
    "corral reservations",
)
LIVE_READS = ("week.parquet", "live.toml")


def quoted_commands(document: Path) -> list[str]:
    """The `corral ...` lines of a document's indented command blocks, continuations joined,
    trailing comments dropped and [optional] parts kept."""
    commands, pending = [], ""
    for line in document.read_text().splitlines():
        if not line.startswith("    "):
            pending = ""
            continue
        text = pending + line.strip()
        if text.endswith("\\"):
            pending = text[:-1] + " "
            continue
        pending = ""
        if text.startswith("corral "):
            commands.append(re.sub(r"\s+#.*$", "", text).replace("[", "").replace("]", ""))
    return commands


COMMANDS = [
    c
    for document in DOCUMENTS
    for c in quoted_commands(document)
    if not c.startswith(LIVE) and not any(name in c for name in LIVE_READS)
]
FAST = [c for c in COMMANDS if not any(s in c for s in SLOW)]


# (`--show-completion SHELL` as typer reads it where it cannot find the user's shell)
NAMED_SHELL = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}


def run(command: str) -> None:
    with mock.patch.dict(os.environ, NAMED_SHELL):  # (read when the command is built)
        result = CliRunner().invoke(app, shlex.split(command)[1:])
    assert result.exit_code == 0, f"{command}\n{result.output}"


def test_the_readme_quotes_commands():
    assert len(FAST) >= 10 and any("trace example" in c for c in FAST)


def test_the_fast_readme_commands_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for command in FAST:
        run(command)


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c in COMMANDS if c not in FAST])
def test_the_slow_readme_commands_run_as_written(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run("corral trace example philly --out philly.csv")
    run(command)
