"""POST batches: the same batch implementation as jf.batch, started through the REST API."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.batch.test_batch import write_sweep_notebook
from tests.server.conftest import check


@pytest.fixture
def served_notebook(jp_root_dir):
    (jp_root_dir / "work").mkdir(exist_ok=True)
    write_sweep_notebook(jp_root_dir / "work" / "sweep.ipynb")
    return "work/sweep.ipynb"


async def test_post_batches_runs_a_grid(api, store, served_notebook, dask_cluster, jp_root_dir):
    # Absolute, as runs record it and as the sidebar's "Rerun as batch" sends it.
    body = {"notebook": str(jp_root_dir / served_notebook), "grid": {"lr": [0.25, 0.5]}, "parallel": 2,
            "cluster": dask_cluster.scheduler_address, "name": "from-the-api"}
    import json

    status, run = await api("batches", method="POST", body=json.dumps(body))
    assert status == 202, run
    check(run, "Run")
    assert run["kind"] == "batch" and run["name"] == "from-the-api"
    deadline = time.monotonic() + 240
    while store.get_run(run["id"])["status"] == "RUNNING" and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    final = store.get_run(run["id"])
    assert final["status"] == "SUCCESS", final["error"]
    children = store.list_runs(parent_id=run["id"])
    assert sorted(c["metrics"]["accuracy"] for c in children) == [0.5, 0.75]


@pytest.mark.parametrize("body, message", [
    ({"notebook": "work/sweep.ipynb", "params": {"momentum": 0.9}}, "unknown parameter"),
    # Checked with jf.param's rule before anything runs: the parameters cell says lr is a float.
    ({"notebook": "work/sweep.ipynb", "params": {"lr": "fast"}}, "parameter 'lr' must be float"),
    ({"notebook": "work/sweep.ipynb", "grid": {"lr": [0.1, "x"]}}, "grid: parameter 'lr' must be float"),
    ({"notebook": "../outside.ipynb"}, "inside the server's root"),
    ({"notebook": "/etc/outside.ipynb"}, "inside the server's root"),
    ({"notebook": "work/missing.ipynb"}, "not found"),
    ({"notebook": "work/sweep.ipynb", "grid": {"lr": []}}, "non-empty list"),
    ({"notebook": "work/sweep.ipynb", "parallel": 0}, "parallel"),
    ({"notebook": "work/sweep.ipynb", "cluster": "nope"}, "unknown cluster profile"),
    ({"path": "work/sweep.ipynb"}, "unknown field"),
    ([1, 2], "JSON object"),
])
async def test_bad_batch_bodies_are_422_and_record_nothing(api, store, served_notebook, body, message):
    import json

    status, error = await api("batches", method="POST", body=json.dumps(body))
    assert status == 422, error
    check(error, "Error")
    assert message in error["message"]
    assert store.list_runs() == []


async def test_batches_needs_credentials(api, served_notebook):
    status, _ = await api("batches", method="POST", body='{"notebook": "work/sweep.ipynb"}', auth=False)
    assert status in (401, 403)


async def test_a_batch_from_the_ui_leaves_no_cluster_running_in_the_server(api, store, served_notebook, jp_root_dir):
    # "Launch with parameters…" on the default (local) profile: the server starts a local
    # cluster for the batch, and closes it once the batch has ended.
    import json

    import dask.config

    from jupyter_flow.deploy import cluster as clusters

    before = set(clusters._handles)
    body = {"notebook": str(jp_root_dir / served_notebook), "params": {"lr": 0.25}, "cluster": "local"}
    one_worker = {"flow.clusters.local.kwargs.n_workers": 1, "flow.clusters.local.kwargs.threads_per_worker": 1}
    with dask.config.set(one_worker):
        status, run = await api("batches", method="POST", body=json.dumps(body))
        assert status == 202, run
        started = [clusters._handles[k] for k in set(clusters._handles) - before]
        assert len(started) == 1 and started[0].cluster is not None  # the batch's local cluster
        deadline = time.monotonic() + 240
        while store.get_run(run["id"])["status"] == "RUNNING" and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
    final = store.get_run(run["id"])
    assert final["status"] == "SUCCESS", final["error"]
    deadline = time.monotonic() + 60
    while started[0].cluster.status.name != "closed" and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert started[0].cluster.status.name == "closed"
    assert set(clusters._handles) == before
