"""The schedule comparison script: identical runs pass, and a changed schedule is named job by
job with a non-zero exit."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "compare_schedules.py"


def load_script():
    spec = importlib.util.spec_from_file_location("compare_schedules", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(folder: Path, events: list) -> None:
    folder.mkdir()
    (folder / "run.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def test_identical_runs_pass_and_each_differing_job_gets_one_line(tmp_path, capsys):
    script = load_script()
    events = [[0.0, "start", "a", [[0, 1]]], [0.0, "start", "b", [[1, 1]]], [5.0, "end", "a", None]]
    write(tmp_path / "before", events)
    write(tmp_path / "same", events)
    assert script.diff(tmp_path / "before", tmp_path / "same") == 0
    assert "identical (3 events)" in capsys.readouterr().out

    # b starts on another host, and a ends later: two jobs differ
    write(
        tmp_path / "after",
        [[0.0, "start", "a", [[0, 1]]], [0.0, "start", "b", [[2, 1]]], [6.0, "end", "a", None]],
    )
    assert script.diff(tmp_path / "before", tmp_path / "after") == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "run.jsonl: differs at event 1:"
    assert out[3] == "  2 jobs differ:"
    assert out[4] == "  a: before (5.0, 'end', None), after (6.0, 'end', None)"
    assert out[5] == "  b: before (0.0, 'start', [[1, 1]]), after (0.0, 'start', [[2, 1]])"
    assert len(out) == 6
