"""Jobs in containers. No OCI container can start on the machines these tests run on, so the
agent's side is tested against a small podman of the tests' own (support/fake_podman.py,
the subcommands the agent uses, the command run as a process): the runtime's command line,
the environment and mounts a rank gets, SIGTERM delivered inside within the grace, SIGKILL
and removal after it, a missing image or runtime failing the attempt with the runtime's
message. One test runs a real container where `podman run` works."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from corral.live.containers import Container, find_runtime
from tests.support.fake_podman import install
from tests.support.live_cluster import Cluster, logs

SHOW = (
    'echo "gpus=$CUDA_VISIBLE_DEVICES job=$CORRAL_JOB_ID ckpt=$CORRAL_CHECKPOINT_DIR home=${HOME:-none}"; pwd'
)


@pytest.fixture
def podman(tmp_path, monkeypatch):
    """A `podman` on the PATH (and nothing else of a runtime) that knows the image `busybox`;
    its state folder."""
    for key, value in install(tmp_path).items():
        monkeypatch.setenv(key, value)
    return tmp_path / "podman-state"


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(f"sqlite:///{tmp_path}/corral.db", tmp_path / "data")
    yield c
    c.engine.dispose()


def calls(state: Path) -> list[list[str]]:
    return [json.loads(line) for line in (state / "calls.jsonl").read_text().splitlines()]


def test_the_runtime_command_line_for_podman_docker_and_fake_gpus():
    base = dict(
        name="corral-7-n0", image="nvcr.io/nvidia/pytorch:24.05", mounts=("/data:/data:ro",), gpu_ids=(2, 3),
        env_keys=("CORRAL_JOB_ID", "CUDA_VISIBLE_DEVICES"), checkpoints="/ck/7", workdir="/home/ada/run",
    )  # fmt: skip
    fake = Container("/usr/bin/podman", real_gpus=False, **base).run_args(["python", "train.py"])
    assert fake == [
        "/usr/bin/podman", "run", "--rm", "--name", "corral-7-n0", "--network", "host",
        "-e", "CORRAL_JOB_ID", "-e", "CUDA_VISIBLE_DEVICES",
        "-v", "/ck/7:/ck/7", "-v", "/home/ada/run:/home/ada/run", "-w", "/home/ada/run",
        "-v", "/data:/data:ro", "nvcr.io/nvidia/pytorch:24.05", "python", "train.py",
    ]  # fmt: skip
    podman = Container("/usr/bin/podman", real_gpus=True, **base).run_args(["x"])
    assert podman[-4:-2] == ["--device", "nvidia.com/gpu=3"] and "nvidia.com/gpu=2" in podman
    docker = Container("/usr/bin/docker", real_gpus=True, **base).run_args(["x"])
    assert docker[docker.index("--gpus") + 1] == "device=2,3" and "--device" not in docker


def test_the_runtime_found_is_the_one_asked_else_podman_else_docker(tmp_path, monkeypatch):
    for name in ("podman", "docker"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_runtime(None) == str(tmp_path / "podman")
    assert find_runtime("docker") == str(tmp_path / "docker")
    (tmp_path / "podman").unlink()
    assert find_runtime(None) == str(tmp_path / "docker")
    (tmp_path / "docker").unlink()
    assert find_runtime(None) is None


def test_a_job_in_an_image_sees_its_gpus_environment_and_folders(cluster, podman, tmp_path):
    agent = cluster.agent("n0", 4)
    agent.register()
    data = tmp_path / "dataset"
    data.mkdir()
    job = cluster.submit(
        "team-a", 2, ["sh", "-c", SHOW], image="busybox", mounts=[f"{data}:/data:ro"], workdir=str(tmp_path)
    )
    cluster.run_until([agent], lambda: cluster.job(job)["state"] in ("succeeded", "failed"))
    out = logs(cluster, job)
    assert cluster.job(job)["state"] == "succeeded", out
    # inside: its GPUs and job id, its checkpoint folder at the same path, not the agent's HOME
    assert f"gpus=0,1 job={job} ckpt=" in out and "home=none" in out
    assert out.strip().splitlines()[-1] == str(tmp_path)  # (its working folder)
    (run,) = [c for c in calls(podman) if c[0] == "run"]
    assert run[run.index("--name") + 1] == "corral-1-n0"
    assert f"{data}:/data:ro" in run and "busybox" in run
    assert {"CUDA_VISIBLE_DEVICES", "CORRAL_JOB_ID", "CORRAL_CHECKPOINT_DIR"} <= set(
        run[i + 1] for i, a in enumerate(run) if a == "-e"
    )
    assert not list((podman / "containers").iterdir())  # (removed once it ended)


def test_a_missing_image_fails_the_attempt_with_the_runtimes_message(cluster, podman):
    agent = cluster.agent("n0", 4)
    agent.register()
    job = cluster.submit("team-a", 1, ["true"], image="no-such-image")
    cluster.run_until([agent], lambda: cluster.job(job)["state"] in ("succeeded", "failed"))
    assert (cluster.job(job)["state"], cluster.job(job)["exit_code"]) == ("failed", 125)
    out = logs(cluster, job)
    assert "no-such-image: image not known" in out
    assert "the container runtime could not run the job in image no-such-image (exit 125)" in out


def test_a_node_without_a_runtime_fails_the_attempt_saying_so(cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    agent = cluster.agent("n0", 4)
    agent.register()
    job = cluster.submit("team-a", 1, ["true"], image="busybox")
    cluster.run_until([agent], lambda: cluster.job(job)["state"] in ("succeeded", "failed"))
    assert cluster.job(job)["exit_code"] == 127
    assert "has no container runtime (podman or docker" in logs(cluster, job)


def test_a_stop_reaches_the_process_inside_and_sigkill_removes_the_container(cluster, podman):
    agent = cluster.agent("n0", 4)
    agent.register()
    waits = "echo up; while :; do sleep 0.05; done"
    polite = cluster.submit(
        "team-a", 1, ["sh", "-c", f"trap 'echo term inside; exit 143' TERM; {waits}"], image="busybox"
    )
    stubborn = cluster.submit(
        "team-b",
        1,
        ["sh", "-c", "trap '' TERM; echo up; while :; do sleep 0.05; done"],
        image="busybox",
        grace_s=30,
    )
    cluster.run_until([agent], lambda: all("up" in logs(cluster, j) for j in (polite, stubborn)))
    for job in (polite, stubborn):
        assert cluster.call("POST", f"/v1/jobs/{job}/cancel", cluster.admin).status_code == 200
    cluster.run_until([agent], lambda: cluster.job(polite)["attempts"][0]["exit_code"] is not None)
    assert cluster.job(polite)["attempts"][0]["exit_code"] == 143 and "term inside" in logs(cluster, polite)
    cluster.clock.t += 31.0  # (the stubborn one's grace runs out)
    cluster.run_until([agent], lambda: cluster.job(stubborn)["attempts"][0]["exit_code"] is not None)
    assert ["rm", "-f", "corral-2-n0"] in calls(podman)
    assert not list((podman / "containers").iterdir())
    assert {cluster.job(j)["state"] for j in (polite, stubborn)} == {"cancelled"}


def real_podman_image(folder: Path) -> str | None:
    """A busybox image imported from Debian's busybox-static into a local podman (no
    registry), if `podman run` works here; None if it does not."""
    busybox = shutil.which("busybox")
    if shutil.which("podman") is None or busybox is None:
        return None
    root = folder / "rootfs" / "bin"
    root.mkdir(parents=True)
    shutil.copy(busybox, root / "busybox")
    for tool in ("sh", "echo", "sleep", "true"):
        (root / tool).symlink_to("busybox")
    tar = folder / "rootfs.tar"
    subprocess.run(["tar", "-C", str(folder / "rootfs"), "-cf", str(tar), "."], check=True)
    imported = subprocess.run(
        ["podman", "import", str(tar), "corral-test-busybox"], capture_output=True, timeout=120
    )
    if imported.returncode != 0:
        return None
    tried = subprocess.run(
        ["podman", "run", "--rm", "corral-test-busybox", "true"], capture_output=True, timeout=120
    )
    return "corral-test-busybox" if tried.returncode == 0 else None


@pytest.mark.container
def test_a_real_podman_runs_the_job_in_its_image(cluster, tmp_path):
    image = real_podman_image(tmp_path)
    if image is None:
        pytest.skip("podman cannot run a container here (no podman or busybox, or it is refused setrlimit)")
    agent = cluster.agent("n0", 4)
    agent.register()
    job = cluster.submit("team-a", 1, ["sh", "-c", "echo inside $container"], image=image)
    cluster.run_until([agent], lambda: cluster.job(job)["state"] in ("succeeded", "failed"), limit_s=120)
    assert cluster.job(job)["state"] == "succeeded", logs(cluster, job)
