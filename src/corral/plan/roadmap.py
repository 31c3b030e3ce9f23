"""The fleet roadmap: GPU capacity against demand quarter by quarter, and when each
datacenter must start building.

Demand, in H100-equivalents (a GPU's dense BF16 rate over H100's):

- flagship runs, one generation after another, each `generation_growth` times the last's
  compute, trained over `flagship_quarters` at `flagship_mfu` and `flagship_ettr`;
- research, growing with headcount by `research_growth_per_year`;
- serving (inference and ranking), growing with users by `serving_growth_per_year`.

Supply: datacenters, each a power envelope filled with one GPU generation (GPUs = MW / (GPU
TDP x host overhead x PUE)), online `lead_quarters` after building starts and ramping up
over `ramp_quarters`. A datacenter with `start = "auto"` starts as late as it can and still
be fully online the first quarter the others leave demand unmet; researchers absorb what
is short until then (serving and flagships come first).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from corral.config import Name, build, read_mapping
from corral.errors import InputError
from corral.hardware import GPU, gpu
from corral.plan.estimate import HOST_OVERHEAD, PUE, Reliability
from corral.reliability.ettr import best_interval_s, expected_ettr, mtbf_s

QUARTER_H = 365.25 * 24 / 4
QUARTER_S = QUARTER_H * 3600


def quarter_index(text: str, source: str = "<roadmap>", field_name: str = "quarter") -> int:
    """'2024Q3' as a count of quarters (2024 x 4 + 2)."""
    match = re.fullmatch(r"(\d{4})Q([1-4])", text.strip())
    if match is None:
        raise InputError(f"'{text}' is not a quarter like 2024Q3", source=source, field=field_name)
    return int(match.group(1)) * 4 + int(match.group(2)) - 1


def quarter_name(index: int) -> str:
    return f"{index // 4}Q{index % 4 + 1}"


@dataclass(frozen=True)
class Datacenter:
    name: Name
    power_mw: float
    gpu: str = "h100"
    online: str | None = None  # the quarter it is fully online (built or committed)
    start: str | None = None  # the quarter building starts, or "auto"
    lead_quarters: int = 8  # from the start of building to the first GPUs: about two years
    ramp_quarters: int = 2
    pue: float = PUE
    capex_usd_per_gpu: float = 35_000.0  # server, network and storage share
    capex_usd_per_mw: float = 10e6  # building, power and cooling
    cluster_gpus: int | None = None  # the largest synchronous job's fabric (default: all its GPUs)
    public: bool = False  # a published figure rather than an assumption

    def __post_init__(self) -> None:
        if not self.power_mw > 0:
            raise InputError("power_mw must be > 0", field="power_mw")
        if (self.online is None) == (self.start is None):
            raise InputError("give either online (built) or start (to build, or auto)", field="start")
        if self.lead_quarters < 0 or self.ramp_quarters < 1:
            raise InputError("lead_quarters must be >= 0 and ramp_quarters >= 1", field="lead_quarters")

    @property
    def the_gpu(self) -> GPU:
        return gpu(self.gpu)

    @property
    def gpus(self) -> int:
        return int(self.power_mw * 1e6 / (self.the_gpu.power_w * HOST_OVERHEAD * self.pue))

    @property
    def h100e(self) -> float:
        return self.gpus * self.the_gpu.bf16_flops / gpu("h100").bf16_flops

    @property
    def capex_usd(self) -> float:
        return self.gpus * self.capex_usd_per_gpu + self.power_mw * self.capex_usd_per_mw


@dataclass(frozen=True)
class Demand:
    flagship_flops: float = 3.8e25
    flagship_start: str = "2024Q1"
    generation_growth: float = 10.0
    generation_quarters: int = 6
    flagship_quarters: int = 2
    flagship_mfu: float = 0.38
    flagship_ettr: float = 0.9
    research_h100e: float = 100_000.0
    research_growth_per_year: float = 0.3
    serving_h100e: float = 100_000.0
    serving_growth_per_year: float = 0.5


@dataclass(frozen=True)
class Roadmap:
    name: Name
    start: str
    quarters: int
    demand: Demand = field(default_factory=Demand)
    datacenters: list[Datacenter] = field(default_factory=list)


def load_roadmap(path: Path) -> Roadmap:
    """A roadmap TOML: `name`, `start`, `quarters`, a `[demand]` table and `[[datacenters]]`."""
    data = read_mapping(path, "roadmap")
    source = str(path)
    demand = build(Demand, data.pop("demand", {}), source, "demand.")
    centres = [
        build(Datacenter, d, source, f"datacenters[{i}].") for i, d in enumerate(data.pop("datacenters", []))
    ]
    roadmap = build(Roadmap, data | {"demand": demand, "datacenters": centres}, source)
    check(roadmap, source)
    return roadmap


def check(roadmap: Roadmap, source: str = "<roadmap>") -> None:
    quarter_index(roadmap.start, source, "start")
    quarter_index(roadmap.demand.flagship_start, source, "demand.flagship_start")
    for i, dc in enumerate(roadmap.datacenters):
        for name in ("online", "start"):
            value = getattr(dc, name)
            if value is not None and value != "auto":
                quarter_index(value, source, f"datacenters[{i}].{name}")
        try:
            gpu(dc.gpu)
        except InputError as err:
            raise InputError(err.message, source=source, field=f"datacenters[{i}].gpu") from None


@dataclass(frozen=True)
class Quarter:
    name: str
    capacity: float
    flagship: float
    research: float
    serving: float

    @property
    def demand(self) -> float:
        return self.flagship + self.research + self.serving

    @property
    def short(self) -> float:
        return max(0.0, self.demand - self.capacity)


@dataclass(frozen=True)
class Built:
    """A datacenter as scheduled: when building starts and when it is fully online; `late`
    when it starts with the roadmap and demand goes unmet before it can be online: it
    should have been started earlier."""

    centre: Datacenter
    start: int
    online: int
    late: bool


@dataclass(frozen=True)
class Plan:
    roadmap: Roadmap
    quarters: list[Quarter]
    built: list[Built]

    def research_short_gpu_hours(self) -> float:
        """GPU-hours researchers go without: what is short, up to their whole demand."""
        return sum(min(q.short, q.research) * QUARTER_H for q in self.quarters)


def online_fraction(built: Built, quarter: int) -> float:
    """How much of a datacenter is online in `quarter`: ramping up linearly to full at
    `online`."""
    ramp = built.centre.ramp_quarters
    return min(1.0, max(0.0, (quarter - (built.online - ramp)) / ramp))


def demand_in(roadmap: Roadmap, quarter: int) -> tuple[float, float, float]:
    """(flagship, research, serving) H100-equivalents in `quarter`."""
    d, first = roadmap.demand, quarter_index(roadmap.start)
    years = (quarter - first) / 4
    research = d.research_h100e * (1 + d.research_growth_per_year) ** years
    serving = d.serving_h100e * (1 + d.serving_growth_per_year) ** years
    flagship = 0.0
    begin = quarter_index(d.flagship_start)
    if quarter >= begin:
        generation, into = divmod(quarter - begin, d.generation_quarters)
        if into < d.flagship_quarters:
            flops = d.flagship_flops * d.generation_growth**generation
            flagship = flagship_h100e(flops, d)
    return flagship, research, serving


def flagship_h100e(flops: float, demand: Demand) -> float:
    """H100s a flagship of `flops` keeps busy over its training quarters."""
    rate = gpu("h100").bf16_flops * demand.flagship_mfu * demand.flagship_ettr
    return flops / (demand.flagship_quarters * QUARTER_S * rate)


def plan_roadmap(roadmap: Roadmap) -> Plan:
    """Schedule the datacenters (automatic starts in order, each as late as the demand
    allows) and tally capacity against demand quarter by quarter."""
    first = quarter_index(roadmap.start)
    span = range(first, first + roadmap.quarters)
    built: list[Built] = []
    for dc in roadmap.datacenters:
        if dc.online is not None:
            online = quarter_index(dc.online)
            built.append(Built(dc, online - dc.ramp_quarters - dc.lead_quarters, online, False))
        elif dc.start != "auto":
            start = quarter_index(dc.start)  # type: ignore[arg-type]
            built.append(Built(dc, start, start + dc.lead_quarters + dc.ramp_quarters, False))
    for dc in roadmap.datacenters:
        if dc.start != "auto":
            continue
        build_q = dc.lead_quarters + dc.ramp_quarters
        shorts = [q for q in span if _capacity(built, q) < sum(demand_in(roadmap, q))]
        # it aims at the first shortfall it can reach if started now; where all are out of
        # reach it starts at once, late
        later = [q for q in shorts if q >= first + build_q]
        # (not needed within the roadmap: it starts when the roadmap ends)
        start = (later[0] - build_q if later else first) if shorts else span.stop
        late = start == first and any(q < first + build_q for q in shorts)
        built.append(Built(dc, start, start + build_q, late))
    quarters = [Quarter(quarter_name(q), _capacity(built, q), *demand_in(roadmap, q)) for q in span]
    return Plan(roadmap, quarters, built)


def _capacity(built: list[Built], quarter: int) -> float:
    return sum(b.centre.h100e * online_fraction(b, quarter) for b in built)


def capex_by_year(plan: Plan) -> dict[int, float]:
    """Capital spent per year of the roadmap: each datacenter's, evenly over its building
    quarters (what was spent before the roadmap starts is not counted)."""
    first = quarter_index(plan.roadmap.start)
    years: dict[int, float] = {}
    for b in plan.built:
        quarters = max(1, b.online - b.start)
        for q in range(max(first, b.start), b.online):
            years[q // 4] = years.get(q // 4, 0.0) + b.centre.capex_usd / quarters
    return dict(sorted(years.items()))


def energy_mwh_by_year(plan: Plan) -> dict[int, float]:
    """Energy the online GPUs draw at full power (an upper bound), hosts and PUE included."""
    first = quarter_index(plan.roadmap.start)
    years: dict[int, float] = {}
    for q in range(first, first + plan.roadmap.quarters):
        mwh = sum(b.centre.power_mw * online_fraction(b, q) * QUARTER_H for b in plan.built)
        years[q // 4] = years.get(q // 4, 0.0) + mwh
    return years


def largest_job(dc: Datacenter, reliability: Reliability | None = None) -> tuple[int, float]:
    """The GPUs of the largest synchronous job a datacenter holds, and that job's expected
    ETTR (Kokolis et al.'s model at Daly's interval, Llama 3's failure rate by default)."""
    rel = reliability or Reliability()
    gpus = dc.cluster_gpus or dc.gpus
    nodes = max(1, gpus // 8)
    interval = best_interval_s(rel.write_s, mtbf_s(nodes, rel.rate_per_1000_node_days))
    if math.isinf(interval):
        return gpus, 1.0
    return gpus, expected_ettr(nodes, rel.rate_per_1000_node_days, interval, rel.restart_s, rel.write_s)


def generation_fits(dc: Datacenter, demand: Demand, generations: int = 4) -> int:
    """How many flagship generations from `demand.flagship_flops` one job on this
    datacenter can train in the flagship window (0 if not even the first)."""
    gpus, ettr = largest_job(dc)
    rate = dc.the_gpu.bf16_flops * demand.flagship_mfu * ettr * gpus
    fits = 0
    for g in range(generations):
        if demand.flagship_flops * demand.generation_growth**g <= rate * demand.flagship_quarters * QUARTER_S:
            fits = g + 1
    return fits


# Meta 2023-2026 (REFERENCE.md sections 1 and 3). Public: the two 24,576-GPU H100 clusters
# (2024), about 350,000 H100 and 600,000-650,000 H100-equivalents by the end of 2024, Llama
# 3 405B's 3.8e25 FLOPs at 38-43% MFU and above 90% ETTR in 2024, about 10x the compute for
# the next generation on 100,000+ GPUs, two years to build a datacenter, PUE 1.08-1.09.
# Assumed: the older fleet as A100s (its largest fabric RSC's 16,000), how the 2024 build-out
# splits, research and serving demand and their growth, the cadence of generations, the
# 100K cluster and the 2026 campus.
META_2023 = Roadmap(
    "meta-2023",
    "2023Q1",
    16,
    Demand(
        flagship_flops=3.8e25,
        flagship_start="2024Q1",
        generation_growth=10.0,
        generation_quarters=6,
        flagship_quarters=1,
        flagship_mfu=0.38,
        flagship_ettr=0.9,
        research_h100e=40_000.0,
        research_growth_per_year=0.3,
        serving_h100e=110_000.0,
        serving_growth_per_year=0.6,
    ),
    [
        Datacenter("pre-2023 fleet (A100-class)", 378.0, "a100", online="2023Q1", cluster_gpus=16_000),
        Datacenter("two 24K H100 clusters", 68.3, "h100", online="2024Q1", cluster_gpus=24_576, public=True),
        Datacenter(
            "2024 H100 build-out", 418.0, "h100", online="2024Q4", ramp_quarters=4, cluster_gpus=24_576
        ),
        Datacenter("100K-GPU training cluster", 139.0, "h100", start="auto", cluster_gpus=100_000),
        Datacenter("2026 campus (B200)", 1000.0, "b200", start="auto", cluster_gpus=131_072),
    ],
)
PRESETS = {"meta-2023": META_2023}
