"""The fleet: a topology tree of hosts (datacenter > cluster > pod > rack > host), optionally
split into named pools (one per queue or virtual cluster).

Hosts are rows of numpy arrays rather than objects, so a 650,000-GPU fleet is a few arrays of
81,000 integers and placement can work on whole columns at once.
"""

from __future__ import annotations

import csv
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from corral.config import Name, Whole, build
from corral.errors import InputError, reading
from corral.hardware import GPUS, gpu
from corral.quota import CohortSpec, QueueSpec
from corral.windows import ReservationSpec, spec_from

DEFAULT_POOL = "default"


@dataclass(frozen=True)
class Segment:
    """A block of identical hosts that belong to one pool and one cluster."""

    pool: Name
    hosts: Whole
    gpus_per_host: Whole = 8
    hosts_per_rack: Whole = 2
    racks_per_pod: Whole = 192
    gpu: Name = "h100"
    cluster: Name = "cluster-0"
    datacenter: Name = "dc-0"


class Fleet:
    """Hosts with their GPU count and their place in the topology, grouped into pools."""

    def __init__(
        self,
        name: str,
        segments: list[Segment],
        default_pool: str | None = None,
        queues: list[QueueSpec] = (),  # type: ignore[assignment]
        cohorts: list[CohortSpec] = (),  # type: ignore[assignment]
        default_cohort: str | None = None,
        reservations: list[ReservationSpec] = (),  # type: ignore[assignment]
    ) -> None:
        if not segments:
            raise InputError("a fleet needs at least one block of hosts", field="hosts")
        for what, specs in (("queue", queues), ("cohort", cohorts)):
            names = [spec.name for spec in specs]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise InputError(f"{what} {twice[0]!r} is given more than once", field=f"{what}s")
        self.name = name
        self.segments = list(segments)
        self.reservations = list(reservations)  # windows its hosts are held in (state/reservations.py)
        self.pools: list[str] = []
        self.gpu_names: list[str] = []
        self.cluster_names: list[str] = []
        self.datacenter_names: list[str] = []
        columns: dict[str, list[np.ndarray]] = {
            k: [] for k in ("gpus", "pool", "rack", "pod", "cluster", "datacenter", "gpu_type")
        }
        next_rack = next_pod = 0
        for seg in segments:
            if seg.hosts < 1 or seg.gpus_per_host < 1:
                raise InputError(
                    f"pool '{seg.pool}' needs at least one host with at least one GPU", field="hosts"
                )
            if seg.hosts_per_rack < 1 or seg.racks_per_pod < 1:
                raise InputError(
                    f"pool '{seg.pool}': hosts_per_rack and racks_per_pod must be >= 1",
                    field="hosts_per_rack",
                )
            gpu(seg.gpu)
            idx = np.arange(seg.hosts)
            rack = idx // seg.hosts_per_rack
            pod = rack // seg.racks_per_pod
            columns["gpus"].append(np.full(seg.hosts, seg.gpus_per_host, dtype=np.int32))
            columns["pool"].append(np.full(seg.hosts, _intern(self.pools, seg.pool), np.int32))
            columns["rack"].append((rack + next_rack).astype(np.int32))
            columns["pod"].append((pod + next_pod).astype(np.int32))
            columns["cluster"].append(
                np.full(seg.hosts, _intern(self.cluster_names, f"{seg.datacenter}/{seg.cluster}"), np.int32)
            )
            columns["datacenter"].append(
                np.full(seg.hosts, _intern(self.datacenter_names, seg.datacenter), np.int32)
            )
            columns["gpu_type"].append(np.full(seg.hosts, _intern(self.gpu_names, seg.gpu.lower()), np.int32))
            next_rack += int(rack[-1]) + 1
            next_pod += int(pod[-1]) + 1
        self.host_gpus = np.concatenate(columns["gpus"])
        self.host_pool = np.concatenate(columns["pool"])
        self.host_rack = np.concatenate(columns["rack"])
        self.host_pod = np.concatenate(columns["pod"])
        self.host_cluster = np.concatenate(columns["cluster"])
        self.host_datacenter = np.concatenate(columns["datacenter"])
        self.host_gpu_type = np.concatenate(columns["gpu_type"])
        self.pool_hosts = [np.flatnonzero(self.host_pool == p) for p in range(len(self.pools))]
        self.pool_gpus = [int(self.host_gpus[h].sum()) for h in self.pool_hosts]
        for name, hosts in zip(self.pools, self.pool_hosts, strict=True):
            sizes = np.unique(self.host_gpus[hosts]).tolist()
            if len(sizes) > 1:  # a gang larger than a host is placed on whole hosts of one size
                raise InputError(
                    f"pool '{name}' mixes hosts of {' and '.join(map(str, sizes))} GPUs; a pool's hosts "
                    "must have the same number of GPUs (give each size a pool of its own)",
                    field="gpus_per_host",
                )
        if default_pool is not None and default_pool not in self.pools:
            raise InputError(
                f"default_pool '{default_pool}' is not a pool of this fleet", field="default_pool"
            )
        self.default_pool = default_pool
        self.queues = {q.name: q for q in queues}
        self.cohorts = list(cohorts)
        self.default_cohort = default_cohort
        cohort_names = {c.name for c in cohorts}
        if default_cohort is not None and default_cohort not in cohort_names:
            raise InputError(f"default_cohort '{default_cohort}' is not a cohort", field="default_cohort")
        parent = {c.name: c.parent for c in cohorts}
        for c in cohorts:
            if c.parent is not None and c.parent not in cohort_names:
                raise InputError(f"cohort '{c.name}' names unknown parent '{c.parent}'", field="parent")
            chain, up = [c.name], c.parent
            while up is not None:
                chain.append(up)
                if up == c.name:
                    raise InputError(f"cohorts form a cycle: {' -> '.join(chain)}", field="parent")
                if len(chain) > len(cohorts):
                    break  # (a cycle above this cohort: reported from a cohort on it)
                up = parent[up]
        for q in queues:
            if q.cohort is not None and q.cohort not in cohort_names:
                raise InputError(f"queue '{q.name}' names unknown cohort '{q.cohort}'", field="cohort")
            if q.pool is not None and q.pool not in self.pools:
                raise InputError(f"queue '{q.name}' names unknown pool '{q.pool}'", field="pool")

    @property
    def hosts(self) -> int:
        return int(self.host_gpus.size)

    @property
    def total_gpus(self) -> int:
        return int(self.host_gpus.sum())

    @property
    def h100_equivalents(self) -> float:
        per_type = np.array([GPUS[g].h100_equivalents for g in self.gpu_names])
        return float((self.host_gpus * per_type[self.host_gpu_type]).sum())

    def pool_of_queue(self, queue: str) -> int | None:
        """The pool a queue's jobs run in: the one its configuration names, a pool of its name,
        else the default pool, else the only pool."""
        spec = self.queues.get(queue)
        if spec is not None and spec.pool is not None:
            return self.pools.index(spec.pool)
        if queue in self.pools:
            return self.pools.index(queue)
        if self.default_pool is not None:
            return self.pools.index(self.default_pool)
        if len(self.pools) == 1:
            return 0
        return None

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "hosts": self.hosts,
            "gpus": self.total_gpus,
            "pools": len(self.pools),
            "clusters": len(self.cluster_names),
            "datacenters": len(self.datacenter_names),
            "pods": int(np.unique(self.host_pod).size),
            "racks": int(np.unique(self.host_rack).size),
            "gpu_types": ", ".join(self.gpu_names),
            "h100_equivalents": round(self.h100_equivalents),
        }


def _intern(names: list[str], name: str) -> int:
    if name not in names:
        names.append(name)
    return names.index(name)


# --- presets -------------------------------------------------------------------------------


def philly_vc_nodes() -> list[tuple[str, int]]:
    """Node count per Philly virtual cluster, as modelled by the Helios artifact (packaged)."""
    text = resources.files("corral.data").joinpath("philly_vc_nodes.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    return [(r["vc"], int(r["node num"])) for r in rows]


def philly() -> Fleet:
    """One pool per Philly VC, 8-GPU hosts. Philly's rack layout is not public: each VC's hosts
    are put in racks of 8 hosts. Philly's 2017 GPUs (P100/P40) are not in the catalogue; A100
    stands in, which changes nothing here since the simulator counts GPUs, not FLOPs. Jobs of
    VCs without a pool run in the largest VC's pool (the first of the largest in the VC file,
    6214e9)."""
    vcs = philly_vc_nodes()
    segments = [
        Segment(
            pool=vc,
            hosts=n,
            gpus_per_host=8,
            hosts_per_rack=8,
            racks_per_pod=1_000,
            gpu="a100",
            cluster="philly",
            datacenter="philly",
        )
        for vc, n in vcs
    ]
    largest = max(vcs, key=lambda v: v[1])[0]
    return Fleet("philly", segments, default_pool=largest)


def philly_shared() -> Fleet:
    """Philly's 2,816 GPUs as one shared pool; each VC becomes a queue whose nominal quota is
    its share of the GPUs, all in one cohort that lends unused quota (YARN's capacity
    scheduler, which Philly ran, lets a VC use idle capacity the same way). VCs without a
    row in the VC table get no quota of their own and may only borrow."""
    vcs = philly_vc_nodes()
    hosts = sum(n for _, n in vcs)
    segment = Segment("philly", hosts, 8, 8, 1_000, "a100", "philly", "philly")
    queues = [QueueSpec(vc, n * 8, weight=n * 8, cohort="philly") for vc, n in vcs]
    return Fleet("philly-shared", [segment], "philly", queues, [CohortSpec("philly")], "philly")


def meta_24k() -> Fleet:
    """Llama 3's RoCE cluster: 3,072 hosts x 8 H100, 2 hosts per rack, 192 racks (3,072 GPUs)
    per pod, 8 pods (Llama 3 paper, section 3.3.1)."""
    return Fleet("meta-24k", [Segment(DEFAULT_POOL, 3072, 8, 2, 192, "h100", "rsc-roce", "dc-0")])


def meta_2024() -> Fleet:
    """About 650,000 H100 (Meta's end-of-2024 target of 600-650k H100-equivalents): 26 clusters
    of 24,576 GPUs plus one of 12,288, built like meta-24k, across six datacenters."""
    segments = []
    for c in range(27):
        hosts = 3072 if c < 26 else 1536
        segments.append(Segment(DEFAULT_POOL, hosts, 8, 2, 192, "h100", f"cluster-{c:02d}", f"dc-{c % 6}"))
    return Fleet("meta-2024", segments)


PRESETS = {"philly": philly, "philly-shared": philly_shared, "meta-24k": meta_24k, "meta-2024": meta_2024}

_SHORTHAND = re.compile(r"^(\d+)x(\d+)$")


def load_fleet(spec: str, hosts_optional: bool = False) -> Fleet:
    """A fleet from a preset name, a TOML file, or 'NxG' (N hosts of G GPUs, one pool);
    `hosts_optional`: see `fleet_from_text`."""
    spec = spec.strip()
    if spec in PRESETS:
        return PRESETS[spec]()
    match = _SHORTHAND.match(spec)
    if match:
        hosts, gpus = int(match.group(1)), int(match.group(2))
        return Fleet(spec, [Segment(DEFAULT_POOL, hosts, gpus, hosts_per_rack=hosts, racks_per_pod=1)])
    path = Path(spec)
    if path.suffix == ".toml" or path.exists():
        return fleet_from_toml(path, hosts_optional)
    raise InputError(
        f"unknown fleet '{spec}': give a preset ({', '.join(PRESETS)}), a TOML file, or NxG",
        field="fleet",
    )


TOP_LEVEL_KEYS = {"name", "pools", "queues", "cohorts", "default_pool", "default_cohort", "reservations"}
# keys of a pool that may also be given once at the top, for every pool
_SEGMENT_FIELDS = (
    "hosts",
    "gpus_per_host",
    "hosts_per_rack",
    "racks_per_pod",
    "gpu",
    "cluster",
    "datacenter",
)


def fleet_from_toml(path: Path, hosts_optional: bool = False) -> Fleet:
    """Read a fleet file; see the README for the format."""
    with reading(path):
        text = path.read_text(encoding="utf-8")
    return fleet_from_text(text, path, hosts_optional)


def fleet_from_text(text: str, path: Path = Path("<fleet>"), hosts_optional: bool = False) -> Fleet:
    """A fleet from the text of a fleet file (`path` names it in errors). With
    `hosts_optional` (a live cluster, whose agents bring the hosts) the file may give only
    queues and cohorts: each pool they name stands for one host until agents join."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        where = re.search(r"at line (\d+)", str(err))
        line = int(where.group(1)) if where else None
        raise InputError(f"not valid TOML: {err}", source=str(path), line=line) from None
    unknown = set(data) - set(_SEGMENT_FIELDS) - TOP_LEVEL_KEYS
    if unknown:
        known = ", ".join(sorted([*_SEGMENT_FIELDS, *TOP_LEVEL_KEYS]))
        raise InputError(f"unknown key(s) {sorted(unknown)}; known: {known}", source=str(path))
    defaults = {k: data[k] for k in _SEGMENT_FIELDS if k in data}
    pools = data.get("pools")
    if pools is None and "hosts" not in data and hosts_optional:
        named = {e.get("pool") for e in _tables(data, "queues", path)} - {None}
        pools = [
            {"name": name, "hosts": 1} for name in sorted(named | {data.get("default_pool", DEFAULT_POOL)})
        ]
    if pools is None:
        if "hosts" not in data:
            raise InputError("give 'hosts' or one or more [[pools]]", source=str(path), field="hosts")
        pools = [{"name": DEFAULT_POOL}]
    if not isinstance(pools, list):
        raise InputError("'pools' must be an array of tables ([[pools]])", source=str(path), field="pools")
    segments = []
    for i, entry in enumerate(pools):
        if not isinstance(entry, dict):
            raise InputError("each pool must be a table", source=str(path), field=f"pools[{i}]")
        entry = {**defaults, **entry}
        name = entry.pop("name", DEFAULT_POOL if len(pools) == 1 else None)
        if name is None:
            raise InputError("each pool needs a name", source=str(path), field=f"pools[{i}].name")
        segments.append(build(Segment, {"pool": name, **entry}, str(path), f"pools[{i}]."))
    queues = [_spec(QueueSpec, e, "queues", i, path) for i, e in enumerate(_tables(data, "queues", path))]
    cohorts = [_spec(CohortSpec, e, "cohorts", i, path) for i, e in enumerate(_tables(data, "cohorts", path))]
    reservations = [
        spec_from(e, str(path), f"reservations[{i}]")
        for i, e in enumerate(_tables(data, "reservations", path))
    ]
    try:
        return Fleet(
            str(data.get("name", path.stem)),
            segments,
            default_pool=data.get("default_pool"),
            queues=queues,
            cohorts=cohorts,
            default_cohort=data.get("default_cohort"),
            reservations=reservations,
        )
    except InputError as err:
        raise InputError(err.message, source=str(path), field=err.field) from None


def _tables(data: dict, key: str, path: Path) -> list[dict]:
    entries = data.get(key, [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InputError(f"'{key}' must be an array of tables ([[{key}]])", source=str(path), field=key)
    return entries


def _spec(kind: type, entry: dict, key: str, i: int, path: Path) -> QueueSpec | CohortSpec:
    """A [[queues]] or [[cohorts]] entry, its keys and values checked."""
    return build(kind, entry, str(path), f"{key}[{i}].")
