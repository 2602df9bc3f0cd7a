"""Facts about where and how something ran: host, process, Python, packages, GPU, Slurm."""

from __future__ import annotations

import functools
import getpass
import os
import platform
import shutil
import socket
import subprocess
import sys


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


USER_ENV = "JUPYTER_FLOW_USER"


def flow_user() -> str:
    """Who a run belongs to: the Jupyter user, else the OS user (which stays in provenance).

    ``JUPYTER_FLOW_USER`` when set (the Jupyter server sets it for the kernels and batches
    it starts, from its own user), else ``JUPYTERHUB_USER`` (a JupyterHub single-user server
    and its kernels), else the OS user.
    """
    return os.environ.get(USER_ENV) or os.environ.get("JUPYTERHUB_USER") or current_user()


@functools.lru_cache(maxsize=1)
def host_facts() -> dict:
    """Static facts of this process's machine (cached: they do not change)."""
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "executable": sys.executable,
    }


def process_facts() -> dict:
    """Host facts plus this process, the Slurm job and the GPUs it sees."""
    facts = dict(host_facts())
    facts["pid"] = os.getpid()
    facts["user"] = current_user()
    job = slurm_job_id()
    if job:
        facts["slurm_job_id"] = job
    gateway = gateway_cluster()
    if gateway:
        facts["gateway_cluster"] = gateway
    gpus = gpu_info()
    if gpus:
        facts["gpus"] = gpus
    return facts


def slurm_job_id() -> str | None:
    return os.environ.get("SLURM_JOB_ID") or os.environ.get("SLURM_JOBID")


# Set in the job script of each worker pool's jobs (deploy/pools.py); the worker reports it
# with each task, so a task's record says which pool ran it.
POOL_ENV = "JUPYTER_FLOW_POOL"


def gateway_cluster() -> str | None:
    """The Dask Gateway cluster this worker belongs to (the gateway sets it on its workers)."""
    return os.environ.get("DASK_GATEWAY_CLUSTER_NAME") or None


@functools.lru_cache(maxsize=1)
def gpu_info() -> list[dict]:
    """GPUs visible to this process (name, uuid, driver), via pynvml or nvidia-smi; [] if none."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return []
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        pynvml = None
    if pynvml is not None:
        try:
            pynvml.nvmlInit()
            try:
                driver = _text(pynvml.nvmlSystemGetDriverVersion())
                gpus = []
                for i in range(pynvml.nvmlDeviceGetCount()):
                    handle = pynvml.nvmlDeviceGetHandleByIndex(i)
                    gpus.append({
                        "index": i,
                        "name": _text(pynvml.nvmlDeviceGetName(handle)),
                        "uuid": _text(pynvml.nvmlDeviceGetUUID(handle)),
                        "driver": driver,
                    })
                return _only_visible(gpus, visible)
            finally:
                pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index,name,uuid,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4:
            gpus.append({"index": int(parts[0]), "name": parts[1], "uuid": parts[2], "driver": parts[3]})
    return _only_visible(gpus, visible)


def _only_visible(gpus: list[dict], visible: str | None) -> list[dict]:
    if not visible:
        return gpus
    wanted = {v.strip() for v in visible.split(",")}
    return [g for g in gpus if str(g["index"]) in wanted or g["uuid"] in wanted]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def environment_facts(packages: dict[str, str] | None = None) -> dict:
    """Python and the versions of the packages a run's ops use."""
    return {"python": platform.python_version(), "packages": dict(sorted((packages or {}).items()))}
