"""Fleets, the job table, load scaling and the Philly data against their published sizes."""

from __future__ import annotations

import pytest

from corral.fleet import load_fleet
from corral.hardware import GPUS
from corral.traces import read_jobs
from tests.conftest import make_jobs


def test_meta_24k_matches_llama3_roce_cluster():
    # Llama 3 paper 3.3.1: 24K GPUs, 2 servers (16 GPUs) per rack, 192 racks = 3,072-GPU pod.
    fleet = load_fleet("meta-24k")
    assert fleet.total_gpus == 24_576 and fleet.hosts == 3_072
    d = fleet.describe()
    assert d["racks"] == 1_536 and d["pods"] == 8


def test_meta_2024_is_about_650k_h100_equivalents():
    fleet = load_fleet("meta-2024")
    assert 600_000 <= fleet.h100_equivalents <= 660_000
    assert len(fleet.datacenter_names) > 1


def test_philly_fleet_from_helios_vc_table():
    fleet = load_fleet("philly")
    assert len(fleet.pools) == 11 and fleet.total_gpus == 352 * 8
    assert fleet.pool_gpus[fleet.pools.index("6214e9")] == 512
    # VCs without a pool run in the largest one.
    assert fleet.pools[fleet.pool_of_queue("23dbec")] == "6214e9"


def test_shorthand_and_toml(tmp_path):
    flat = load_fleet("1x640")
    assert flat.total_gpus == 640 and flat.hosts == 1
    path = tmp_path / "lab.toml"
    path.write_text(
        'name = "lab"\ngpu = "h200"\ngpus_per_host = 8\ndefault_pool = "shared"\n'
        '[[pools]]\nname = "shared"\nhosts = 4\n[[pools]]\nname = "vision"\nhosts = 2\ngpu = "b200"\n'
    )
    lab = load_fleet(str(path))
    assert lab.pools == ["shared", "vision"] and lab.total_gpus == 48
    assert lab.pool_of_queue("nlp") == 0
    assert sorted(lab.gpu_names) == ["b200", "h200"]


def test_catalogue_numbers():
    assert GPUS["h100"].bf16_flops == 989e12 and GPUS["h100"].power_w == 700
    assert GPUS["a100"].h100_equivalents == pytest.approx(312 / 989)
    assert GPUS["gb200"].nvlink_domain_gpus == 72


def test_load_rescaling():
    jobs = make_jobs([(0, 2, 100), (50, 2, 100), (100, 4, 50)])
    # 600 GPU-s over 4 GPUs x 100 s = 1.5
    assert jobs.offered_load(4) == pytest.approx(1.5)
    half = jobs.with_load(0.75, 4)
    assert half.submit_s.tolist() == [0, 100, 200]
    assert half.offered_load(4) == pytest.approx(0.75)


def test_packaged_philly_trace_has_all_jobs():
    from importlib import resources

    with resources.as_file(resources.files("corral.data").joinpath("philly_pollux.csv.gz")) as path:
        jobs = read_jobs(path)
    assert len(jobs) == 82_247  # Pollux artifact's Philly table
    assert int(jobs.gpus.max()) == 128
    assert len(set(jobs.queue)) == 15
