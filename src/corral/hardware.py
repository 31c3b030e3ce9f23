"""The GPU catalogue: peak dense FLOPs, memory, bandwidth and power per accelerator.

Numbers are vendor datasheet values (dense, no sparsity) as collected in REFERENCE.md
section 3. NVLink bandwidth is per GPU and per direction (half the datasheet's bidirectional
figure); scale-out is the usual NIC per GPU of that generation's reference servers (A100 HDR
200 Gb/s, H100/H200 NDR 400 Gb/s, Blackwell 800 Gb/s), which a planner run can override. The
planner and the fleet both read them from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from corral.config import build, read_mapping
from corral.errors import InputError


@dataclass(frozen=True)
class GPU:
    """One accelerator model."""

    name: str
    bf16_flops: float
    fp8_flops: float | None
    memory_gib: float
    hbm_bytes_per_s: float
    power_w: float
    nvlink_domain_gpus: int
    nvlink_bytes_per_s: float
    scale_out_bytes_per_s: float

    @property
    def h100_equivalents(self) -> float:
        """Dense BF16 throughput relative to an H100 SXM: how fleets are counted in 'H100e'."""
        return self.bf16_flops / GPUS["h100"].bf16_flops


TERA = 1e12

GPUS: dict[str, GPU] = {
    "a100": GPU("a100", 312 * TERA, None, 80, 2.04e12, 400, 8, 300e9, 25e9),
    "h100": GPU("h100", 989 * TERA, 1979 * TERA, 80, 3.35e12, 700, 8, 450e9, 50e9),
    "h200": GPU("h200", 989 * TERA, 1979 * TERA, 141, 4.8e12, 700, 8, 450e9, 50e9),
    "b200": GPU("b200", 2250 * TERA, 4500 * TERA, 180, 8.0e12, 1000, 8, 900e9, 100e9),
    # GB200 NVL72: ~120 kW per 72-GPU rack, quoted per GPU here.
    "gb200": GPU("gb200", 2500 * TERA, 5000 * TERA, 192, 8.0e12, 120_000 / 72, 72, 900e9, 100e9),
}


def gpu(name: str) -> GPU:
    """Look a GPU up by name, case-insensitively."""
    key = name.strip().lower()
    if key not in GPUS:
        raise InputError(f"unknown GPU '{name}'; known: {', '.join(sorted(GPUS))}", field="gpu")
    return GPUS[key]


def load_gpu(spec: str) -> GPU:
    """A catalogue name, or a TOML/JSON file whose keys are the GPU's fields (a `[gpu]` table
    or the whole file), for accelerators the catalogue lacks."""
    path = Path(spec)
    if spec.strip().lower() in GPUS or not path.exists():
        return gpu(spec)
    data = read_mapping(path, "gpu")
    data.setdefault("name", path.stem)
    found = build(GPU, data, str(path))
    for name in ("bf16_flops", "memory_gib", "hbm_bytes_per_s", "power_w", "nvlink_bytes_per_s"):
        if not isinstance(getattr(found, name), int | float) or not getattr(found, name) > 0:
            raise InputError(f"{name} must be a number > 0", source=str(path), field=name)
    return found
