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
