"""A section of docs/live.md run as written: its indented lines, in bash, in a fresh folder,
with this Python's corral first on the PATH, a home of its own and a free port."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.live import free_port

ROOT = Path(__file__).resolve().parent.parent.parent


def section_lines(heading: str, document: str = "docs/live.md") -> list[str]:
    """The indented lines of the section of `document` that starts with `heading`."""
    text = (ROOT / document).read_text()
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    section = text[start : end if end >= 0 else len(text)]
    return [line[4:] for line in section.splitlines() if line.startswith("    ")]


def run_lines(
    lines: list[str], folder: Path, limit_s: float, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`lines` in bash (-euo pipefail) in `folder`, waiting for what they left running."""
    env = {
        **os.environ,
        **(extra_env or {}),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{(extra_env or os.environ)['PATH']}",
        "HOME": str(folder),
        "CORRAL_PORT": str(free_port()),
    }
    for name in ("CORRAL_SERVER", "CORRAL_TOKEN", "CORRAL_DB"):
        env.pop(name, None)
    script = "set -euo pipefail\n" + "\n".join(lines) + "\nwait\n"
    return subprocess.run(
        ["bash", "-c", script], cwd=folder, env=env, capture_output=True, text=True, timeout=limit_s
    )
