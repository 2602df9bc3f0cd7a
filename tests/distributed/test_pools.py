"""Worker pools on a real single-node Slurm: CPU ops on cpu jobs, GPU ops on gpu jobs, one
scheduler, each pool scaled on its own (the `slurm-pools` profile, see conftest.py)."""

from __future__ import annotations

import pytest

from tests.distributed import ops
from tests.distributed.conftest import dask_worker_jobs
from tests.waiting import wait_for


@pytest.fixture
def jf_pools(flow_home, pools_cluster):
    import jupyter_flow

    return jupyter_flow


def test_each_pool_submits_its_own_job_shape(pools_cluster):
    cpu, gpu = pools_cluster.cluster.job_script("cpu"), pools_cluster.cluster.job_script("gpu")
    assert "--gres" not in cpu and "--resources pool-cpu=1" in cpu and "export JUPYTER_FLOW_POOL=cpu" in cpu
    assert "#SBATCH --gres=gpu:1" in gpu and "--resources pool-gpu=1,GPU=1" in gpu
    assert "export JUPYTER_FLOW_POOL=gpu" in gpu


def test_cpu_ops_run_on_cpu_jobs_and_gpu_ops_on_gpu_jobs_then_pools_scale_to_zero(jf_pools, capsys):
    jf = jf_pools
    naps = [ops.nap(i, 1.0) for i in range(8)]  # 8 s of work for one 1-core cpu job
    run = jf.run([ops.on_gpu(5), ops.on_gpu(ops.square(3)), *naps], cluster="slurm-pools", name="pools")
    assert run.status == "SUCCESS", [(t.name, t.status, t.reason, t.error) for t in run.tasks]
    assert run.result()[0]["value"] == 10 and run.result()[1]["value"] == 18
    assert run.result()[2:] == list(range(8))

    gpu_tasks = [t for t in run.tasks if t.name == "on_gpu"]
    cpu_tasks = [t for t in run.tasks if t.name != "on_gpu"]
    assert {t.provenance["pool"] for t in gpu_tasks} == {"gpu"}
    assert {t.provenance["pool"] for t in cpu_tasks} == {"cpu"}
    gpu_jobs = {t.provenance["slurm_job_id"] for t in gpu_tasks}
    cpu_jobs = {t.provenance["slurm_job_id"] for t in cpu_tasks}
    assert None not in gpu_jobs | cpu_jobs
    # The gpu job was up while naps still waited for the cpu job: none of them ran there.
    assert not gpu_jobs & cpu_jobs
    # Why each task ran survives its wait for a job.
    assert {t.reason for t in run.tasks} == {"no cache entry"}

    from jupyter_flow.cli import main

    assert main(["show", run.id]) == 0
    shown = capsys.readouterr().out
    assert "POOL/JOB" in shown and f"gpu/{next(iter(gpu_jobs))}" in shown and f"cpu/{next(iter(cpu_jobs))}" in shown

    # Each pool releases its idle jobs: nothing stays allocated after the run.
    wait_for(lambda: not dask_worker_jobs(), timeout=120, interval=0.5)


def test_a_gpu_op_whose_input_is_cached_loads_it_on_its_own_pool(jf_pools):
    jf = jf_pools
    first = jf.run(ops.on_gpu(ops.square(6)), cluster="slurm-pools")
    assert first.status == "SUCCESS"
    # Only the GPU op runs again; the cached square is loaded on the gpu pool's job, so
    # no cpu job is started for it (and the run does not wait for one that never comes).
    again = jf.run(ops.on_gpu(ops.square(6)), cluster="slurm-pools", force=[ops.on_gpu])
    assert again.status == "SUCCESS" and again.result()["value"] == 72
    statuses = {t.name: (t.status, t.provenance.get("pool")) for t in again.tasks}
    assert statuses == {"square": ("CACHED", None), "on_gpu": ("SUCCESS", "gpu")}


def test_a_request_that_fits_no_pool_fails_at_submission(jf_pools):
    jf = jf_pools
    with pytest.raises(jf.FlowError) as info:
        jf.run([ops.square(2), ops.huge(1)], cluster="slurm-pools")
    message = str(info.value)
    assert "op 'huge' asks for cores=64, memory=4TB" in message
    assert "cpu (cores=1, memory=1GB" in message and "gpu (cores=1, memory=1GB, gpus=1" in message
    assert jf.runs() == []
