"""The live face's log: a failed step is logged at ERROR with its traceback and the rebuild
that follows with its cause, as text or JSON lines, in DATA_DIR/server.log, rotated."""

from __future__ import annotations

import json
import logging
import time

import pytest

from corral.live import logs
from corral.live.loop import ReconcilerLoop
from corral.live.reconciler import Config, Reconciler
from tests.support.live import Clock, add_nodes, database

WAIT_S = 20.0  # at most this long for the loop's thread to fail a step and rebuild


def records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def json_log(tmp_path):
    handler = logs.log_to(tmp_path, "debug", "json")
    yield tmp_path / logs.LOG_FILE
    logs.stop_logging(handler)


def test_a_failed_step_is_logged_with_its_traceback_and_the_rebuild_with_its_cause(
    tmp_path, json_log, monkeypatch
):
    engine = database(f"sqlite:///{tmp_path}/live.db")
    add_nodes(engine, [4])
    real_step = Reconciler.step
    failures = iter([True])

    def step(self):
        if next(failures, False):
            raise RuntimeError("the disk is full")
        return real_step(self)

    monkeypatch.setattr(Reconciler, "step", step)
    loop = ReconcilerLoop(engine, Config("fifo"), tmp_path, Clock(), every_s=0.01)
    loop.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            rebuilt = [r for r in records(json_log) if r["logger"] == "corral.live.reconciler"]
            if len(rebuilt) >= 2:
                break
            time.sleep(0.05)
    finally:
        loop.stop()
    lines = records(json_log)
    failed = [r for r in lines if r["level"] == "ERROR"]
    assert len(failed) == 1
    assert failed[0]["logger"] == "corral.live.loop"
    assert "reconcile step failed" in failed[0]["message"]
    assert "RuntimeError: the disk is full" in failed[0]["traceback"]
    causes = [r["message"] for r in lines if r["logger"] == "corral.live.reconciler"]
    assert "the server started" in causes[0]
    assert "the step before failed (RuntimeError: the disk is full)" in causes[1]
    assert all(r["t"].endswith("+00:00") for r in lines)


def test_decisions_are_logged_at_debug_and_kept_out_at_info(tmp_path):
    from sqlalchemy.orm import Session

    from tests.conftest import make_jobs
    from tests.support.live import add_job

    engine = database(f"sqlite:///{tmp_path}/live.db")
    add_nodes(engine, [4])
    with Session(engine) as session, session.begin():
        add_job(session, make_jobs([(0.0, 2, 10.0)]), 0)
    for level, shown in (("info", False), ("debug", True)):
        folder = tmp_path / level
        folder.mkdir()
        handler = logs.log_to(folder, level, "text")
        try:
            Reconciler(engine, Config("fifo"), Clock(), cause=f"a test at {level}").step()
        finally:
            logs.stop_logging(handler)
        text = (folder / logs.LOG_FILE).read_text()
        assert (
            f"INFO corral.live.reconciler: reconciler rebuilt from the database at 0.000: a test at {level}"
            in text
        )
        job = "j0" if level == "info" else "j1"
        assert (f"DEBUG corral.mechanism.driver: pool 0 at 0.000: job {job}: Start(" in text) is shown, text
        if level == "info":  # (the job started: a second reconciler at debug decides nothing new)
            with Session(engine) as session, session.begin():
                add_job(session, make_jobs([(0.0, 2, 10.0)] * 2), 1)


def test_the_log_is_rotated(tmp_path, monkeypatch):
    monkeypatch.setattr(logs, "ROTATE_BYTES", 2_000)
    handler = logs.log_to(tmp_path, "info", "text")
    try:
        for k in range(300):
            logging.getLogger("corral.live.test").info("line %d of a log that grows", k)
    finally:
        logs.stop_logging(handler)
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == ["server.log", *(f"server.log.{k}" for k in range(1, logs.KEEP_FILES + 1))]
    assert all(p.stat().st_size <= 2_000 for p in tmp_path.iterdir())
    assert "line 299 of" in (tmp_path / "server.log").read_text()


@pytest.mark.parametrize(
    ("level", "form", "field"), [("loud", "text", "log-level"), ("info", "xml", "log-format")]
)
def test_bad_logging_settings_are_refused_naming_the_option(tmp_path, level, form, field):
    from corral.errors import InputError

    with pytest.raises(InputError) as err:
        logs.log_to(tmp_path, level, form)
    assert err.value.field == field
    assert not (tmp_path / logs.LOG_FILE).exists()
