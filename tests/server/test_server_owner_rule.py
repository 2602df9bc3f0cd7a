"""The owner rule over REST: a server reads and changes only the runs (tasks, logs, graphs,
artifacts, lineage) and schedules of the OS user it runs as, unless its authorizer grants
``admin``. Another user's runs sit in the same real SQLite store, as in a team store."""

from __future__ import annotations

import json

import pytest

from jupyter_flow.artifacts import artifact_store
from tests.server.authorizers import AdminAuthorizer, NoAdminAuthorizer
from tests.server.conftest import ME, make_run

OTHER = "someone-else"


@pytest.fixture
def two_users(store, owner, flow_config):
    """THEIRS (run of OTHER: a task with logs, its own output and one output MINE restored
    from the cache) and MINE (run of this server's user)."""
    artifacts = artifact_store(flow_config["artifacts_url"])
    private = artifacts.put(b"their private result").digest
    shared = artifacts.put(b"a result both runs hold").digest
    make_run(store, owner, "THEIRS", user=OTHER, name="their-run", status="SUCCESS", tasks=[
        {"id": "T9", "node": "0", "name": "secret_op", "status": "SUCCESS", "outputs": {"out": private},
         "stdout": "their stdout\n"},
        {"id": "T8", "node": "1", "name": "shared_op", "status": "SUCCESS", "outputs": {"out": shared}},
    ])
    make_run(store, owner, "MINE", user=ME, name="my-run", status="SUCCESS", tasks=[
        {"id": "M1", "node": "0", "name": "shared_op", "status": "CACHED", "outputs": {"out": shared},
         "stdout": "my stdout\n"},
    ])
    return {"private": private, "shared": shared}


@pytest.mark.parametrize("authorizer_class", [None, NoAdminAuthorizer])
async def test_another_users_runs_and_what_they_hold_are_not_readable(api, two_users, authorizer_class):
    # Jupyter's default allow-all authorizer is no admin grant either.
    for path in ("runs", "graphs"):
        status, body = await api(path)
        assert status == 200 and [r["id"] for r in body[path]] == ["MINE"], body
    status, body = await api("runs", changed_since=0)
    assert [r["id"] for r in body["runs"]] == ["MINE"]
    private = two_users["private"]
    for path, params in (("runs/THEIRS", {}), ("runs/THEIRS/tasks", {}), ("graphs/THEIRS", {}),
                         ("tasks/T9", {}), ("tasks/T9/logs", {}), ("lineage/T9", {}),
                         (f"lineage/{private}", {}), (f"artifacts/{private}", {}),
                         (f"artifacts/{private}", {"download": "1"})):
        status, body = await api(path, **params)
        assert status == 403, (path, params, status, body)
        assert OTHER in body["message"] and "admin" in body["message"], body
        assert "their stdout" not in json.dumps(body) and "private" not in json.dumps(body)
    # What the own run holds stays readable, an output restored from their run included.
    for path in ("runs/MINE", "runs/MINE/tasks", "graphs/MINE", "tasks/M1/logs", "lineage/M1",
                 f"artifacts/{two_users['shared']}", f"lineage/{two_users['shared']}"):
        status, body = await api(path)
        assert status == 200, (path, body)
    assert (await api(f"artifacts/{two_users['shared']}", download="1", raw=True))[1].body == b"a result both runs hold"


@pytest.mark.parametrize("authorizer_class", [AdminAuthorizer])
async def test_an_admin_reads_every_users_runs(api, two_users, authorizer_class):
    status, body = await api("runs")
    assert sorted(r["id"] for r in body["runs"]) == ["MINE", "THEIRS"]
    assert (await api("tasks/T9/logs"))[1]["stdout"] == "their stdout\n"
    assert (await api(f"artifacts/{two_users['private']}", download="1", raw=True))[1].body == b"their private result"


def _theirs(store) -> dict:
    return store.create_schedule({"name": "their-nightly", "notebook": "/srv/train.ipynb",
                                  "cron": "0 3 * * *", "created_by": OTHER})


@pytest.mark.parametrize("authorizer_class", [None, NoAdminAuthorizer])
async def test_schedules_are_changed_only_by_their_owner(api, store, authorizer_class, jp_root_dir):
    theirs = _theirs(store)
    for method, body in (("PATCH", json.dumps({"paused": True})), ("DELETE", None)):
        status, answer = await api(f"schedules/{theirs['id']}", method=method, body=body)
        assert status == 403, answer
        assert "their-nightly" in answer["message"] and OTHER in answer["message"]
    assert store.get_schedule(theirs["id"])["paused"] is False  # neither paused nor deleted
    assert (await api(f"schedules/{theirs['id']}"))[0] == 200  # seeing it is fine

    (jp_root_dir / "nb.ipynb").write_text(json.dumps(
        {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    status, mine = await api("schedules", method="POST",
                             body=json.dumps({"notebook": "nb.ipynb", "cron": "0 4 * * *", "name": "mine"}))
    assert status == 201, mine
    assert store.get_schedule(mine["id"])["created_by"] == ME  # the OS user, as runs record it
    assert (await api(f"schedules/{mine['id']}", method="PATCH", body=json.dumps({"paused": True})))[0] == 200
    assert (await api(f"schedules/{mine['id']}", method="DELETE"))[0] == 204


@pytest.mark.parametrize("authorizer_class", [AdminAuthorizer])
async def test_an_admin_may_pause_and_delete_any_schedule(api, store, authorizer_class):
    theirs = _theirs(store)
    assert (await api(f"schedules/{theirs['id']}", method="PATCH", body=json.dumps({"paused": True})))[0] == 200
    assert store.get_schedule(theirs["id"])["paused"] is True
    assert (await api(f"schedules/{theirs['id']}", method="DELETE"))[0] == 204
    assert store.get_schedule(theirs["id"]) is None


@pytest.fixture
def hub_user(monkeypatch):
    """This server is a JupyterHub single-user server of ana (set before the server starts)."""
    monkeypatch.setenv("JUPYTERHUB_USER", "ana")
    monkeypatch.delenv("JUPYTER_FLOW_USER", raising=False)
    return "ana"


@pytest.mark.parametrize("authorizer_class", [None])
async def test_on_a_hub_runs_belong_to_the_hub_user_not_the_os_user(hub_user, api, store, owner, authorizer_class):
    """Two hub users whose servers run as the same OS user (a shared service account, as with
    container spawners): each sees and changes only their own runs (issue 21 point 1)."""
    make_run(store, owner, "ANAS", owner="ana", user=ME, name="ana-run")
    make_run(store, owner, "BOS", owner="bo", user=ME, name="bo-run")
    status, body = await api("runs")
    assert status == 200 and [r["id"] for r in body["runs"]] == ["ANAS"], body
    (mine,) = body["runs"]
    assert mine["owner"] == "ana" and mine["user"] == ME  # the OS user stays, as provenance
    assert [r["id"] for r in (await api("runs", changed_since=0))[1]["runs"]] == ["ANAS"]
    assert [r["id"] for r in (await api("runs", owner="me"))[1]["runs"]] == ["ANAS"]
    assert (await api("runs", owner="bo"))[1]["runs"] == []
    status, body = await api("runs/BOS")
    assert status == 403 and "'bo'" in body["message"], body
    status, body = await api("runs/BOS/cancel", method="POST")
    assert status == 403, body
    assert store.get_run("BOS").cancel_requested_at is None
    status, _ = await api("runs/ANAS/cancel", method="POST")
    assert status in (200, 202, 409)  # ana may cancel her own (409: it has no live process here)
