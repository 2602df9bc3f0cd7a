"""The `gateway` profile against a real dask-gateway-server (local-process backend)."""

from __future__ import annotations

import time

import pytest

from tests.gateway import ops
from tests.gateway.conftest import gateway_clusters

pytestmark = pytest.mark.timeout(300)


def _workers(jf, **options):
    from jupyter_flow.deploy import cluster as clusters

    return clusters.connect("gateway", **options)


def test_ops_run_on_gateway_workers_with_the_options_asked_for(jf_gateway, gateway_config):
    jf = jf_gateway
    jf.cluster("gateway", worker_cores=1, image="team/flow:1.2")
    run = jf.run([ops.where(i) for i in range(3)], name="on-gateway")
    assert run.status == "SUCCESS", run.tasks
    values = run.result()
    assert [v["x"] for v in values] == [0, 1, 2]
    assert {v["image"] for v in values} == {"team/flow:1.2"}
    (listed,) = gateway_clusters(gateway_config)
    assert {v["cluster"] for v in values} == {listed.name}
    # Provenance names the gateway cluster of every task, and the run its profile.
    assert run.cluster == "gateway"
    for task in run.tasks:
        assert task.provenance["gateway_cluster"] == listed.name, task.provenance
        assert "DASK_GATEWAY_API_TOKEN" not in repr(task.provenance)
    again = jf.run([ops.where(i) for i in range(3)], name="on-gateway")
    assert {t.status for t in again.tasks} == {"CACHED"}



def test_adaptive_workers_scale_to_zero_when_idle_and_back_for_the_next_run(jf_gateway, gateway_config):
    jf = jf_gateway
    jf.cluster("gateway", adapt={"minimum": 0, "maximum": 2})
    handle = _workers(jf)
    assert jf.run(ops.square(3)).result() == 9
    deadline = time.monotonic() + 90
    while handle.client.scheduler_info()["workers"]:
        assert time.monotonic() < deadline, "idle gateway workers were not released"
        time.sleep(1)
    # The cluster itself stays (ready for the next run), with no worker held.
    assert [c.name for c in gateway_clusters(gateway_config)] == [handle.cluster.name]
    assert jf.run(ops.square(4)).result() == 16


def test_gpu_ops_run_on_workers_that_declare_gpus(jf_gateway):
    jf = jf_gateway
    jf.cluster("gateway", worker_gpus=1)
    run = jf.run(ops.on_gpu(5))
    assert run.status == "SUCCESS", run.tasks
    assert run.result() == {"value": 10, "resources": {"GPU": 1.0}}


def test_a_killed_worker_is_replaced_and_the_op_runs_again(jf_gateway, tmp_path):
    jf = jf_gateway
    jf.cluster("gateway")
    marker = tmp_path / "died"
    run = jf.run(ops.dies_once(1, str(marker)))
    assert run.status == "SUCCESS", run.tasks
    assert run.result() == 2
    assert marker.exists()  # the first try did die
    (task,) = run.tasks
    assert task.worker and str(marker.read_text()) not in str(task.provenance.get("pid"))


def test_shutdown_stops_the_gateway_cluster(jf_gateway, gateway_config):
    jf = jf_gateway
    from jupyter_flow.deploy import cluster as clusters

    jf.cluster("gateway")
    assert jf.run(ops.square(2)).result() == 4
    assert len(gateway_clusters(gateway_config)) == 1
    clusters.close_all()
    deadline = time.monotonic() + 60
    while gateway_clusters(gateway_config):
        assert time.monotonic() < deadline, "the gateway cluster outlived its jupyter_flow session"
        time.sleep(0.5)


def test_an_option_the_gateway_refuses_is_a_clear_error(jf_gateway, gateway_config):
    jf = jf_gateway
    with pytest.raises(jf.FlowError) as info:
        jf.cluster("gateway", worker_cores=64)
    message = str(info.value)
    assert "gateway" in message and "worker_cores" in message
    assert gateway_clusters(gateway_config) == []
