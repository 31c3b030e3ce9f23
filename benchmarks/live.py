"""Speed of the live control plane, on SQLite and on PostgreSQL (needs the server extra):

    python benchmarks/live.py submit [n]       # sustained submissions per second (n = 2,000)
    python benchmarks/live.py step             # a reconcile step with 10,000 pending on 1,000 nodes
    python benchmarks/live.py start [n]        # submit to process start on an idle `corral up` (n = 10)
    python benchmarks/live.py ray-start [n]    # the same through `corral serve --executor ray`, for
                                               # 1-GPU jobs and 8+8-GPU gangs on a local 2-node Ray cluster

Submissions go to `corral serve` over HTTP from 8 client threads. Each prints one JSON line
per database. PostgreSQL is the server at
CORRAL_TEST_POSTGRES (default postgresql://postgres@127.0.0.1:5432/postgres), on a fresh
database that is dropped afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from corral.live.db import ATTEMPT_RUNNING, EXITED, Attempt, Job, Node, connect, migrate
from corral.live.reconciler import Config, Reconciler

POSTGRES = os.environ.get("CORRAL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def each_database(folder: Path) -> Iterator[tuple[str, str]]:
    yield "sqlite", f"sqlite:///{folder}/bench.db"
    try:
        import psycopg

        admin = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=3)
    except Exception as err:  # (no server: SQLite only)
        print(json.dumps({"postgresql": f"skipped: {err}"}))
        return
    name = f"corral_bench_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield "postgresql", POSTGRES.rsplit("/", 1)[0] + "/" + name
    finally:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def bench_submit(n: int, clients: int = 8) -> None:
    """`corral serve` in a subprocess (no agent: jobs stay pending), `clients` threads each
    submitting over HTTP keep-alive."""
    import concurrent.futures

    import httpx

    with tempfile.TemporaryDirectory() as folder:
        for name, url in each_database(Path(folder)):
            data = Path(folder) / name
            serve = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "corral.cli",
                    "serve",
                    "--data-dir",
                    str(data),
                    "--port",
                    "8798",
                    "--db",
                    url,
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                admin = ""
                for line in serve.stdout:  # type: ignore[union-attr]
                    if line.startswith("admin token:"):
                        admin = line.split(":", 1)[1].strip()
                        break
                headers = {"Authorization": f"Bearer {admin}"}
                body = {"gpus": 1, "command": ["true"]}

                def submit_many(count: int, headers: dict = headers, body: dict = body) -> None:
                    with httpx.Client(base_url="http://127.0.0.1:8798", headers=headers) as client:
                        for _ in range(count):
                            assert client.post("/v1/jobs", json=body).status_code == 201

                began = time.perf_counter()
                with concurrent.futures.ThreadPoolExecutor(clients) as pool:
                    list(pool.map(submit_many, [n // clients] * clients))
                wall = time.perf_counter() - began
                done = n // clients * clients
                row = {"bench": "submit", "db": name, "jobs": done, "clients": clients}
                print(json.dumps(row | {"per_s": round(done / wall), "wall_s": round(wall, 2)}))
            finally:
                serve.terminate()
                serve.wait(timeout=30)


def bench_step(pending: int = 10_000, nodes: int = 1_000) -> None:
    with tempfile.TemporaryDirectory() as folder:
        for name, url in each_database(Path(folder)):
            engine = connect(url)
            migrate(engine)
            with Session(engine) as session, session.begin():
                for k in range(nodes):
                    session.add(
                        Node(name=f"n{k:04d}", pool="default", gpus=8, registered_s=k * 1e-6, heartbeat_s=0.0)
                    )
                # enough to fill every GPU, and `pending` more
                for k in range(nodes + pending):
                    session.add(
                        Job(
                            job_id=str(k),
                            team="t",
                            queue="default",
                            gpus=8,
                            command=["x"],
                            submit_s=float(k) * 1e-3,
                        )
                    )
            clock = Clock()
            reconciler = Reconciler(engine, Config("fifo-backfill", heartbeat_timeout_s=1e12), clock)
            clock.t = 100.0
            began = time.perf_counter()
            started = reconciler.step()
            fill = time.perf_counter() - began
            with Session(engine) as session, session.begin():
                session.execute(update(Attempt).values(state=ATTEMPT_RUNNING))
            times = []
            for _ in range(10):  # one job ends, one starts in its place
                clock.t += 1.0
                with Session(engine) as session, session.begin():
                    attempt = session.scalars(
                        select(Attempt).where(Attempt.state == ATTEMPT_RUNNING).limit(1)
                    ).one()
                    attempt.state, attempt.exit_code, attempt.end_s = EXITED, 0, clock.t
                began = time.perf_counter()
                assert reconciler.step() == 1
                times.append(time.perf_counter() - began)
                with Session(engine) as session, session.begin():
                    session.execute(
                        update(Attempt).where(Attempt.state == "committed").values(state=ATTEMPT_RUNNING)
                    )
            row = {
                "bench": "step",
                "db": name,
                "nodes": nodes,
                "pending": pending,
                "first_step_s": round(fill, 3),
            }
            row |= {
                "first_step_starts": started,
                "step_ms_median": round(1e3 * sorted(times)[len(times) // 2], 1),
            }
            print(json.dumps(row))
            engine.dispose()


def bench_start(n: int) -> None:
    """`corral up --gpus 4` in a subprocess; each job prints the time its process began."""
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "cluster"
        command = ["up", "--gpus", "4", "--data-dir", str(data), "--port", "8799"]
        up = subprocess.Popen([sys.executable, "-m", "corral.cli", *command], stdout=subprocess.DEVNULL)
        try:
            while not (data / "env").exists():
                time.sleep(0.05)
            env = dict(line.split("=", 1) for line in (data / "env").read_text().splitlines())
            delays = time_starts(env["CORRAL_SERVER"], env["CORRAL_TOKEN"], n, 1)
            print(json.dumps({"bench": "submit to start", "executor": "agent", "gpus": 1} | summary(delays)))
        finally:
            up.terminate()
            up.wait(timeout=30)


def bench_ray_start(n: int) -> None:
    """`corral serve --executor ray` on a local Ray cluster of two 8-GPU worker nodes (fake
    GPUs); 1-GPU jobs, then 16-GPU gangs, each rank printing the time its process began."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.support.ray_cluster import RayCluster

    cluster = RayCluster({"n0": 8, "n1": 8})
    try:
        with tempfile.TemporaryDirectory() as folder:
            data = Path(folder) / "cluster"
            command = ["serve", "--executor", "ray", "--ray-address", cluster.address]
            command += [
                "--ray-work-dir",
                str(Path(folder) / "ray"),
                "--data-dir",
                str(data),
                "--port",
                "8798",
            ]
            serve = subprocess.Popen(
                [sys.executable, "-m", "corral.cli", *command], stdout=subprocess.PIPE, text=True
            )
            try:
                admin = ""
                while not admin:
                    line = serve.stdout.readline()
                    if line.startswith("admin token:"):
                        admin = line.split(":", 1)[1].strip()
                for gpus in (1, 16):
                    delays = time_starts("http://127.0.0.1:8798", admin, n, gpus)
                    row = {"bench": "submit to start", "executor": "ray", "gpus": gpus}
                    print(json.dumps(row | summary(delays)))
            finally:
                serve.terminate()
                serve.wait(timeout=30)
    finally:
        cluster.stop()


def time_starts(server: str, token: str, n: int, gpus: int) -> list[float]:
    """Submit `n` jobs one after another; for each, the seconds from its submission to the
    start of its last rank's process."""
    import httpx

    client = httpx.Client(base_url=server, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    command = [sys.executable, "-c", "import time; print(time.time())"]
    delays = []
    for _ in range(n):
        job = client.post("/v1/jobs", json={"gpus": gpus, "command": command}).json()["job_id"]
        while client.get(f"/v1/jobs/{job}").json()["state"] != "succeeded":
            time.sleep(0.05)
        began = max(float(t) for t in client.get(f"/v1/jobs/{job}/logs").text.split())
        delays.append(began - client.get(f"/v1/jobs/{job}").json()["submit_s"])
    return sorted(delays)


def summary(delays: list[float]) -> dict:
    return {
        "jobs": len(delays),
        "median_s": round(delays[len(delays) // 2], 2),
        "max_s": round(delays[-1], 2),
    }


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "submit"
    if which == "submit":
        bench_submit(int(sys.argv[2]) if len(sys.argv) > 2 else 2_000)
    elif which == "step":
        bench_step()
    elif which == "start":
        bench_start(int(sys.argv[2]) if len(sys.argv) > 2 else 10)
    elif which == "ray-start":
        bench_ray_start(int(sys.argv[2]) if len(sys.argv) > 2 else 10)
    else:
        raise SystemExit(f"unknown benchmark '{which}'")
