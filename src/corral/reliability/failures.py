"""What fails, how often, and for how long: the failure model the simulator draws from.

Host failures are a Poisson process per host that is up, at `rate_per_1000_node_days`; each
failure has a cause drawn from a mix given as counts (the default is Llama 3's Table 5: keep
the counts, compute the shares) and takes its host out for that cause's repair time
(exponentially distributed around the stated mean). Planned maintenance drains a batch of
hosts `maintenance_per_day` times a day; a job on them checkpoints first, so it loses no
work but pays its restart.

How jobs checkpoint under failures: `fixed` uses each job's `checkpoint_interval_s`; `young`
and `daly` set it at every (re)start from the job's MTBF at the configured rate and its
blocking write cost; `adaptive` does the same from the failure rate observed so far.
`spares_per_pod` hosts of each pod are kept out of scheduling as hot spares: a job that loses
a host takes a spare of the same pod and restarts in place, without queueing again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from corral.errors import InputError

HOUR_S = 3600.0

# Llama 3 (Dubey et al. 2024) Table 5: root causes of the 419 unexpected interruptions in a
# 54-day snapshot of 405B pre-training on 16,384 H100s (2,048 hosts).
LLAMA3_TABLE5: dict[str, int] = {
    "faulty GPU": 148,
    "GPU HBM3 memory": 72,
    "software bug": 54,
    "network switch/cable": 35,
    "host maintenance": 32,
    "GPU SRAM memory": 19,
    "GPU system processor": 17,
    "NIC": 7,
    "NCCL watchdog timeout": 7,
    "silent data corruption": 6,
    "GPU thermal interface + sensor": 6,
    "SSD": 3,
    "power supply": 3,
    "server chassis": 2,
    "IO expansion board": 2,
    "dependency": 2,
    "CPU": 2,
    "system memory": 2,
}
LLAMA3_PLANNED = 47
LLAMA3_HOSTS = 2048
LLAMA3_DAYS = 54.0
LLAMA3_RATE = 1000.0 * sum(LLAMA3_TABLE5.values()) / (LLAMA3_HOSTS * LLAMA3_DAYS)  # 3.79

# Mean time a failed host is out, per cause. The paper gives none; these are our stated
# assumptions: a part swap (GPU, HBM, board, chassis) takes two days, a cable, NIC or
# supply a day, a reboot-class fault (GPU system processor, thermal sensor) a few hours, and
# faults with nothing to repair (software, NCCL, dependency) only the reboot and health check.
REPAIR_HOURS: dict[str, float] = {
    "faulty GPU": 48,
    "GPU HBM3 memory": 48,
    "software bug": 0.5,
    "network switch/cable": 24,
    "host maintenance": 4,
    "GPU SRAM memory": 48,
    "GPU system processor": 4,
    "NIC": 24,
    "NCCL watchdog timeout": 0.5,
    "silent data corruption": 48,
    "GPU thermal interface + sensor": 8,
    "SSD": 24,
    "power supply": 24,
    "server chassis": 48,
    "IO expansion board": 48,
    "dependency": 0.5,
    "CPU": 48,
    "system memory": 24,
}
CHECKPOINT_RULES = ("fixed", "young", "daly", "adaptive")


@dataclass(frozen=True)
class Cause:
    name: str
    count: int
    repair_s: float


def llama3_causes() -> tuple[Cause, ...]:
    return tuple(Cause(n, c, REPAIR_HOURS[n] * HOUR_S) for n, c in LLAMA3_TABLE5.items())


@dataclass(frozen=True)
class FailureModel:
    rate_per_1000_node_days: float = LLAMA3_RATE
    causes: tuple[Cause, ...] = field(default_factory=llama3_causes)
    maintenance_per_day: float = 0.0
    maintenance_hosts: int = 2
    maintenance_s: float = 2 * HOUR_S
    checkpoint: str = "fixed"
    spares_per_pod: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.rate_per_1000_node_days >= 0:
            raise InputError("failure rate must be >= 0", field="rate_per_1000_node_days")
        if not self.causes or any(c.count < 0 or c.repair_s < 0 for c in self.causes):
            raise InputError("causes need counts and repair times >= 0", field="causes")
        if sum(c.count for c in self.causes) <= 0:
            raise InputError("cause counts must not all be 0", field="causes")
        if self.checkpoint not in CHECKPOINT_RULES:
            raise InputError(
                f"unknown checkpoint rule '{self.checkpoint}'; known: {', '.join(CHECKPOINT_RULES)}",
                field="checkpoint",
            )
        if self.maintenance_per_day < 0 or self.maintenance_hosts < 1 or self.maintenance_s < 0:
            raise InputError(
                "maintenance needs a rate >= 0, >= 1 host and a duration >= 0", field="maintenance"
            )
        if self.spares_per_pod < 0:
            raise InputError("spares_per_pod must be >= 0", field="spares_per_pod")

    @property
    def shares(self) -> list[float]:
        total = sum(c.count for c in self.causes)
        return [c.count / total for c in self.causes]

    @property
    def rate_per_host_s(self) -> float:
        return self.rate_per_1000_node_days / 1000.0 / 86400.0
