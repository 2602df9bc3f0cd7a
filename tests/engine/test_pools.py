"""Worker pools: parsing a profile's pools, choosing a pool per task, and what the same ops
do on a cluster without pools (the tests on a real Slurm are in tests/distributed)."""

from __future__ import annotations

import dask
import pytest

import jupyter_flow as jf
from jupyter_flow.deploy import cluster as clusters
from jupyter_flow.deploy.pools import parse_pools
from tests.waiting import gpu_worker, wait_for

@pytest.fixture(autouse=True)
def builtin_profiles_only():
    """The built-in profiles as shipped, whatever site settings this session has set."""
    with dask.config.set({"flow.clusters": {}}):
        yield


POOLS = {
    "cpu": {"cores": 2, "memory": "4GB", "walltime": "01:00:00"},
    "bigmem": {"cores": 2, "memory": "256GB", "walltime": "01:00:00"},
    "gpu": {"cores": 8, "memory": "64GB", "gpus": 1, "walltime": "04:00:00"},
    "long": {"cores": 2, "memory": "4GB", "walltime": "2-00:00:00"},
}


@pytest.mark.parametrize("request_, pool", [
    ({}, "cpu"),
    ({"cores": 2, "memory": "4GB"}, "cpu"),
    ({"memory": "100GB"}, "bigmem"),           # no GPU wasted on a memory-hungry CPU op
    ({"cores": 4}, "gpu"),                     # the only pool with 4 cores per job
    ({"GPU": 1}, "gpu"),
    ({"GPU": 1, "walltime": "03:00:00"}, "gpu"),
    ({"walltime": "10:00:00"}, "long"),
])
def test_each_task_goes_to_the_smallest_pool_that_fits(request_, pool):
    assert parse_pools(POOLS, profile="site").choose(request_, "op 'x'").name == pool


def test_a_request_no_pool_fits_names_the_op_the_request_and_the_pools():
    pools = parse_pools(POOLS, profile="site")
    with pytest.raises(jf.FlowError) as info:
        pools.choose({"GPU": 1, "walltime": "10:00:00"}, "op 'train'")
    message = str(info.value)
    assert "op 'train' asks for GPU=1, walltime=10:00:00" in message
    assert "gpu (cores=8, memory=64GB, gpus=1, walltime=04:00:00)" in message
    assert "flow.clusters.site.pools" in message


def test_pool_annotations_count_cores_and_keep_other_resources():
    gpu = parse_pools(POOLS).by_name["gpu"]
    assert gpu.annotation({"cores": 4, "memory": "8GB", "GPU": 1}) == {"pool-gpu": 4, "GPU": 1}
    assert gpu.annotation({}) == {"pool-gpu": 1}
    assert gpu.worker_resources() == {"pool-gpu": 8, "GPU": 1}


@pytest.mark.parametrize("pools, complaint", [
    ({"cpu": {"memory": "4GB"}}, "pool 'cpu': cores must be a whole number"),
    ({"cpu": {"cores": 2, "memory": "much"}}, "pool 'cpu': memory must be an amount"),
    ({"cpu": {"cores": 2, "memory": "4GB", "walltime": "1 day"}}, "pool 'cpu': walltime must be a Slurm time"),
    ({"gpu": {"cores": 2, "memory": "4GB", "gpus": 1, "processes": 2}}, "pool 'gpu': a pool with gpus"),
    ({"cpu": {"cores": 2, "memory": "4GB", "minimum": 3, "maximum": 1}}, "pool 'cpu': minimum (3)"),
    ({"cpu": {"cores": 2, "memory": "4GB", "resources": {"GPU": 1}}}, "pool 'cpu': resources names other"),
    ({"a b": {"cores": 2, "memory": "4GB"}}, "pool name 'a b'"),
    ({}, "pools must map pool names"),
])
def test_bad_pool_settings_name_the_profile_and_pool(pools, complaint):
    with pytest.raises(jf.FlowError, match="cluster profile 'site'") as info:
        parse_pools(pools, profile="site")
    assert complaint in str(info.value)


def test_a_pool_takes_unset_job_settings_from_the_profile_kwargs():
    pools = parse_pools({"cpu": {"cores": 1}}, {"memory": "2GB", "walltime": "00:30:00", "queue": "short",
                                                "interface": "ib0"}, profile="site")
    cpu = pools.by_name["cpu"]
    assert (cpu.memory, cpu.walltime) == (2 * 10**9, 1800)
    assert cpu.job["queue"] == "short" and "interface" not in cpu.job  # a cluster setting, not a job's


def test_user_config_changes_one_pool_setting_and_keeps_the_rest():
    with dask.config.set({"flow.clusters.slurm-pools.pools.gpu.maximum": 6,
                          "flow.clusters.slurm-pools.pools.fat": {"cores": 2, "memory": "512GB"},
                          "flow.clusters.slurm-pools.kwargs.queue": "compute"}):
        spec = clusters.profiles()["slurm-pools"]
        kwargs, adapt = clusters.cluster_kwargs("slurm-pools", pools={"cpu": {"maximum": 3}})
    assert spec["pools"]["gpu"] == {"cores": 4, "memory": "16GB", "gpus": 1, "maximum": 6}
    assert set(spec["pools"]) == {"cpu", "gpu", "fat"}
    assert kwargs["queue"] == "compute" and kwargs["walltime"] == "01:00:00"
    assert kwargs["pools"]["cpu"] == {"cores": 1, "memory": "4GB", "maximum": 3}
    assert kwargs["pools"]["gpu"]["maximum"] == 6 and adapt["interval"] == "1s"


def test_an_environment_variable_spelling_of_the_profile_name_reaches_it():
    # DASK_FLOW__CLUSTERS__SLURM_POOLS__POOLS__GPU__MAXIMUM=5 arrives as "slurm_pools".
    with dask.config.set({"flow.clusters.slurm_pools.pools.gpu.maximum": 5}):
        gpu = clusters.profiles()["slurm-pools"]["pools"]["gpu"]
    assert gpu == {"cores": 4, "memory": "16GB", "gpus": 1, "maximum": 5}


def test_profiles_without_pools_are_unchanged():
    kwargs, adapt = clusters.cluster_kwargs("slurm-gpu")
    assert "pools" not in kwargs and kwargs["job_extra_directives"] == ["--gres=gpu:1"]
    assert clusters.pools_for("local") is None and clusters.pools_for("tcp://127.0.0.1:8786") is None


def test_a_task_that_fits_no_pool_fails_at_submission_and_records_nothing(flow_home):
    site = {"module": "dask_jobqueue", "class": "SLURMCluster", "kwargs": {"walltime": "01:00:00"},
            "pools": {"cpu": {"cores": 1, "memory": "4GB"}, "gpu": {"cores": 4, "memory": "16GB", "gpus": 1}}}
    huge = jf.op(name="huge", resources={"cores": 64, "memory": "2TB"})(lambda: 1)
    with dask.config.set({"flow.clusters.site-pools": site}), pytest.raises(jf.FlowError) as info:
        jf.run(huge(), cluster="site-pools")
    assert "op 'huge' asks for cores=64, memory=2TB" in str(info.value)
    assert "cpu (cores=1, memory=4GB" in str(info.value) and "gpu (cores=4, memory=16GB" in str(info.value)
    assert jf.runs() == []
    # No cluster was started for a run that could not be placed.
    assert not any(name == "site-pools" for name, _ in clusters._handles)


def test_job_shape_requests_are_advisory_on_a_local_cluster(jf):
    shaped = jf.op(name="shaped", resources={"cores": 2, "memory": "1GB", "walltime": "00:10:00"})(lambda x: x + 1)
    run = jf.run(shaped(1))
    assert run.status == "SUCCESS" and run.result() == 2
    (task,) = run.tasks
    assert "pool" not in task.provenance


def test_a_gpu_op_with_memory_waits_for_a_gpu_worker_and_keeps_why_it_ran(jf, dask_cluster):
    fit = jf.op(name="fit", resources={"GPU": 1, "memory": "1GB", "cores": 1})(lambda x: x * 3)
    run = jf.run(fit(7), wait=False)
    task = wait_for(lambda: next((t for t in run.tasks if t.status == "WAITING"), None), timeout=30)
    # Only the worker resource is waited for: no LocalCluster worker declares memory.
    assert task.reason == "waiting for a worker that declares GPU=1"
    with gpu_worker(dask_cluster.scheduler_address):
        assert run.wait(timeout=90)
    assert run.status == "SUCCESS" and run.result() == 21
    (task,) = run.tasks
    assert task.reason == "no cache entry"
    assert jf.get_run(run.id).tasks[0].reason == "no cache entry"
