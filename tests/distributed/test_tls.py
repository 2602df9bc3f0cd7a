"""TLS between client, scheduler and workers through a profile's ``security=`` setting."""

from __future__ import annotations

import dask
import pytest

from tests.distributed import ops


def test_a_flow_runs_over_tls_with_a_security_object(flow_home):
    pytest.importorskip("cryptography")
    from distributed.security import Security

    import jupyter_flow as jf
    from jupyter_flow.deploy import cluster as clusters

    profile = {"module": "distributed", "class": "LocalCluster",
               "kwargs": {"host": "127.0.0.1", "n_workers": 1, "threads_per_worker": 1,
                          "dashboard_address": "127.0.0.1:0", "processes": True}}
    with dask.config.set({"flow.clusters.local-tls": profile}):
        handle = clusters.connect("local-tls", security=Security.temporary())
        try:
            assert handle.address.startswith("tls://")
            assert all(addr.startswith("tls://") for addr in handle.client.scheduler_info()["workers"])
            run = jf.run(ops.square(7), cluster="local-tls", name="tls")
            assert run.status == "SUCCESS" and run.result() == 49
        finally:
            handle.close()
