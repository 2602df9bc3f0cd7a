"""Real-GPU runs: skipped unless nvidia-smi lists a GPU (see conftest.py)."""

from __future__ import annotations

import pytest

from tests.distributed import ops


@pytest.mark.gpu
def test_a_gpu_op_records_the_gpu_it_ran_on(flow_home):
    import jupyter_flow as jf
    from jupyter_flow.deploy import cluster as clusters

    handle = clusters.connect("local", n_workers=1, threads_per_worker=1, resources={"GPU": 1})
    try:
        run = jf.run(ops.on_gpu(5), cluster="local")
    finally:
        handle.close()
    assert run.status == "SUCCESS" and run.result()["value"] == 10
    (task,) = run.tasks
    gpu = task.provenance["gpus"][0]
    assert gpu["name"] and gpu["uuid"].startswith("GPU-") and gpu["driver"]


@pytest.mark.gpu
def test_the_cuda_profile_runs_gpu_ops_one_worker_per_gpu(flow_home):
    pytest.importorskip("dask_cuda")
    import jupyter_flow as jf
    from jupyter_flow.deploy import cluster as clusters

    handle = clusters.connect("cuda")
    try:
        run = jf.run(ops.on_gpu(ops.square(3)), cluster="cuda")
        assert run.status == "SUCCESS" and run.result()["value"] == 18
        gpu_task = next(t for t in run.tasks if t.name == "on_gpu")
        assert gpu_task.provenance["gpus"] and run.result()["cuda_visible_devices"]
    finally:
        handle.close()
