"""The fleet roadmap, worked by hand: capacity from power, when an automatic datacenter must
start, what researchers go without, capex by year, the largest job's ETTR, and
`corral plan fleet`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from corral.cli import app
from corral.errors import InputError
from corral.plan.estimate import HOST_OVERHEAD, Reliability
from corral.plan.roadmap import (
    META_2023,
    QUARTER_H,
    Datacenter,
    Demand,
    Roadmap,
    capex_by_year,
    largest_job,
    load_roadmap,
    plan_roadmap,
    quarter_index,
    quarter_name,
)
from corral.reliability.ettr import daly_interval_s, expected_ettr, mtbf_s


def test_quarters_and_capacity_from_power() -> None:
    assert (
        quarter_name(quarter_index("2024Q3")) == "2024Q3"
        and quarter_index("2025Q1") - quarter_index("2024Q4") == 1
    )
    with pytest.raises(InputError, match="quarter"):
        quarter_index("2024-Q3")
    dc = Datacenter("x", 70.0, "h100", online="2024Q1", pue=1.09)
    # 70 MW / (700 W x 10.2/5.6 host overhead x 1.09 PUE)
    assert dc.gpus == int(70e6 / (700 * HOST_OVERHEAD * 1.09))
    b200 = Datacenter("y", 70.0, "b200", online="2024Q1")
    assert b200.h100e == pytest.approx(b200.gpus * 2250 / 989)


def growing(existing_h100e_mw: float, auto: Datacenter) -> Roadmap:
    """Research 800 H100e, serving 100 doubling every year, 1,000 H100e online."""
    existing = Datacenter("old", existing_h100e_mw, "h100", online="2025Q1", pue=1.0)
    demand = Demand(
        flagship_start="2040Q1",
        research_h100e=800.0,
        research_growth_per_year=0.0,
        serving_h100e=100.0,
        serving_growth_per_year=1.0,
    )
    return Roadmap("test", "2025Q1", 12, demand, [existing, auto])


MW_PER_1000 = 1000 * 700 * HOST_OVERHEAD / 1e6 + 1e-9  # (1,000 H100 at PUE 1)


def test_an_automatic_datacenter_starts_as_late_as_the_demand_allows() -> None:
    """Demand 800 + 100 x 2^(q/4) first exceeds 1,000 in the fifth quarter from the start
    (2026Q2: 1,038). Built in 2 quarters and ramped in 1, the new one starts in 2025Q3."""
    auto = Datacenter("new", 2 * MW_PER_1000, "h100", start="auto", lead_quarters=2, ramp_quarters=1, pue=1.0)
    plan = plan_roadmap(growing(MW_PER_1000, auto))
    new = plan.built[1]
    assert (quarter_name(new.start), quarter_name(new.online), new.late) == ("2025Q3", "2026Q2", False)
    assert [q.short > 0 for q in plan.quarters] == [False] * 12
    assert plan.quarters[5].capacity == pytest.approx(3000, rel=1e-3)
    assert plan.research_short_gpu_hours() == 0


def test_a_shortfall_nothing_can_reach_starts_it_at_once_and_costs_researchers() -> None:
    """With only 900 H100e online demand (900 at the start, 900 + serving growth after) is
    short from the second quarter; a build of 5 quarters cannot help before 2026Q2."""
    auto = Datacenter("new", 2 * MW_PER_1000, "h100", start="auto", lead_quarters=4, ramp_quarters=1, pue=1.0)
    plan = plan_roadmap(growing(0.9 * MW_PER_1000, auto))
    new = plan.built[1]
    assert (quarter_name(new.start), quarter_name(new.online), new.late) == ("2025Q1", "2026Q2", True)
    short = sum(q.short for q in plan.quarters[:5])
    assert short > 0 and all(q.short == 0 for q in plan.quarters[5:])
    assert plan.research_short_gpu_hours() == pytest.approx(short * QUARTER_H)


def test_capex_spreads_over_the_building_quarters() -> None:
    auto = Datacenter(
        "new",
        10.0,
        "h100",
        start="2025Q2",
        lead_quarters=3,
        ramp_quarters=1,
        capex_usd_per_gpu=1.0,
        capex_usd_per_mw=0.0,
    )
    plan = plan_roadmap(growing(MW_PER_1000, auto))
    # four building quarters, 2025Q2-2026Q1: three in 2025, one in 2026
    assert capex_by_year(plan) == pytest.approx({2025: auto.gpus * 0.75, 2026: auto.gpus * 0.25})


def test_the_largest_jobs_ettr_is_the_reliability_models() -> None:
    dc = Datacenter("c", 100.0, "h100", online="2024Q1", cluster_gpus=16_384)
    gpus, ettr = largest_job(dc)
    rel = Reliability()
    interval = daly_interval_s(rel.write_s, mtbf_s(2048, rel.rate_per_1000_node_days))
    assert gpus == 16_384
    assert ettr == pytest.approx(
        expected_ettr(2048, rel.rate_per_1000_node_days, interval, rel.restart_s, rel.write_s)
    )


def test_the_meta_preset_meets_the_public_figures() -> None:
    """About 350,000 H100 and 600,000-650,000 H100-equivalents by the end of 2024 (REFERENCE.md
    section 1), and a next generation of 10x Llama 3's compute on a 100,000-GPU cluster."""
    plan = plan_roadmap(META_2023)
    end_2024 = next(q for q in plan.quarters if q.name == "2024Q4")
    h100s = sum(
        b.centre.gpus for b in plan.built if b.centre.gpu == "h100" and b.online <= quarter_index("2024Q4")
    )
    assert 340_000 <= h100s <= 360_000
    assert 480_000 <= end_2024.capacity <= 650_000
    flagships = [q for q in plan.quarters if q.flagship]
    assert flagships[1].flagship == pytest.approx(10 * flagships[0].flagship)
    assert any(
        b.centre.cluster_gpus == 100_000 and b.online <= quarter_index(flagships[1].name) for b in plan.built
    )


def test_a_roadmap_file_is_checked_field_by_field(tmp_path) -> None:
    path = tmp_path / "r.toml"
    path.write_text(
        'name = "r"\nstart = "2025Q1"\nquarters = 8\n[demand]\nresearch_h100e = 1000.0\n'
        '[[datacenters]]\nname = "a"\npower_mw = 10.0\nonline = "2025Q1"\n'
        '[[datacenters]]\nname = "b"\npower_mw = 10.0\nstart = "auto"\n'
    )
    assert len(load_roadmap(path).datacenters) == 2
    path.write_text(
        'name = "r"\nstart = "2025Q1"\nquarters = 8\n[[datacenters]]\nname = "a"\npower_mw = 10.0\n'
    )
    with pytest.raises(InputError) as err:
        load_roadmap(path)
    assert err.value.field == "datacenters[0].start"
    path.write_text(
        'name = "r"\nstart = "2025Q1"\nquarters = 8\n'
        '[[datacenters]]\nname = "a"\npower_mw = 10.0\nonline = "soon"\n'
    )
    with pytest.raises(InputError) as err:
        load_roadmap(path)
    assert err.value.field == "datacenters[0].online"


def test_cli_fleet_json() -> None:
    result = CliRunner().invoke(app, ["plan", "fleet", "--preset", "meta-2023", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["quarters"]) == 16 and data["quarters"][0]["quarter"] == "2023Q1"
    auto = [c for c in data["datacenters"] if c["name"].startswith("100K")][0]
    assert auto["online"] == "2025Q3" and 0 < auto["largest_job_ettr"] < 1
    neither = CliRunner().invoke(app, ["plan", "fleet"])
    assert neither.exit_code != 0 and "--roadmap" in neither.output


def test_cli_fleet_names_every_column(monkeypatch) -> None:
    """Every column of every table `plan fleet` prints has a header (the datacenters' last
    one, public or assumed figures, had none)."""
    from corral.report import tables

    headers: list[str] = []
    add_column = tables.Table.add_column

    def recorded(self, header="", *args, **kwargs):
        headers.append(str(header))
        return add_column(self, header, *args, **kwargs)

    monkeypatch.setattr(tables.Table, "add_column", recorded)
    result = CliRunner().invoke(app, ["plan", "fleet", "--preset", "meta-2023"])
    assert result.exit_code == 0, result.output
    assert "figures" in headers and len(headers) > 10
    assert all(h.strip() for h in headers), headers
