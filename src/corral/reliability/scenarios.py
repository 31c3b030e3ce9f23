"""One synchronous training job against the failure process, at Llama 3's scale and at
100,000+ GPUs (REFERENCE.md section 4); docs/reliability.md justifies each constant.

llama3-405b: 16,384 H100s (2,048 hosts in 8 pods of 256, plus 8 hot spares per pod) for
about 54 days at the Table 5 failure rate (3.79 per 1000 node-days), one planned
maintenance window a day, a 5-minute restart, a 15-second blocking checkpoint write, and
Daly's checkpoint interval.

100k: the same recipe on 131,072 GPUs (16,384 hosts in 32 pods), with a 10-minute recovery
stall and the checkpoint interval the 16k job used; then the steps that recover effective
training time: a 3-minute stall, Daly's interval for the larger job, and what halving the
spares costs (a job whose pod has no spare left waits for a repair).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from corral.fleet import Fleet, Segment
from corral.reliability.ettr import daly_interval_s, mtbf_s
from corral.reliability.failures import LLAMA3_RATE, FailureModel
from corral.workload import JobTable

DAY_S = 86400.0
GPUS_PER_HOST = 8
SPARES_PER_POD = 8
RESTART_S = 300.0  # re-queue, reschedule and load the checkpoint (Llama 3: fast startup)
WRITE_S = 15.0  # blocking part of a ~5.7 TB checkpoint: 5x Tectonic's 2 TB/s ideal
MAINTENANCE_PER_DAY = 1.0  # Llama 3: automated maintenance interrupted training daily
LLAMA3_HOSTS, LLAMA3_PODS = 2048, 8
LLAMA3_USEFUL_DAYS = 49.5  # about 54 days of wall clock at an ETTR near 0.92
# The 16k job's Daly interval at the Table 5 rate: the "same recipe" at 100k.
LLAMA3_INTERVAL_S = daly_interval_s(WRITE_S, mtbf_s(LLAMA3_HOSTS, LLAMA3_RATE))
BIG_HOSTS, BIG_PODS = 16_384, 32
BIG_USEFUL_DAYS = 4.0


@dataclass(frozen=True)
class TrainingRun:
    """A single synchronous job on a fleet of its size plus spares."""

    name: str
    hosts: int
    pods: int
    useful_days: float
    restart_s: float = RESTART_S
    write_s: float = WRITE_S
    interval_s: float = LLAMA3_INTERVAL_S
    checkpoint: str = "fixed"
    spares_per_pod: int = SPARES_PER_POD
    maintenance_per_day: float = MAINTENANCE_PER_DAY
    rate_per_1000_node_days: float = LLAMA3_RATE
    seed: int = 0

    def fleet(self) -> Fleet:
        per_pod = self.hosts // self.pods + self.spares_per_pod
        per_pod += per_pod % 2  # whole racks of two hosts
        segment = Segment("default", per_pod * self.pods, GPUS_PER_HOST, 2, max(1, per_pod // 2), "h100")
        return Fleet(self.name, [segment], "default")

    def jobs(self) -> JobTable:
        return JobTable(
            job_id=[self.name],
            submit_s=np.array([0.0]),
            gpus=np.array([self.hosts * GPUS_PER_HOST]),
            duration_s=np.array([self.useful_days * DAY_S]),
            queue=["pretrain"],
            user=[""],
            kind=["pretrain"],
            priority=np.array([100]),
            preemptible=np.array([False]),
            source=f"scenario {self.name}",
            checkpoint_interval_s=np.array([self.interval_s]),
            restart_s=np.array([self.restart_s]),
            checkpoint_write_s=np.array([self.write_s]),
        )

    def failures(self) -> FailureModel:
        return FailureModel(
            rate_per_1000_node_days=self.rate_per_1000_node_days,
            maintenance_per_day=self.maintenance_per_day,
            checkpoint=self.checkpoint,
            spares_per_pod=self.spares_per_pod,
            seed=self.seed,
        )


def llama3_405b(seed: int = 0) -> TrainingRun:
    return TrainingRun(
        "llama3-405b", LLAMA3_HOSTS, LLAMA3_PODS, LLAMA3_USEFUL_DAYS, checkpoint="daly", seed=seed
    )


def hundred_k_steps(seed: int = 0) -> list[tuple[str, TrainingRun]]:
    """The 100k baseline, then one change at a time."""
    base = TrainingRun("100k", BIG_HOSTS, BIG_PODS, BIG_USEFUL_DAYS, restart_s=600.0, seed=seed)
    fast = replace(base, restart_s=180.0)
    daly = replace(fast, checkpoint="daly")
    few = replace(daly, spares_per_pod=4)
    return [
        ("10-min recovery, 16k job's checkpoint interval", base),
        ("3-min recovery", fast),
        ("3-min recovery, Daly interval", daly),
        ("3-min recovery, Daly interval, 4 spares per pod", few),
    ]
