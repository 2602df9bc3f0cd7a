"""Fixtures for tests against a real single-node Slurm (scripts/start-slurm.sh) and GPUs.

In CI (CI=true, running as root) these tests always run: a Slurm that cannot start fails
them. Elsewhere they are skipped unless the user is root, since Slurm's daemons need it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
START_SLURM = ROOT / "scripts" / "start-slurm.sh"

# Small jobs: this machine may have 2 cores. Adaptive settings short enough that idle
# jobs go away within seconds.
TEST_SLURM = {
    "kwargs": {
        "cores": 1, "processes": 1, "memory": "1GB", "walltime": "00:15:00",
        "interface": "lo", "queue": "debug", "scheduler_options": {"dashboard_address": "127.0.0.1:0"},
    },
    "adapt": {"minimum": 0, "maximum": 2, "interval": "500ms", "wait_count": 2, "target_duration": "1s"},
}


def gpu_visible() -> bool:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "GPU" in out


def pytest_collection_modifyitems(config, items):
    if gpu_visible():
        return
    skip = pytest.mark.skip(reason="no GPU visible (nvidia-smi -L lists none)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A running single-node Slurm; the directory Slurm job logs go to."""
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if os.geteuid() != 0 and not in_ci:
        pytest.skip("a real Slurm needs root (run as root or in CI)")
    was_running = subprocess.run(["bash", str(START_SLURM), "status"], capture_output=True).returncode == 0
    started = subprocess.run(["bash", str(START_SLURM)], capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, f"scripts/start-slurm.sh failed:\n{started.stdout}\n{started.stderr}"
    logs = tmp_path_factory.mktemp("slurm-logs")
    yield logs
    if not was_running:
        subprocess.run(["bash", str(START_SLURM), "stop"], capture_output=True, timeout=60)


# Both pools' jobs are small enough to run side by side on a 2-core node; the gpu pool
# asks for the count-only `gpu` GRES of scripts/start-slurm.sh.
TEST_POOLS = {
    "pools": {"cpu": {"cores": 1, "memory": "1GB", "maximum": 1},
              "gpu": {"cores": 1, "memory": "1GB", "gpus": 1, "maximum": 1}},
    "adapt": {"interval": "500ms", "wait_count": 2},
}


@pytest.fixture(scope="session")
def slurm_config(slurm):
    """The built-in `slurm`, `slurm-gpu` and `slurm-pools` profiles, overridden in dask config
    for this machine."""
    import dask

    profile = {**TEST_SLURM, "kwargs": {**TEST_SLURM["kwargs"], "log_directory": str(slurm)}}
    pools = {"kwargs": {k: v for k, v in profile["kwargs"].items() if k not in ("cores", "memory")}, **TEST_POOLS}
    with dask.config.set({"flow.clusters.slurm": profile, "flow.clusters.slurm-gpu": profile,
                          "flow.clusters.slurm-pools": pools}):
        yield profile


@pytest.fixture(scope="session")
def slurm_cluster(slurm_config):
    """The `slurm` profile's cluster (dask-jobqueue, adaptive from zero jobs), shared."""
    from jupyter_flow.deploy import cluster as clusters

    handle = clusters.connect("slurm")
    yield handle
    handle.close()
    for key, value in list(clusters._handles.items()):
        if value is handle:
            clusters._handles.pop(key)


@pytest.fixture
def jf_slurm(flow_home, slurm_cluster):
    """``jupyter_flow`` with runs going to the shared `slurm` profile cluster."""
    import jupyter_flow
    from jupyter_flow.deploy import cluster as clusters

    jupyter_flow.cluster("slurm")
    yield jupyter_flow
    clusters._current[0] = None
    clusters._current_overrides.clear()


@pytest.fixture(scope="session")
def pools_cluster(slurm_config):
    """The `slurm-pools` profile's cluster (a cpu and a gpu pool, each from zero jobs), shared."""
    from jupyter_flow.deploy import cluster as clusters

    handle = clusters.connect("slurm-pools")
    yield handle
    handle.close()
    for key, value in list(clusters._handles.items()):
        if value is handle:
            clusters._handles.pop(key)


def dask_worker_jobs() -> list[str]:
    """Ids of the dask-jobqueue jobs Slurm knows about (pending or running)."""
    out = subprocess.run(["squeue", "-h", "-n", "dask-worker", "-o", "%i"],
                         capture_output=True, text=True, check=True).stdout
    return out.split()
