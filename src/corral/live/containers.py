"""A rank in a container: the command line of the node's OCI runtime (podman or Docker) that
runs a job's command in its image, as Slurm's pyxis or Kubernetes' kubelet would.

The runtime's client runs in the foreground under the launcher, attached, so it proxies the
SIGTERM a stop sends to the job's process inside (both runtimes do by default), and its exit
code is the job's (125 to 127: the runtime failed, and said why on stderr, into the job's
log). A container is named for its attempt and node; it is removed when it ends (`--rm`),
and the agent kills and removes it by name when the grace runs out, since a SIGKILL to the
client would leave it running.

Inside, the job sees its GPUs only (CDI device names for podman, `--gpus` for Docker, on real
GPUs; with fake GPUs, CUDA_VISIBLE_DEVICES alone), the corral environment, its checkpoint
folder and its working folder at the same paths, the mounts it asked for, and the host's
network (ranks rendezvous on MASTER_ADDR:MASTER_PORT).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass

log = logging.getLogger(__name__)

RUNTIMES = ("podman", "docker")
REMOVE_TIMEOUT_S = 30.0


def find_runtime(asked: str | None) -> str | None:
    """The runtime to run containers with: the one asked (a name or a path), else podman,
    else Docker, whichever is on the PATH; None if there is none."""
    if asked:
        return shutil.which(asked)
    for name in RUNTIMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def container_name(attempt: int, node: str) -> str:
    return f"corral-{attempt}-{node}"


@dataclass(frozen=True)
class Container:
    """What a rank's container is made of."""

    runtime: str  # the executable
    name: str
    image: str
    mounts: tuple[str, ...]  # SRC:DST[:ro]
    gpu_ids: tuple[int, ...]
    real_gpus: bool  # devices to pass through (else fake GPUs: the environment alone)
    env_keys: tuple[str, ...]  # passed from the launcher's environment, by name
    checkpoints: str
    workdir: str | None

    @property
    def docker(self) -> bool:
        return "docker" in self.runtime.rsplit("/", 1)[-1]

    def run_args(self, command: list[str]) -> list[str]:
        """The runtime's command line that runs `command` in the container."""
        args = [self.runtime, "run", "--rm", "--name", self.name, "--network", "host"]
        for key in self.env_keys:
            args += ["-e", key]  # (the value from the client's environment: not on any command line)
        args += ["-v", f"{self.checkpoints}:{self.checkpoints}"]
        if self.workdir is not None:
            args += ["-v", f"{self.workdir}:{self.workdir}", "-w", self.workdir]
        for mount in self.mounts:
            args += ["-v", mount]
        if self.real_gpus and self.gpu_ids:
            if self.docker:
                args += ["--gpus", "device=" + ",".join(str(g) for g in self.gpu_ids)]
            else:
                for gpu in self.gpu_ids:
                    args += ["--device", f"nvidia.com/gpu={gpu}"]
        return [*args, self.image, *command]

    def remove(self) -> None:
        """Kill and remove the container, wherever it is in its life (gone already: fine)."""
        try:
            subprocess.run(
                [self.runtime, "rm", "-f", self.name],
                capture_output=True,
                timeout=REMOVE_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            log.warning("could not remove container %s: %s", self.name, err)
