"""The one driver both faces run their policies with: a decision neither knows is refused
alike, and no module but the driver asks a policy to decide."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from corral.live import reconciler as reconciler_module
from corral.live.reconciler import Config, Reconciler
from corral.scheduling.fifo import Fifo
from corral.sim.engine import Engine
from tests.conftest import flat_fleet, make_jobs
from tests.support.live import Clock, add_job, add_nodes, database

SRC = Path(__file__).resolve().parent.parent / "src" / "corral"


class Undecided(Fifo):
    """FIFO that, once it has started what it starts, yields something that is no decision."""

    name = "undecided"

    def decide(self, pool):
        yield from super().decide(pool)
        yield ("start", 0)


def test_the_simulator_refuses_a_decision_it_does_not_know():
    jobs = make_jobs([(0.0, 1, 10.0)])
    with pytest.raises(TypeError, match=r"policy undecided decided \('start', 0\), which is no decision"):
        Engine(flat_fleet(1, 4), jobs, Undecided()).run()


def test_the_live_reconciler_refuses_it_alike(tmp_path, monkeypatch):
    """Before the driver, the reconciler dropped such a decision without a word."""
    monkeypatch.setattr(reconciler_module, "make_policy", lambda name: Undecided())
    engine = database(f"sqlite:///{tmp_path}/live.db")
    add_nodes(engine, [4])
    jobs = make_jobs([(0.0, 1, 10.0)])
    with Session(engine) as session, session.begin():
        add_job(session, jobs, 0)
    reconciler = Reconciler(engine, Config("fifo"), Clock())
    with pytest.raises(TypeError, match="which is no decision"):
        reconciler.step()


def _decide_calls() -> dict[str, list[int]]:
    """Every `<something>.decide(...)` call in src/corral, by module: the lines."""
    calls: dict[str, list[int]] = {}
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            call = isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            if call and node.func.attr == "decide":
                target = ast.unparse(node.func.value)
                calls.setdefault(f"{path.relative_to(SRC)}:{target}", []).append(node.lineno)
    return calls


def test_only_the_driver_asks_a_policy_to_decide():
    """Policies are asked to decide in mechanism/driver.py only (the elastic wrapper asks the
    policy it wraps); the faces ask the driver."""
    asking_a_policy = {where for where in _decide_calls() if not where.endswith(("driver", "self.driver"))}
    assert asking_a_policy == {"mechanism/driver.py:self.policy", "scheduling/elastic.py:self.inner"}
