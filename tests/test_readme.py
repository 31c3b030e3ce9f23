"""Every `corral` command the README quotes runs as written: the fast ones in the suite, in
the README's order (later ones read what earlier ones wrote), the slow ones with `-m slow`."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from corral.cli import app

README = Path(__file__).resolve().parent.parent / "README.md"
# minutes rather than seconds on a 2-core machine
SLOW = ("--scenario", "explain ", "reliability study", "--jobs 1000000", "--reasons")


def readme_commands() -> list[str]:
    """The `corral ...` lines of the README's indented command blocks, continuations joined
    and trailing comments dropped."""
    commands, pending = [], ""
    for line in README.read_text().splitlines():
        if not line.startswith("    "):
            pending = ""
            continue
        text = pending + line.strip()
        if text.endswith("\\"):
            pending = text[:-1] + " "
            continue
        pending = ""
        if text.startswith("corral "):
            commands.append(re.sub(r"\s+#.*$", "", text))
    return commands


COMMANDS = readme_commands()
FAST = [c for c in COMMANDS if not any(s in c for s in SLOW)]


def run(command: str) -> None:
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
