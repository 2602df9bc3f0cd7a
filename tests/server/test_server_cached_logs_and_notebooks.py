"""Two routes the sidebar's op details and batch view use, on a real server and store:
a cached task's logs are those of the execution that produced its value (unless that was
another user's), and a batch execution's executed notebook is written under the server root
for JupyterLab to open, for its owner only."""

from __future__ import annotations

import json

import nbformat
import pytest

from jupyter_flow.artifacts import artifact_store
from tests.server.authorizers import NoAdminAuthorizer
from tests.server.conftest import ME, make_run

OTHER = "someone-else"


@pytest.fixture
def runs(store, owner, flow_config):
    make_run(store, owner, "FIRST", user=ME, status="SUCCESS", tasks=[
        {"id": "P1", "node": "0", "name": "load", "status": "SUCCESS", "stdout": "loaded 10 rows\n",
         "stderr": "a warning\n"}])
    make_run(store, owner, "AGAIN", user=ME, status="SUCCESS", tasks=[
        {"id": "C1", "node": "0", "name": "load", "status": "CACHED", "provenance": {"cached_from": "P1"}},
        {"id": "C2", "node": "1", "name": "theirs", "status": "CACHED", "provenance": {"cached_from": "T9"}}])
    make_run(store, owner, "THEIRS", user=OTHER, status="SUCCESS", tasks=[
        {"id": "T9", "node": "0", "name": "theirs", "status": "SUCCESS", "stdout": "their stdout\n"}])
    artifacts = artifact_store(flow_config["artifacts_url"])
    executed = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "print(1)", outputs=[nbformat.v4.new_output("stream", name="stdout", text="1\n")])])
    digest = artifacts.put(nbformat.writes(executed).encode()).digest
    for run_id, user in (("EXEC", ME), ("THEIR_EXEC", OTHER)):
        make_run(store, owner, run_id, user=user, kind="notebook", status="SUCCESS",
                 notebook="/srv/sweep.ipynb", outputs={"output_notebook": digest})
    return digest


@pytest.mark.parametrize("authorizer_class", [None, NoAdminAuthorizer])
async def test_a_cached_task_shows_the_logs_of_its_producer_but_not_another_users(api, runs, authorizer_class):
    status, logs = await api("tasks/C1/logs")
    assert status == 200, logs
    assert logs["stdout"] == "loaded 10 rows\n" and logs["stderr"] == "a warning\n"
    assert logs["from_task"] == "P1" and logs["from_run"] == "FIRST"
    status, logs = await api("tasks/C2/logs")
    assert status == 200 and logs["stdout"] == "" and logs["from_task"] is None, logs
    assert "their stdout" not in json.dumps(logs)
    status, logs = await api("tasks/P1/logs")
    assert logs["from_task"] is None and logs["stdout"] == "loaded 10 rows\n"


@pytest.mark.parametrize("authorizer_class", [None, NoAdminAuthorizer])
async def test_an_executed_notebook_is_written_under_the_root_for_its_owner(api, runs, jp_root_dir,
                                                                             authorizer_class):
    status, body = await api("runs/EXEC/notebook", method="POST", body="{}")
    assert status == 200, body
    assert body == {"run_id": "EXEC", "path": "flow-executed/sweep.EXEC.ipynb", "artifact": runs}
    written = nbformat.read(jp_root_dir / body["path"], as_version=4)
    assert written.cells[0].outputs[0]["text"] == "1\n"
    # Once: a second call answers the same file, keeping what the user changed in it.
    (jp_root_dir / body["path"]).write_text((jp_root_dir / body["path"]).read_text().replace('"1\\n"', '"edited"'))
    assert (await api("runs/EXEC/notebook", method="POST"))[1]["path"] == body["path"]
    assert "edited" in (jp_root_dir / body["path"]).read_text()
    status, body = await api("runs/THEIR_EXEC/notebook", method="POST")
    assert status == 403 and OTHER in body["message"], body
    status, body = await api("runs/FIRST/notebook", method="POST")
    assert status == 404 and "no executed notebook" in body["message"], body
    status, body = await api("runs/EXEC/notebook", method="POST", auth=False)
    assert status in (401, 403), body
    assert not (jp_root_dir / "flow-executed" / "sweep.THEIR_EXEC.ipynb").exists()
