"""Flexible capacity on a live cluster, end to end on this machine, with requests rather than
steps: a day of LLM chat demand compressed to a few minutes, served by a tiny model server
behind corral's proxy, while an elastic training job and best-effort jobs fill the rest of a
16-fake-GPU cluster; once under the static broker and once under the predictive one.

    python scripts/capacity_live.py [--day 150] [--broker static --broker predictive] [--json]

Each run starts, as a user would, `corral serve --broker KIND` (SQLite in a temporary
folder), `corral agent --gpus 16` (fake GPUs) and `corral proxy chat`, then creates the
`chat` service (1 GPU per replica, REPLICA_RPS requests/s each within its SLO, 2 s start-up),
one elastic training job (2-14 GPUs in steps of 2, not preemptible) and best-effort jobs
(1 GPU, 20 s of work, preemptible, checkpointing). A load generator on loopback sends
requests at the diurnal rate of the `fungible-fleet` chat service (peak 40 requests/s, 3:1
trough, peak at 14:00 of the compressed day), each with the context and generated tokens of
the next row of the Azure LLM conversation trace (the model server's service time follows
them), after pushing the day before as the broker's history. Reports per broker: latency
percentiles and SLO attainment per request (p99 <= 2.5 s), the training job's goodput (the
GPU-seconds its own checkpoints hold), best-effort work done, and the GPUs moved.
Traffic stays on 127.0.0.1; every run is bounded by --day plus a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import gzip
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from corral.capacity.demand import Diurnal

HERE = Path(__file__).resolve().parent / "capacity_live"
GPUS = 16
PEAK_RPS, PEAK_TO_TROUGH = 40.0, 3.0
REPLICA_RPS, STARTUP_S = 4.0, 2.0
SLO_S, SLO_PERCENTILE = 2.5, 0.99
BEST_EFFORT_JOBS = 12
MODEL_DAY_S = 86400.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trace_rows() -> list[tuple[int, int]]:
    data = resources.files("corral.data").joinpath("azure_llm_conv_requests.csv.gz").read_bytes()
    rows = csv.DictReader(gzip.decompress(data).decode().splitlines())
    return [(int(r["context_tokens"]), int(r["generated_tokens"])) for r in rows]


def rate_rps(t_s: float, day_s: float) -> float:
    """Requests/s at `t_s` seconds into the compressed day: fungible-fleet's chat curve."""
    curve = Diurnal(PEAK_RPS, PEAK_TO_TROUGH, weekend=1.0)
    model_t = t_s * MODEL_DAY_S / day_s
    return float(curve.curve(1.0, 60.0)[int(model_t // 60.0) % 1440])


Sample = tuple[float, float, int]  # (sent at, latency, HTTP status)


async def load(url: str, day_s: float, rows: list[tuple[int, int]], seed: int) -> list[Sample]:
    """Poisson arrivals at the day's rate (thinning), each request timed: (sent at, latency,
    status)."""
    rng = np.random.default_rng(seed)
    out: list[Sample] = []
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=100)
    async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:

        async def one(at: float, body: dict) -> None:
            began = time.monotonic()
            try:
                status = (await client.post(f"{url}/generate", json=body)).status_code
            except httpx.HTTPError:
                status = 599
            out.append((at, time.monotonic() - began, status))

        start, t, k, tasks = time.monotonic(), 0.0, 0, []
        while True:
            t += float(rng.exponential(1.0 / PEAK_RPS))
            if t >= day_s:
                break
            if rng.random() * PEAK_RPS > rate_rps(t, day_s):
                continue
            delay = start + t - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            context, generated = rows[k % len(rows)]
            k += 1
            body = {"context_tokens": context, "generated_tokens": generated}
            tasks.append(asyncio.create_task(one(t, body)))
        await asyncio.gather(*tasks)
    return out


def corral(*args: str, env: dict | None = None) -> subprocess.Popen:
    """A corral command in a process of its own (and its own process group)."""
    return subprocess.Popen(
        [sys.executable, "-m", "corral.cli", *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_for(check, limit_s: float, what: str) -> None:
    deadline = time.monotonic() + limit_s
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"capacity_live: {what} did not happen within {limit_s:g} s")
        time.sleep(0.1)


def run(kind: str, day_s: float, seed: int) -> dict:
    """One broker: the cluster up (server, agent, proxy: corral's own commands), a day of
    requests, the figures, the cluster torn down."""
    folder = Path(tempfile.mkdtemp(prefix=f"corral-capacity-{kind}-"))
    step_s = day_s / 96  # (15 minutes of the day)
    port, proxy_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    procs = [
        corral("serve", "--data-dir", str(folder), "--port", str(port), "--policy", "priority+elastic:hold=5",
               "--broker", kind, "--broker-step", f"{step_s}s", "--day", f"{day_s}s")
    ]  # fmt: skip
    try:
        wait_for(lambda: (folder / "tokens.json").exists(), 60, "the server's start")
        tokens = json.loads((folder / "tokens.json").read_text())
        api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tokens['admin']}"}, timeout=10.0)
        wait_for(lambda: _answers(api), 60, "the server's start")
        procs.append(corral("agent", "--server", url, "--token", tokens["node"], "--data-dir",
                            str(folder / "agent"), "--gpus", str(GPUS), "--name", "local"))  # fmt: skip
        wait_for(lambda: len(api.get("/v1/nodes").json()) == 1, 60, "the agent's registration")
        return _day(kind, day_s, seed, folder, api, url, tokens["admin"], proxy_port, procs, step_s)
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for pgid in (folder / "agent" / "attempts").glob("*/pgid"):  # (the jobs' processes)
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.killpg(int(pgid.read_text()), signal.SIGKILL)
        for proc in procs:
            proc.wait(timeout=30)


def _answers(api: httpx.Client) -> bool:
    try:
        return api.get("/v1/health").status_code == 200
    except httpx.HTTPError:
        return False


def _day(
    kind: str,
    day_s: float,
    seed: int,
    folder: Path,
    api: httpx.Client,
    url: str,
    admin: str,
    proxy_port: int,
    procs: list,
    step_s: float,
) -> dict:
    python = sys.executable
    api.post(
        "/v1/services",
        json={
            "name": "chat",
            "gpus_per_replica": 1,
            "min_replicas": 1,
            "max_replicas": 12,
            "replica_rps": REPLICA_RPS,
            "startup_s": STARTUP_S,
            "slo_latency_s": SLO_S,
            "slo_percentile": SLO_PERCENTILE,
            "command": [python, str(HERE / "model_server.py")],
        },
    ).raise_for_status()
    now = time.time()
    history = [[now - day_s + k * step_s, rate_rps(k * step_s, day_s)] for k in range(96)]
    api.post("/v1/services/chat/demand", json={"samples": history}).raise_for_status()
    train = api.post(
        "/v1/jobs",
        json={
            "gpus": 2, "min_gpus": 2, "max_gpus": 14, "step_gpus": 2, "priority": 10, "preemptible": False,
            "grace_s": 5.0, "name": "pretrain", "command": [python, str(HERE / "trainer.py")],
        },
    ).json()["job_id"]  # fmt: skip
    for k in range(BEST_EFFORT_JOBS):
        api.post(
            "/v1/jobs",
            json={"gpus": 1, "grace_s": 3.0, "estimate_s": 20.0, "name": f"research-{k}",
                  "command": [python, str(HERE / "best_effort.py")]},
        ).raise_for_status()  # fmt: skip
    env = {"CORRAL_SERVER": url, "CORRAL_TOKEN": admin}
    procs.append(corral("proxy", "chat", "--port", str(proxy_port), "--push", f"{step_s}s", env=env))
    front = f"http://127.0.0.1:{proxy_port}"
    wait_for(lambda: api.get("/v1/services/chat/endpoints").json() and _serves(front), 120, "a ready replica")
    began = time.time()
    samples = asyncio.run(load(front, day_s, trace_rows(), seed))
    ended = time.time()
    progress = folder / "agent" / "checkpoints" / train / "progress.json"
    trained = json.loads(progress.read_text()) if progress.exists() else {"gpu_s": 0.0, "restarts": 0}
    moves = api.get("/v1/moves").json()
    job = api.get(f"/v1/jobs/{train}").json()
    jobs = api.get("/v1/jobs").json()
    return summarize(kind, samples, moves, job, jobs, trained, began, ended, day_s)


def _serves(front: str) -> bool:
    try:
        return httpx.post(f"{front}/generate", json={}, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def summarize(
    kind: str,
    samples: list[Sample],
    moves: list[dict],
    job: dict,
    jobs: list[dict],
    trained: dict,
    began: float,
    ended: float,
    day_s: float,
) -> dict:
    latency = np.array([lat if status == 200 else math.inf for _, lat, status in samples])
    replica_moves = [m for m in moves if m["kind"] == "replicas" and m["time_s"] >= began]
    sizes = [sum(len(ids) for _, ids in a["placement"]) for a in job["attempts"] if a["start_s"] >= began]
    resized = sum(abs(b - a) for a, b in zip(sizes, sizes[1:], strict=False))
    research = [j for j in jobs if j["name"].startswith("research-")]
    finite = latency[np.isfinite(latency)]
    return {
        "broker": kind,
        "day_s": day_s,
        "requests": len(samples),
        "failed": int((~np.isfinite(latency)).sum()),
        "p50_s": float(np.percentile(finite, 50)) if len(finite) else math.nan,
        "p95_s": float(np.percentile(finite, 95)) if len(finite) else math.nan,
        "p99_s": float(np.percentile(latency, 99)),
        "slo_attainment": float((latency <= SLO_S).mean()),
        "slo_target": SLO_PERCENTILE,
        "training_gpu_s": trained["gpu_s"],
        "training_restarts": trained["restarts"],
        "gpus_moved_serving": sum(abs(m["after"] - m["before"]) for m in replica_moves),
        "gpus_moved_training": resized,
        "research_done": sum(j["state"] == "succeeded" for j in research),
        "span_s": ended - began,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--day", type=float, default=150.0, help="seconds the day is compressed to")
    parser.add_argument("--broker", action="append", choices=("static", "reactive", "predictive"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [run(kind, args.day, args.seed) for kind in args.broker or ["static", "predictive"]]
    if args.json:
        print(json.dumps(results, indent=1))
        return
    table = Table(title=f"a day of chat demand in {args.day:g} s on {GPUS} fake GPUs", title_justify="left")
    for column in ("broker", "requests", "p50", "p99", f"SLO (p99 <= {SLO_S:g} s)", "training GPU-s",
                   "restarts", "GPUs moved (serving / training)", "research jobs done"):  # fmt: skip
        table.add_column(column, justify="left" if column == "broker" else "right")
    for r in results:
        table.add_row(
            r["broker"], f"{r['requests']:,}", f"{r['p50_s']:.2f} s", f"{r['p99_s']:.2f} s",
            f"{r['slo_attainment']:.2%}", f"{r['training_gpu_s']:,.0f}", str(r["training_restarts"]),
            f"{r['gpus_moved_serving']} / {r['gpus_moved_training']}", str(r["research_done"]),
        )  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    main()
