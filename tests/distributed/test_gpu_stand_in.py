"""GPU provenance and the GPU check without a GPU: a local cluster whose workers declare
``GPU=1`` and find a stand-in ``nvidia-smi`` on their PATH, so what a real GPU worker
records is parsed and stored through a real run (the real-GPU tests: test_gpu.py)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.distributed import ops
from tests.waiting import run_finished

# What `nvidia-smi --query-gpu=index,name,uuid,driver_version --format=csv,noheader`
# prints on a two-GPU machine (core/provenance.py gpu_info() asks exactly that).
GPUS = [
    ("0", "NVIDIA H100 80GB HBM3", "GPU-3f1c2b7a-9d4e-4a61-8c2f-5e7b1d0a9c34", "550.54.15"),
    ("1", "NVIDIA H100 80GB HBM3", "GPU-a84d6e21-07bc-4f3a-b9d2-c61e5f8a2b70", "550.54.15"),
]
QUERY = "--query-gpu=index,name,uuid,driver_version --format=csv,noheader"

STAND_IN = """#!/bin/sh
# A stand-in for nvidia-smi: answers the one query jupyter_flow asks, refuses anything else.
echo "$$ $*" >> "{calls}"
if [ "$*" = "{query}" ]; then
  printf '%s\\n' {lines}
  exit 0
fi
if [ "$*" = "-L" ]; then
  printf '%s\\n' {listing}
  exit 0
fi
echo "stand-in nvidia-smi: unexpected arguments: $*" >&2
exit 2
"""


@pytest.fixture(scope="module")
def stand_in_gpus(tmp_path_factory):
    """A stand-in ``nvidia-smi`` first on PATH and CUDA_VISIBLE_DEVICES=1, set before any
    worker starts so the workers inherit both; the file the stand-in logs its calls to.

    On a machine with a real GPU and pynvml (dask-cuda brings it), gpu_info() would ask NVML
    and never the stand-in: a ``pynvml`` that cannot be imported comes first on the path of
    the workers (spawned: they get this process's sys.path) and of child interpreters."""
    where = tmp_path_factory.mktemp("stand-in-gpu")
    no_nvml = where / "python"
    no_nvml.mkdir()
    (no_nvml / "pynvml.py").write_text('raise ImportError("the stand-in GPU tests ask nvidia-smi, not NVML")\n')
    calls = where / "calls.log"
    smi = where / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    lines = " ".join("'" + ", ".join(gpu) + "'" for gpu in GPUS)
    listing = " ".join(f"'GPU {index}: {name} (UUID: {uuid})'" for index, name, uuid, _ in GPUS)
    smi.write_text(STAND_IN.format(calls=calls, query=QUERY, lines=lines, listing=listing))
    smi.chmod(smi.stat().st_mode | stat.S_IXUSR)
    from jupyter_flow.core.provenance import gpu_info

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", f"{smi.parent}{os.pathsep}{os.environ['PATH']}")
        patch.setenv("CUDA_VISIBLE_DEVICES", "1")
        patch.syspath_prepend(str(no_nvml))
        patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(no_nvml), os.environ.get("PYTHONPATH")])))
        yield calls
    gpu_info.cache_clear()  # in case this process asked the stand-in: the GPUs are not real


@pytest.fixture(scope="module")
def gpu_local(stand_in_gpus):
    """The `local` profile connected the way the real-GPU test does: one worker declaring GPU=1."""
    from jupyter_flow.deploy import cluster as clusters

    handle = clusters.connect("local", n_workers=1, threads_per_worker=1, resources={"GPU": 1})
    yield handle
    clusters._current[0] = None
    clusters._current_overrides.clear()
    for other in [h for (name, _), h in list(clusters._handles.items()) if name == "local"]:
        clusters.forget(other)  # the one above, and any second cluster a failed run started


def test_a_run_naming_the_profile_goes_to_the_cluster_connected_for_it(flow_home, gpu_local):
    import jupyter_flow as jf
    from jupyter_flow.deploy import cluster as clusters

    run = run_finished(jf.run(ops.on_gpu(5), cluster="local", wait=False))
    assert run.status == "SUCCESS" and run.result()["value"] == 10
    assert clusters.connect("local") is gpu_local
    assert [h for (name, _), h in clusters._handles.items() if name == "local" and clusters._running(h)] == [gpu_local]


def test_choosing_the_profile_again_keeps_its_overrides(flow_home, gpu_local):
    # What `%flow cluster local` does after jf.cluster("local", resources=...): the runs
    # that follow, without cluster=, still go to the cluster whose worker declares the GPU.
    import jupyter_flow as jf
    from jupyter_flow.deploy import cluster as clusters

    assert jf.cluster("local", n_workers=1, threads_per_worker=1, resources={"GPU": 1}) is gpu_local
    assert jf.cluster("local") is gpu_local
    run = run_finished(jf.run(ops.on_gpu(6), wait=False))
    assert run.status == "SUCCESS" and run.result()["value"] == 12
    assert clusters.pools_for(None) is None and clusters.connect(None) is gpu_local


def test_a_gpu_op_records_the_gpus_its_worker_sees(flow_home, gpu_local, stand_in_gpus):
    import jupyter_flow as jf

    run = run_finished(jf.run([ops.on_gpu(7), ops.square(3)], cluster="local", wait=False))
    assert run.status == "SUCCESS"
    gpu_task = next(t for t in run.tasks if t.name == "on_gpu")
    cpu_task = next(t for t in run.tasks if t.name == "square")
    # Only the GPU CUDA_VISIBLE_DEVICES leaves visible, with what nvidia-smi said of it.
    index, name, uuid, driver = GPUS[1]
    assert list(gpu_task.provenance["gpus"]) == [{"index": int(index), "name": name, "uuid": uuid, "driver": driver}]
    assert gpu_task.provenance["pid"] != os.getpid()
    assert not cpu_task.provenance.get("gpus")  # an op that asked for no GPU records none
    # The worker asked the stand-in, with the query above, and nothing else.
    calls = stand_in_gpus.read_text().splitlines()
    assert calls and {line.split(" ", 1)[1] for line in calls} <= {QUERY, "-L"}
    # And `jupyter flow show --json` reads it back from the store.
    shown = subprocess.run([sys.executable, "-m", "jupyter_flow.cli", "show", run.id, "--json"],
                           capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert shown.returncode == 0, shown.stderr
    tasks = {t["name"]: t for t in json.loads(shown.stdout)["tasks"]}
    assert tasks["on_gpu"]["provenance"]["gpus"][0]["uuid"] == uuid


GPU_CHECK = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.py"


def gpu_check(env: dict, *args: str):
    return subprocess.run([sys.executable, str(GPU_CHECK), *args], env=env, capture_output=True, text=True,
                          timeout=180)


def test_the_gpu_check_prints_the_gpu_its_op_ran_on(stand_in_gpus, tmp_path):
    # The `cuda` profile's class swapped for a LocalCluster (dask-cuda needs a real GPU); its
    # kwargs, one worker declaring GPU=1, stay the profile's.
    env = dict(os.environ, DASK_FLOW__CLUSTERS__CUDA=repr(
        {"module": "distributed", "class": "LocalCluster", "kwargs": {"n_workers": 1, "threads_per_worker": 1}}))
    started = time.monotonic()
    done = gpu_check(env, "--home", str(tmp_path / "home"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert time.monotonic() - started < 120
    index, name, uuid, driver = GPUS[1]
    assert f"gpu {index}: name={name} uuid={uuid} driver={driver}" in done.stdout.splitlines()
    run_id = done.stdout.split()[1]
    shown = subprocess.run([sys.executable, "-m", "jupyter_flow.cli", "show", run_id, "--json"], capture_output=True,
                           text=True, timeout=120, env=dict(env, JUPYTER_FLOW_HOME=str(tmp_path / "home")))
    assert shown.returncode == 0, shown.stderr
    (task,) = json.loads(shown.stdout)["tasks"]
    assert task["status"] == "SUCCESS" and task["provenance"]["gpus"][0]["uuid"] == uuid


def test_the_gpu_check_says_so_where_no_gpu_is_visible(tmp_path):
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "nvidia-smi").exists())
    done = gpu_check(dict(os.environ, PATH=path, JUPYTER_FLOW_HOME=str(tmp_path / "home")))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip() == ("gpu_check: no GPU visible (nvidia-smi is missing or lists no GPU); run this on a "
                                   "machine with an NVIDIA GPU and its driver")
