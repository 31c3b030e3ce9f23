"""Runs the live cluster's attempts on a Ray cluster instead of corral's node agents: corral
decides (queues, quotas, fair share, preemption, placement), Ray runs.

Every alive Ray node with GPUs is a corral node, named and pooled by its node labels
`corral.io/node` and `corral.io/pool` (else its Ray node id and "default"), addressed by its
node manager's address. The executor speaks the agent API for each of them, so the server
treats them as it treats agents: the same heartbeats, starts, stops and exits.

An attempt placed on hosts H1..Hk becomes a detached placement group `corral-attempt-ID`
with one bundle per host, each pinned to its Ray node by the `ray.io/node-id` label: corral
is the only placer, and Ray never moves a rank. In each bundle a detached actor
`corral-rank-ID-NODE` runs the rank under the launcher the agent uses, with the agent's
environment (CUDA_VISIBLE_DEVICES set to corral's GPU indices, torchrun's variables, the
checkpoint directory), plus CORRAL_RAY_NODE_ID. Stops are the agent's: SIGTERM to the rank's
process group, SIGKILL after the grace.

A Ray node that dies is not heartbeated for: the server marks it down after its timeout and
requeues its jobs from their last checkpoint, as for a lost agent. Groups and actors are
named and detached, so they outlive the executor: a restarted server finds its running ranks
by name and takes them up again.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import ray
from ray.util import placement_group, remove_placement_group
from ray.util.placement_group import PlacementGroup, get_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from corral.live.rank import Rank

log = logging.getLogger(__name__)

NAMESPACE = "corral"
NODE_LABEL, POOL_LABEL = "corral.io/node", "corral.io/pool"
RAY_NODE_ID = "ray.io/node-id"
POLL_WAIT_S = 0.05


@dataclass(frozen=True)
class RayNode:
    name: str
    pool: str
    gpus: int
    node_id: str
    address: str


def ray_nodes() -> dict[str, RayNode]:
    """The alive Ray nodes with GPUs, by corral name."""
    found = {}
    for node in ray.nodes():
        gpus = int(node["Resources"].get("GPU", 0))
        if not node["Alive"] or gpus < 1:
            continue
        labels = node.get("Labels") or {}
        name = labels.get(NODE_LABEL) or node["NodeID"][:12]
        found[name] = RayNode(
            name, labels.get(POOL_LABEL, "default"), gpus, node["NodeID"], node["NodeManagerAddress"]
        )
    return found


@ray.remote
class RankActor:
    """One rank, on the Ray node its bundle is pinned to; its state is a `Rank` folder there."""

    def __init__(self, folder: str, spec: dict[str, Any], checkpoints: str) -> None:
        self.rank = Rank(Path(folder))
        if not self.rank.started:  # (Ray restarted the actor: the rank runs already)
            node_id = ray.get_runtime_context().get_node_id()
            spec = {**spec, "env": {**spec["env"], "CORRAL_RAY_NODE_ID": node_id}}
            self.rank.start(spec, Path(checkpoints))

    def poll(self) -> dict[str, Any]:
        sent, data = self.rank.unsent_output()
        return {
            "sent": sent,
            "output": data.decode(errors="replace"),
            "bytes": len(data),
            "checkpoint": self.rank.take_checkpoint(),
            "exit_code": self.rank.exit_code(),
        }

    def mark_sent(self, offset: int) -> None:
        self.rank.mark_sent(offset)

    def signal(self, sig: int) -> bool:
        return self.rank.signal(signal.Signals(sig))


@dataclass
class Pending:
    """An attempt whose placement group Ray is creating."""

    group: PlacementGroup
    specs: dict[str, dict[str, Any]]  # node name -> its rank's launch spec


@dataclass
class RayExecutor:
    """The agent of every Ray node; `tick()` is one round (`run()` repeats it)."""

    server: str
    token: str
    work_dir: Path  # on every Ray node: the ranks' folders and checkpoints
    address: str = "auto"
    clock: Callable[[], float] = time.monotonic
    client: httpx.Client | None = None
    ranks: dict[tuple[int, str], Any] = field(default_factory=dict)  # (attempt, node) -> actor
    pending: dict[int, Pending] = field(default_factory=dict)
    kill_at: dict[tuple[int, str], float] = field(default_factory=dict)
    polls: dict[tuple[int, str], Any] = field(default_factory=dict)  # (attempt, node) -> poll in flight
    # (attempt, node) -> (its SIGTERM in flight, when it was asked)
    terming: dict[tuple[int, str], tuple[Any, float]] = field(default_factory=dict)
    registered: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not ray.is_initialized():
            ray.init(address=self.address, namespace=NAMESPACE, logging_level="ERROR", log_to_driver=False)
        self.http = self.client or httpx.Client(base_url=self.server, timeout=10.0)
        self.http.headers["Authorization"] = f"Bearer {self.token}"
        self.adopt()

    def _post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.http.post(path, json=body or {})
        response.raise_for_status()
        return response.json()

    def adopt(self) -> None:
        """Take up the ranks that an earlier executor started (their actors are named)."""
        for entry in ray.util.list_named_actors(all_namespaces=True):
            name = entry["name"]
            if entry["namespace"] != NAMESPACE or not name.startswith("corral-rank-"):
                continue
            attempt, node = name.removeprefix("corral-rank-").split("-", 1)
            with contextlib.suppress(ValueError):
                self.ranks[(int(attempt), node)] = ray.get_actor(name, namespace=NAMESPACE)

    # --- one round -------------------------------------------------------------------------

    def tick(self) -> None:
        nodes = ray_nodes()
        for node in nodes.values():
            if node.name not in self.registered:
                self._register(node)
        self._poll(nodes)
        wanted: dict[int, dict[str, dict[str, Any]]] = {}
        for node in nodes.values():
            running = sorted({a for a, n in self.ranks if n == node.name} | self._pending_on(node.name))
            try:
                work = self._post(f"/v1/agent/{node.name}/heartbeat", {"running": running})
            except httpx.HTTPStatusError as err:
                if err.response.status_code == 404:  # (forgotten, or marked down: join again)
                    self._register(node)
                    continue
                raise
            for spec in work["stop"]:
                self._stop(int(spec["attempt"]), node.name, float(spec["grace_s"]))
            for spec in work["start"]:
                wanted.setdefault(int(spec["attempt"]), {})[node.name] = spec
        started = {key[0] for key in self.ranks} | set(self.pending)
        for attempt, specs in wanted.items():
            if attempt not in started and set(specs) == set(specs[next(iter(specs))]["nodes"]):
                self._place(attempt, specs, nodes)
        self._start_ready()
        now = self.clock()
        for key, at in list(self.kill_at.items()):
            if now >= at and key in self.ranks:
                self.ranks[key].signal.remote(int(signal.SIGKILL))
                del self.kill_at[key]

    def run(self, every_s: float = 0.2, stop: Callable[[], bool] = lambda: False) -> None:
        while not stop():
            try:
                self.tick()
            except (httpx.HTTPError, ray.exceptions.RayError) as err:  # (retried next round)
                log.warning("ray executor: %s (again in %.1f s)", err, every_s)
            time.sleep(every_s)

    # --- what each round does ----------------------------------------------------------------

    def _register(self, node: RayNode) -> None:
        body = {"name": node.name, "gpus": node.gpus, "pool": node.pool, "address": node.address}
        self._post("/v1/agent/register", body)
        self.registered.add(node.name)

    def _pending_on(self, name: str) -> set[int]:
        return {a for a, p in self.pending.items() if name in p.specs}

    def _poll(self, nodes: dict[str, RayNode]) -> None:
        """Ship each rank's output and checkpoints; report and clean up the ranks that ended.
        A rank on a node that is gone is dropped unreported: the node's silence is the news.
        Each rank has one poll in flight; a round takes the answers that are in (a rank whose
        actor is still starting holds up nobody)."""
        for key in [key for key in self.ranks if key[1] not in nodes]:
            self._drop(key)
        for key, actor in self.ranks.items():
            if key not in self.polls:
                self.polls[key] = actor.poll.remote()
        keys = {ref: key for key, ref in self.polls.items()}
        ready, _ = ray.wait(list(keys), num_returns=len(keys), timeout=POLL_WAIT_S) if keys else ([], [])
        for ref in ready:
            key = keys[ref]
            del self.polls[key]
            attempt = key[0]
            try:
                state = ray.get(ref)
            except ray.exceptions.RayActorError:  # (the actor died on a live node: killed)
                state = {"bytes": 0, "checkpoint": False, "exit_code": -int(signal.SIGKILL)}
            try:
                self._report(key, state)
            except httpx.HTTPStatusError as err:
                if err.response.status_code not in (404, 409, 422):
                    raise
                # (a rank the server does not know, or whose attempt has ended: one of an
                # earlier server's, left on the Ray cluster. Said once, and let go; retried,
                # it would stop every heartbeat of this round, and the nodes would go down)
                log.warning(
                    "ray executor: attempt %s is not the server's (%s): its rank is killed", attempt, err
                )
                self._forget(key)

    def _report(self, key: tuple[int, str], state: dict[str, Any]) -> None:
        """A rank's news to the server: output, a checkpoint, its exit (then it is let go)."""
        attempt, name = key
        if state["bytes"]:
            self._post(f"/v1/agent/attempts/{attempt}/log", {"text": state["output"]})
            self.ranks[key].mark_sent.remote(state["sent"] + state["bytes"])  # (runs before the next poll)
        if state["checkpoint"]:
            self._post(f"/v1/agent/attempts/{attempt}/checkpoint")
        if state["exit_code"] is not None:
            self._post(
                f"/v1/agent/attempts/{attempt}/exited", {"exit_code": state["exit_code"], "node": name}
            )
            self._forget(key)

    def _place(self, attempt: int, specs: dict[str, dict[str, Any]], nodes: dict[str, RayNode]) -> None:
        """Ask Ray for the attempt's placement group: one bundle per host, pinned to it."""
        names = specs[next(iter(specs))]["nodes"]
        if any(name not in nodes for name in names):
            return  # (a node went away: the server will notice)
        bundles = [{"GPU": float(len(specs[name]["gpu_ids"])), "CPU": 0.01} for name in names]
        selectors = [{RAY_NODE_ID: nodes[name].node_id} for name in names]
        group = placement_group(
            bundles,
            strategy="SPREAD",
            name=f"corral-attempt-{attempt}",
            lifetime="detached",
            bundle_label_selector=selectors,
        )
        self.pending[attempt] = Pending(group, specs)

    def _start_ready(self) -> None:
        """Start the ranks of every attempt whose placement group Ray has made."""
        for attempt, pending in list(self.pending.items()):
            if not pending.group.wait(timeout_seconds=0):
                continue
            del self.pending[attempt]
            names = pending.specs[next(iter(pending.specs))]["nodes"]
            for index, name in enumerate(names):
                spec = pending.specs[name]
                actor = RankActor.options(
                    name=f"corral-rank-{attempt}-{name}",
                    namespace=NAMESPACE,
                    lifetime="detached",
                    num_cpus=0.01,
                    num_gpus=len(spec["gpu_ids"]),
                    max_restarts=0,
                    scheduling_strategy=PlacementGroupSchedulingStrategy(
                        pending.group, placement_group_bundle_index=index
                    ),
                ).remote(
                    str(self.work_dir / name / "attempts" / str(attempt)),
                    spec,
                    str(self.work_dir / name / "checkpoints" / spec["job_id"]),
                )
                self.ranks[(attempt, name)] = actor
            self._post(f"/v1/agent/attempts/{attempt}/started")

    def _stop(self, attempt: int, name: str, grace_s: float) -> None:
        """SIGTERM now, SIGKILL after `grace_s`; an attempt not yet started is given up."""
        key = (attempt, name)
        if attempt in self.pending:
            remove_placement_group(self.pending.pop(attempt).group)
        if key not in self.ranks:
            if key not in self.kill_at:
                self._post(
                    f"/v1/agent/attempts/{attempt}/exited", {"exit_code": -int(signal.SIGTERM), "node": name}
                )
            return
        if key in self.kill_at:
            return
        if key not in self.terming:  # (one SIGTERM in flight at most: a slow actor gets no second)
            self.terming[key] = (self.ranks[key].signal.remote(int(signal.SIGTERM)), self.clock())
        ref, asked_s = self.terming[key]
        try:
            signalled = ray.get(ref, timeout=POLL_WAIT_S)
        except ray.exceptions.GetTimeoutError:
            return  # (still on its way: looked at again next round, not sent again)
        except ray.exceptions.RayActorError:
            signalled = False  # (the next poll reports its end)
        del self.terming[key]
        if signalled:  # (else its launcher has yet to make its group: asked again next round)
            self.kill_at[key] = asked_s + grace_s

    def _drop(self, key: tuple[int, str]) -> Any:
        """Stop keeping track of a rank (its kill, poll and SIGTERM in flight); its actor."""
        self.kill_at.pop(key, None)
        self.polls.pop(key, None)
        self.terming.pop(key, None)
        return self.ranks.pop(key)

    def _forget(self, key: tuple[int, str]) -> None:
        """An ended rank's actor goes; the attempt's group goes with its last rank."""
        actor = self._drop(key)
        with contextlib.suppress(ray.exceptions.RayError):
            ray.kill(actor)
        attempt = key[0]
        if not any(k[0] == attempt for k in self.ranks):
            with contextlib.suppress(ValueError, ray.exceptions.RayError):
                remove_placement_group(get_placement_group(f"corral-attempt-{attempt}"))
