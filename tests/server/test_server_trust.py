"""REST: artifact previews and downloads never unpickle unsigned data; responses hold no secrets."""

from __future__ import annotations

import asyncio
import json
import pickle
import sqlite3
import time

import pytest

from jupyter_flow.artifacts import artifact_store
from jupyter_flow.artifacts.keyring import load_keyring
from tests.batch.test_batch_secrets import write_secret_notebook
from tests.planted import files_holding, plant
from tests.server.conftest import check, make_run


@pytest.fixture
def artifacts(flow_config, store):
    return artifact_store(flow_config["artifacts_url"], keyring=load_keyring())


@pytest.mark.parametrize("serializer", ["cloudpickle", "pandas"])
async def test_planted_pickle_is_neither_unpickled_nor_served(api, flow_config, tmp_path, serializer):
    marker = tmp_path / "pwned"
    digest = plant(flow_config["artifacts_url"], marker, serializer)
    status, preview = await api(f"artifacts/{digest}")
    assert status == 200, preview
    check(preview, "ArtifactPreview")
    assert preview["kind"] == "untrusted" and "has no signature" in preview["data"]
    status, error = await api(f"artifacts/{digest}", download="1")
    assert status == 409, error
    check(error, "Error")
    assert digest in error["message"] and "not served" in error["message"]
    assert not marker.exists()


async def test_signed_pickles_preview_and_download_and_sealed_ones_stay_closed(api, artifacts):
    signed = artifacts.put({1, 2}).digest
    status, preview = await api(f"artifacts/{signed}")
    assert status == 200 and preview["kind"] == "repr" and preview["data"] == "{1, 2}"
    status, response = await api(f"artifacts/{signed}", download="1")
    assert status == 200 and response.headers["X-Flow-Serializer"] == "cloudpickle"
    assert pickle.loads(response.body) == {1, 2}

    sealed = artifacts.put({"API_TOKEN": "s3cr3t"}, seal=True).digest
    status, preview = await api(f"artifacts/{sealed}")
    assert status == 200 and "sealed" in preview["data"] and "s3cr3t" not in json.dumps(preview)
    status, error = await api(f"artifacts/{sealed}", download="1")
    assert status == 409 and "sealed" in error["message"]


async def test_secret_values_written_by_older_versions_are_redacted_in_responses(api, store, owner, flow_config):
    make_run(store, owner, "R1", tasks=[{"id": "T1", "node": "0", "name": "call", "key": "k" * 64,
                                         "components": {"params": {"n": 1}, "globals": {}}}])
    # As an older version (or a hand-edited store) would have left them: in plain text.
    with sqlite3.connect(flow_config["db_url"].removeprefix("sqlite:///")) as conn:
        conn.execute("UPDATE runs SET params = ? WHERE id = 'R1'",
                     (json.dumps({"db": {"password": "hunter2"}, "lr": 0.1}),))
        conn.execute("UPDATE tasks SET components = ? WHERE id = 'T1'",
                     (json.dumps({"params": {"api_key": "hunter2", "n": 1}, "globals": {"TOKEN": "hunter2"}}),))
    bodies = [await api("runs/R1"), await api("runs"), await api("runs/R1/tasks"), await api("tasks/T1")]
    assert all(status == 200 for status, _ in bodies)
    assert "hunter2" not in json.dumps([body for _, body in bodies])
    assert bodies[0][1]["params"] == {"db": {"password": "***"}, "lr": 0.1}
    task = bodies[3][1]
    assert task["key"] == "k" * 64 and task["components"]["params"] == {"api_key": "***", "n": 1}


async def test_batch_with_a_secret_keeps_it_out_of_responses_and_files(api, store, dask_cluster, jp_root_dir,
                                                                       flow_home):
    notebook = write_secret_notebook(jp_root_dir / "secret.ipynb")
    body = {"notebook": str(notebook), "params": {"api_token": "s3cr3t", "lr": 0.5},
            "cluster": dask_cluster.scheduler_address}
    status, batch = await api("batches", method="POST", body=json.dumps(body))
    assert status == 202, batch
    deadline = time.monotonic() + 240
    while store.get_run(batch["id"])["status"] == "RUNNING" and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    assert store.get_run(batch["id"])["status"] == "SUCCESS", store.get_run(batch["id"])["error"]

    (child,) = store.list_runs(parent_id=batch["id"])
    (cell_run,) = store.list_runs(parent_id=child["id"])
    responses = [await api("runs", limit=50), await api(f"runs/{batch['id']}")]
    for run_id in (child["id"], cell_run["id"]):
        responses += [await api(f"runs/{run_id}"), await api(f"runs/{run_id}/tasks"), await api(f"graphs/{run_id}")]
    digests = [child["outputs"]["output_notebook"], cell_run["snapshot"]]
    for task in store.get_tasks(cell_run["id"]):
        responses += [await api(f"tasks/{task['id']}"), await api(f"tasks/{task['id']}/logs")]
        digests += list(task["outputs"].values())
    for digest in digests:
        responses += [await api(f"artifacts/{digest}", max_bytes=1048576)]
    _, download = await api(f"artifacts/{child['outputs']['output_notebook']}", download="1", raw=True)
    assert all(status == 200 for status, _ in responses)
    assert "s3cr3t" not in json.dumps([body for _, body in responses])
    assert b"s3cr3t" not in download.body and b"'***'" in download.body
    assert files_holding(flow_home) == []

    # "Rerun as batch" sends the stored params back: the secret must be given again.
    rerun = {"notebook": str(notebook), "params": child["params"], "cluster": dask_cluster.scheduler_address}
    status, error = await api("batches", method="POST", body=json.dumps(rerun))
    assert status == 422
    check(error, "Error")
    assert error["message"] == "parameter 'api_token' is secret and was not stored; pass its value again"


class _Reports:
    """Unpickling runs a shell that writes which process unpickled it and what it could see."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"echo $PPID:${{FLOW_TEST_SERVER_SECRET:-none}} > {self.marker}",))


async def test_the_server_never_unpickles_even_a_trusted_pickle(api, artifacts, flow_config, tmp_path,
                                                                monkeypatch):
    import os

    monkeypatch.setenv("FLOW_TEST_SERVER_SECRET", "s3cr3t")  # the server's environment
    # A teammate's validly signed value: refused, naming them; nothing runs anywhere.
    theirs = artifact_store(flow_config["artifacts_url"], keyring=load_keyring(tmp_path / "mate-keys"))
    foreign = theirs.put(_Reports(tmp_path / "foreign")).digest
    status, preview = await api(f"artifacts/{foreign}")
    assert status == 200 and preview["kind"] == "untrusted", preview
    assert "do not trust" in preview["data"] and "jupyter flow trust add" in preview["data"]
    status, error = await api(f"artifacts/{foreign}", download="1")
    assert status == 409, error
    assert not (tmp_path / "foreign").exists()

    # The server user's own pickle previews, but is decoded in a throwaway child process that
    # does not inherit the server's environment.
    own = artifacts.put(_Reports(tmp_path / "own")).digest
    status, preview = await api(f"artifacts/{own}")
    assert status == 200, preview
    pid, secret = (tmp_path / "own").read_text().strip().split(":")
    assert int(pid) != os.getpid() and secret == "none"
