"""The server's one reconciler and the thread that steps it.

The reconciler is built from the database when first needed and stepped under a lock (the
API reads its state too). It is thrown away, and rebuilt from the database at the next
step, after a failed step or a change of configuration; every rebuild is logged with its
cause, and a failed step at ERROR with its traceback. Only the server that holds the
cluster's leader lock runs the thread.
"""

from __future__ import annotations

import fcntl
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from corral.live.metrics import ServerMetrics
from corral.live.reconciler import UNKNOWN_DURATION_S, Config, Reconciler
from corral.sim.forecast import capture, starts_from

log = logging.getLogger(__name__)


class LeaderLock:
    """One reconciler per cluster: a PostgreSQL advisory lock held on its own connection, or
    a file lock beside a SQLite database."""

    KEY = 0x636F7272  # "corr"

    def __init__(self, engine: Engine, data_dir: Path) -> None:
        self.engine, self.path = engine, data_dir / "leader.lock"
        self.handle: Any = None

    def acquire(self) -> bool:
        if self.engine.dialect.name == "postgresql":
            self.handle = self.engine.connect()
            got = self.handle.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.KEY}).scalar()
            if not got:
                self.handle.close()
                self.handle = None
            return bool(got)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = self.path.open("w")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.close()
            self.handle = None
            return False
        return True

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


class ReconcilerLoop:
    """The reconciler of one server, stepped every `every_s` by a thread (None: by the
    caller, as tests do)."""

    def __init__(
        self,
        engine: Engine,
        config: Config,
        data_dir: Path,
        clock: Callable[[], float],
        every_s: float | None = 0.2,
    ) -> None:
        self.engine, self.config, self.data_dir, self.clock = engine, config, data_dir, clock
        self.every_s = every_s
        self.lock = threading.Lock()
        self._reconciler: Reconciler | None = None
        self._cause = "the server started"  # (why the next reconciler is built)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.leading = threading.Event()  # (set while this server holds the leader lock)
        self.metrics: ServerMetrics | None = None  # (told each step's time and first starts)

    def reconciler(self) -> Reconciler:
        """The reconciler, built from the database if there is none (hold `lock`)."""
        if self._reconciler is None:
            self._reconciler = Reconciler(self.engine, self.config, self.clock, self._cause)
        return self._reconciler

    def rebuild(self, cause: str) -> None:
        """Throw the reconciler away: the next step builds one from the database, logging
        `cause` (hold `lock`)."""
        self._reconciler, self._cause = None, cause

    def step(self) -> int:
        """One step; the attempts it committed."""
        with self.lock:
            began = time.perf_counter()
            reconciler = self.reconciler()
            started = reconciler.step()
            waits, reconciler.first_waits = reconciler.first_waits, []
            if self.metrics is not None:
                self.metrics.stepped(began, waits)
            return started

    def reasons(self, job_row: int) -> list[tuple[float, str, str]]:
        with self.lock:
            return self.reconciler().reasons(job_row)

    def forecast(self) -> dict[int, float]:
        """Each waiting job's expected start (Job.id -> time), the simulator run forward
        from the reconciler's state with its policy's (sim/forecast.py): jobs with no
        estimate run for the median of their queue's succeeded jobs (a year where none has
        succeeded yet)."""
        with self.lock:
            reconciler = self.reconciler()
            cluster, driver = reconciler.cluster, reconciler.driver
            if cluster is None or driver is None:
                return {}
            with Session(self.engine) as session:
                typical = reconciler.typical_run_s(session)
            unknown = {
                j: typical[cluster.queue_name[j]]
                for j in range(len(cluster))
                if cluster.duration_s[j] == UNKNOWN_DURATION_S and cluster.queue_name[j] in typical
            }
            now, rows = self.clock(), list(reconciler.row_of)
            captured = capture(cluster)
            asked = (driver.export(), now, dict(driver.wakes), dict(driver.gates.outcome), unknown)
        # (the simulation runs outside the lock: the reconciler steps on meanwhile)
        starts = starts_from(captured, self.config.policy, *asked)
        return {rows[j]: at_s for j, at_s in starts.items()}

    def held_nodes(self, name: str) -> list[str] | None:
        """The nodes reservation `name` holds now, as the scheduler placed it."""
        with self.lock:
            return self.reconciler().held_nodes(name)

    def _run(self) -> None:
        leader = LeaderLock(self.engine, self.data_dir)
        while not self._stop.is_set() and not leader.acquire():
            self._stop.wait(1.0)
        log.info("this server leads the cluster: its reconciler steps every %.3f s", self.every_s)
        self.leading.set()
        try:
            while not self._stop.is_set():
                try:
                    self.step()
                except Exception as err:  # (retried: the database is the truth)
                    log.exception("reconcile step failed; the reconciler is rebuilt from the database")
                    with self.lock:
                        self.rebuild(f"the step before failed ({type(err).__name__}: {err})")
                self._stop.wait(self.every_s or 0.2)
        finally:
            self.leading.clear()
            leader.release()

    def start(self) -> None:
        if self.every_s is not None:
            self._thread = threading.Thread(target=self._run, name="corral-reconciler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
