"""Real-GPU runs: skipped unless nvidia-smi lists a GPU (see conftest.py). Without a GPU,
test_gpu_stand_in.py checks the same provenance with a stand-in nvidia-smi."""

from __future__ import annotations

import pytest

from tests.distributed import ops
from tests.waiting import run_finished


@pytest.mark.gpu
def test_a_gpu_op_records_the_gpu_it_ran_on(flow_home):
    import jupyter_flow as jf
    from jupyter_flow.deploy import cluster as clusters

    handle = clusters.connect("local", n_workers=1, threads_per_worker=1, resources={"GPU": 1})
    try:
        run = run_finished(jf.run(ops.on_gpu(5), cluster="local", wait=False))
    finally:
        clusters.forget(handle)
    assert run.status == "SUCCESS" and run.result()["value"] == 10
    (task,) = run.tasks
    gpu = task.provenance["gpus"][0]
    assert gpu["name"] and gpu["uuid"].startswith("GPU-") and gpu["driver"]


@pytest.mark.gpu
def test_the_cuda_profile_runs_gpu_ops_one_worker_per_gpu(flow_home):
    import jupyter_flow as jf
    from jupyter_flow.deploy import cluster as clusters

    # A GPU is here, so this must run: the `cuda` profile needs dask-cuda (no skip).
    handle = clusters.connect("cuda")
    try:
        run = run_finished(jf.run(ops.on_gpu(ops.square(3)), cluster="cuda", wait=False), timeout=120)
        assert run.status == "SUCCESS" and run.result()["value"] == 18
        gpu_task = next(t for t in run.tasks if t.name == "on_gpu")
        assert gpu_task.provenance["gpus"] and run.result()["cuda_visible_devices"]
    finally:
        clusters.forget(handle)
