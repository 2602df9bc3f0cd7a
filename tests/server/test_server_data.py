"""tasks/{id}, logs, graphs, artifacts (previews and download), lineage and clusters."""

from __future__ import annotations

import hashlib
import json
import os
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dask.config
import pytest

from jupyter_flow.artifacts import artifact_store
from jupyter_flow.artifacts.keyring import load_keyring
from tests.server.conftest import FLOW_ONLY, check, make_run, start_server_process
from tests.waiting import stop

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@pytest.fixture
def artifacts(flow_config, store):
    """The artifact store as a kernel of the server's user opens it (signing with their key)."""
    return artifact_store(flow_config["artifacts_url"], keyring=load_keyring())


@pytest.fixture
def pipeline(store, owner, artifacts):
    """load -> clean -> train in run R1; train again, restored from cache, in run R2."""
    raw = artifacts.put(list(range(5))).digest
    clean = artifacts.put([0, 2, 4]).digest
    model = artifacts.put({"accuracy": 0.93}).digest
    make_run(store, owner, "R1", name="first", graph={"targets": [2]}, tasks=[
        {"id": "T0", "node": "0", "name": "load", "status": "SUCCESS", "outputs": {"out": raw}},
        {"id": "T1", "node": "1", "name": "clean", "status": "SUCCESS", "outputs": {"out": clean},
         "upstream": ["0"]},
        {"id": "T2", "node": "2", "name": "train", "status": "SUCCESS", "outputs": {"out": model},
         "upstream": ["1"], "stdout": "epoch 1\nepoch 2\n", "stderr": "warning: slow\n"},
    ])
    make_run(store, owner, "R2", name="second", tasks=[
        {"id": "U0", "node": "0", "name": "train", "status": "CACHED", "outputs": {"out": model}},
    ])
    return {"raw": raw, "clean": clean, "model": model}


async def test_task_and_its_logs(api, pipeline):
    status, task = await api("tasks/T2")
    assert status == 200
    check(task, "Task")
    assert task["name"] == "train" and "stdout" not in task
    status, logs = await api("tasks/T2/logs")
    assert status == 200
    check(logs, "TaskLogs")
    assert logs["stdout"] == "epoch 1\nepoch 2\n" and logs["stderr"] == "warning: slow\n"
    assert logs["truncated"] is False


async def test_graphs_list_and_one_graph(api, pipeline):
    status, page = await api("graphs", limit=1)
    assert status == 200
    check(page, "GraphPage")
    assert [(g["id"], g["nodes"]) for g in page["graphs"]] == [("R2", 1)]
    _, rest = await api("graphs", before=page["next_before"])
    assert [g["id"] for g in rest["graphs"]] == ["R1"] and rest["next_before"] is None
    status, graph = await api("graphs/R1")
    assert status == 200
    check(graph, "Graph")
    assert [n["name"] for n in graph["nodes"]] == ["load", "clean", "train"]
    assert graph["edges"] == [{"source": "T0", "target": "T1"}, {"source": "T1", "target": "T2"}]
    assert graph["targets"] == ["T2"]


async def test_lineage_of_a_task_goes_back_to_the_sources(api, pipeline):
    status, lineage = await api("lineage/T2")
    assert status == 200
    check(lineage, "Lineage")
    assert lineage["root"] == {"type": "task", "id": "T2"}
    assert {t["id"] for t in lineage["tasks"]} == {"T0", "T1", "T2"}
    assert set(lineage["artifacts"]) == set(pipeline.values())
    edges = {(e["source"], e["target"]) for e in lineage["edges"]}
    assert {("T0", "T1"), ("T1", "T2"), ("T2", pipeline["model"])} <= edges


async def test_lineage_of_an_artifact_names_its_producers(api, pipeline):
    status, lineage = await api(f"lineage/{pipeline['model']}")
    assert status == 200
    check(lineage, "Lineage")
    assert lineage["root"] == {"type": "artifact", "id": pipeline["model"]}
    assert {t["id"] for t in lineage["tasks"]} == {"T0", "T1", "T2", "U0"}
    assert (await api(f"lineage/{'0' * 64}"))[0] == 404


async def test_artifact_previews_by_kind(api, store, owner, artifacts):
    import pandas as pd

    values = {
        "json": {"accuracy": 0.93},
        "text": "x" * 100_000,
        "table": pd.DataFrame({"a": range(100), "b": ["v"] * 100}),
        "image": PNG,
        "repr": {1, 2, 3},
    }
    for kind, value in values.items():
        digest = artifacts.put(value).digest
        status, preview = await api(f"artifacts/{digest}", max_bytes=4096)
        assert status == 200, (kind, preview)
        check(preview, "ArtifactPreview")
        assert preview["kind"] == kind, preview
        assert len(str(preview["data"])) < 8192  # bounded
    assert preview["producers"] == []


async def test_artifact_preview_is_bounded_and_truncation_is_said(api, artifacts):
    digest = artifacts.put("y" * 500_000).digest
    _, preview = await api(f"artifacts/{digest}", max_bytes=100)
    assert preview["truncated"] is True and len(preview["data"]) <= 100


async def test_a_preview_of_nul_bytes_stays_within_max_bytes_once_encoded(api, artifacts):
    # A NUL is one stored byte but six characters of JSON (\\u0000): the preview used to come
    # back six times the max_bytes it was asked for.
    for size in (100_000, 900):
        digest = artifacts.put(b"\x00" * size).digest
        _, response = await api(f"artifacts/{digest}", max_bytes=1000, raw=True)
        preview = json.loads(response.body)
        assert len(json.dumps(preview["data"])) <= 1000, size
        assert preview["kind"] == "text" and preview["data"] and set(preview["data"]) == {"\x00"}
        assert preview["truncated"] is True
        assert len(response.body) < 1000 + 2000  # the data plus the registry facts around it


async def test_a_download_of_a_corrupt_artifact_sends_none_of_it(api, artifacts, flow_config):
    digest = artifacts.put(b"good bytes " * 1000).digest
    path = Path(flow_config["artifacts_url"]) / digest[:2] / digest
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    status, body = await api(f"artifacts/{digest}", download="1")
    assert status == 404 and "is corrupt" in body["message"], body


def _peak_rss_mb(pid: int) -> float:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in lines if line.startswith("VmHWM:")) / 1024


@pytest.mark.timeout(300)
def test_large_downloads_are_streamed_not_held_in_server_memory(flow_home, tmp_path):
    db_url, artifacts_url = f"sqlite:///{flow_home / 'flow.db'}", str(flow_home / "artifacts")
    payload = os.urandom(2**20) * 48
    digest = artifact_store(artifacts_url).put(payload).digest
    server = start_server_process(tmp_path, db_url, artifacts_url, *FLOW_ONLY)
    try:
        assert server.wait_for_api()[0] == 200
        pid = server.proc.pid
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets the peak to what is in use now
        before = _peak_rss_mb(pid)

        def download(_):
            request = urllib.request.Request(f"{server.api_url}artifacts/{digest}?download=1",
                                             headers={"Authorization": f"token {server.token}"})
            received, length = hashlib.sha256(), 0
            with urllib.request.urlopen(request, timeout=120) as response:
                assert response.headers["Content-Length"] == str(len(payload))
                assert response.headers["Content-Type"] == "application/octet-stream"
                while chunk := response.read(2**20):
                    received.update(chunk)
                    length += len(chunk)
            return length, received.hexdigest()

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(download, range(4)))
        assert results == [(len(payload), hashlib.sha256(payload).hexdigest())] * 4
        grown = _peak_rss_mb(pid) - before
        # Four concurrent 48 MB downloads held whole would need about 200 MB more at their peak.
        assert grown < 40, f"the server's peak memory grew by {grown:.0f} MB"
    finally:
        stop(server.proc)


async def test_artifact_download_gives_the_serialized_value(api, artifacts, pipeline):
    status, body = await api(f"artifacts/{pipeline['model']}", download="1")
    assert status == 200
    assert body == {"accuracy": 0.93}  # served as application/json
    digest = artifacts.put(PNG).digest
    status, response = await api(f"artifacts/{digest}", download="1")
    assert response.body == PNG
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert f'filename="{digest}.bin"' in response.headers["Content-Disposition"]


async def test_artifact_errors(api):
    assert (await api(f"artifacts/{'a' * 64}"))[0] == 404
    assert (await api(f"artifacts/{'a' * 64}", download="1"))[0] == 404
    for bad in ("xyz", "A" * 64, "a" * 63, "a" * 65):
        status, body = await api(f"artifacts/{bad}")
        assert status == 400, bad
        check(body, "Error")
    assert (await api(f"artifacts/{'a' * 64}", max_bytes="1"))[0] == 400
    assert (await api(f"artifacts/{'a' * 64}", download="yes"))[0] == 400


async def test_clusters_in_use_and_profiles_with_secrets_hidden(api, store, owner):
    store.register_cluster(owner, "local", "tcp://127.0.0.1:8786", "http://127.0.0.1:8787/status")
    gone = store.register_owner(user="ada")
    store.register_cluster(gone, "slurm", "tcp://10.0.0.9:8786")
    store.release_owner(gone)
    profile = {"module": "dask_jobqueue", "class": "SLURMCluster",
               "kwargs": {"queue": "gpu", "password": "hunter2"}}
    with dask.config.set({"flow.clusters.gpu": profile}):
        status, body = await api("clusters")
    assert status == 200
    check(body, "Clusters")
    assert [c["address"] for c in body["clusters"]] == ["tcp://127.0.0.1:8786"]
    assert {"local", "gpu"} <= set(body["profiles"]) and body["default_profile"] == "local"
    assert body["profiles"]["gpu"]["kwargs"] == {"queue": "gpu", "password": "***"}
