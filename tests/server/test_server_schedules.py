"""Schedules and declared parameters over REST, on a real Jupyter server and a real store:
CRUD, validation (4xx naming the field), authorization, and a schedule firing a batch."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from jupyter_flow.artifacts import artifact_store
from tests.notebook_files import write_notebook
from tests.server.conftest import check, until

#: A notebook declaring typed parameters (bounds, choices, a secret) and assigning one
#: plain parameter; quick to execute (no cluster work).
PARAM_CELLS = [
    ("import jupyter_flow as jf", None),
    ("epochs = jf.param('epochs', 3, min=1, max=10, help='passes over the data')\n"
     "mode = jf.param('mode', 'fast', choices=['fast', 'slow'])\n"
     "lr = 0.1\n"
     "api_token = 'dev-token-123'", ["parameters"]),
    ("assert api_token != '***'\nresult = epochs * 2", None),
]
SECRET = "s3cr3t-schedule-token"


@pytest.fixture
def served_notebook(jp_root_dir):
    (jp_root_dir / "work").mkdir(exist_ok=True)
    write_notebook(jp_root_dir / "work" / "train.ipynb", PARAM_CELLS)
    return "work/train.ipynb"


async def _declared(api, path: str):
    # ``path`` is also the name of api()'s first argument: the query goes into the URL.
    return await api(f"notebooks/params?{urllib.parse.urlencode({'path': path})}")


def _body(**fields) -> str:
    return json.dumps({"notebook": "work/train.ipynb", "cron": "0 3 * * *", **fields})


async def test_schedule_crud_over_rest(api, store, served_notebook, jp_root_dir):
    status, created = await api("schedules", method="POST", body=_body(
        name="nightly", params={"epochs": 5}, grid={"mode": ["fast", "slow"]},
        timezone="Europe/Paris", misfire="catchup", parallel=2))
    assert status == 201, created
    check(created, "Schedule")
    assert created["name"] == "nightly" and created["notebook"] == str(jp_root_dir / served_notebook)
    assert created["params"] == {"epochs": 5} and created["grid"] == {"mode": ["fast", "slow"]}
    assert (created["cron"], created["timezone"], created["misfire"], created["parallel"]) == (
        "0 3 * * *", "Europe/Paris", "catchup", 2)
    assert created["paused"] is False and created["last_run"] is None and created["last_misfire"] is None
    # 03:00 in Paris is 01:00 or 02:00 UTC, depending on the season.
    assert created["next_fire_at"][11:16] in ("01:00", "02:00"), created["next_fire_at"]

    status, listing = await api("schedules")
    assert status == 200
    check(listing, "ScheduleList")
    assert [s["id"] for s in listing["schedules"]] == [created["id"]]

    for ident in (created["id"], "nightly"):
        status, one = await api(f"schedules/{ident}")
        assert status == 200 and one["id"] == created["id"]
    status, spaced = await api("schedules", method="POST", body=_body(name="weekly report"))
    assert status == 201, spaced
    assert (await api("schedules/weekly%20report"))[1]["id"] == spaced["id"]
    assert (await api("schedules/weekly%20report", method="DELETE"))[0] == 204

    status, paused = await api(f"schedules/{created['id']}", method="PATCH", body='{"paused": true}')
    assert status == 200, paused
    check(paused, "Schedule")
    assert paused["paused"] is True and store.get_schedule(created["id"])["paused"] is True
    status, resumed = await api(f"schedules/{created['id']}", method="PATCH", body='{"paused": false}')
    assert status == 200 and resumed["paused"] is False and resumed["next_fire_at"]

    status, error = await api("schedules", method="POST", body=_body(name="nightly"))
    assert status == 409 and "nightly" in error["message"], error

    status, response = await api(f"schedules/{created['id']}", method="DELETE")
    assert status == 204
    assert store.get_schedule(created["id"]) is None
    assert (await api(f"schedules/{created['id']}"))[0] == 404
    assert (await api(f"schedules/{created['id']}", method="DELETE"))[0] == 404
    assert (await api(f"schedules/{created['id']}", method="PATCH", body='{"paused": true}'))[0] == 404


@pytest.mark.parametrize("fields, words", [
    ({"params": {"momentum": 0.9}}, ["momentum"]),
    # A schedule stores its values to fire later; secrets are never stored in plain text.
    ({"params": {"api_token": SECRET}}, ["api_token", "secret"]),
    ({"params": {"epochs": 11}}, ["epochs", "maximum"]),
    ({"grid": {"epochs": [2, 0]}}, ["epochs", "minimum"]),
    ({"params": {"mode": "turbo"}}, ["mode", "one of"]),
    ({"params": {"epochs": "many"}}, ["epochs", "int"]),
    ({"cron": "every day at 3"}, ["cron"]),
    ({"cron": "61 * * * *"}, ["cron"]),
    ({"cron": ""}, ["cron"]),
    ({"timezone": "Mars/Olympus"}, ["timezone", "Mars/Olympus"]),
    ({"misfire": "sometimes"}, ["misfire", "skip", "once", "catchup"]),
    ({"notebook": "../outside.ipynb"}, ["notebook", "inside the server's root"]),
    ({"notebook": "/etc/outside.ipynb"}, ["notebook", "inside the server's root"]),
    ({"notebook": "work/missing.ipynb"}, ["not found"]),
    ({"notebook": "work/train.py"}, ["notebook", ".ipynb"]),
    ({"name": "n" * 201}, ["name", "200"]),
    ({"parallel": 0}, ["parallel"]),
    ({"every": "day"}, ["unknown field", "every"]),
])
async def test_bad_schedules_are_422_naming_the_field_and_store_nothing(api, store, served_notebook, fields, words):
    status, error = await api("schedules", method="POST", body=_body(**fields))
    assert status == 422, error
    check(error, "Error")
    for word in words:
        assert word in error["message"], (word, error["message"])
    assert SECRET not in error["message"]
    assert store.list_schedules() == []


@pytest.mark.parametrize("body", ['{"paused": "yes"}', '{"paused": true, "cron": "* * * * *"}', "[]", "{}", "nope"])
async def test_bad_schedule_patches_are_422_and_change_nothing(api, store, served_notebook, body):
    status, created = await api("schedules", method="POST", body=_body(name="nightly"))
    assert status == 201, created
    status, error = await api(f"schedules/{created['id']}", method="PATCH", body=body)
    assert status == 422, error
    assert store.get_schedule(created["id"])["paused"] is False


async def test_schedules_need_credentials(api, store, served_notebook):
    status, _ = await api("schedules", method="POST", body=_body(name="sneaky"), auth=False)
    assert status in (401, 403)
    assert store.list_schedules() == []


@pytest.mark.parametrize("authorizer_class", ["tests.server.authorizers.ReadOnlyAuthorizer"])
async def test_a_read_only_user_sees_schedules_but_cannot_change_them(api, store, served_notebook, authorizer_class):
    schedule = store.create_schedule({"name": "nightly", "notebook": "/srv/train.ipynb", "cron": "0 3 * * *"})
    assert (await api("schedules"))[0] == 200
    assert (await _declared(api, served_notebook))[0] == 200
    assert (await api("schedules", method="POST", body=_body(name="other")))[0] == 403
    assert (await api(f"schedules/{schedule['id']}", method="PATCH", body='{"paused": true}'))[0] == 403
    assert (await api(f"schedules/{schedule['id']}", method="DELETE"))[0] == 403
    assert [s["name"] for s in store.list_schedules()] == ["nightly"]
    assert store.get_schedule("nightly")["paused"] is False


# -- declared parameters ---------------------------------------------------------------


async def test_notebook_params_lists_the_declarations(api, served_notebook, jp_root_dir):
    status, body = await _declared(api, served_notebook)
    assert status == 200, body
    check(body, "NotebookParams")
    assert body["notebook"] == str(jp_root_dir / served_notebook)
    by_name = {p["name"]: p for p in body["params"]}
    assert by_name["epochs"] == {"name": "epochs", "type": "int", "default": 3, "min": 1, "max": 10,
                                 "choices": None, "help": "passes over the data"}
    assert by_name["mode"]["type"] == "str" and by_name["mode"]["choices"] == ["fast", "slow"]
    assert by_name["lr"]["type"] == "float" and by_name["lr"]["default"] == 0.1
    assert by_name["api_token"]["default"] == "***"  # a notebook's development secret stays in it


@pytest.mark.parametrize("path, status, words", [
    ("work/missing.ipynb", 404, ["not found"]),
    ("../outside.ipynb", 422, ["inside the server's root"]),
    ("work/train.py", 422, [".ipynb"]),
    ("", 400, ["path"]),
])
async def test_notebook_params_refuses_what_is_not_a_notebook_under_the_root(api, served_notebook, path, status, words):
    got, error = await _declared(api, path)
    assert got == status, error
    for word in words:
        assert word in error["message"]


# -- firing ----------------------------------------------------------------------------


@pytest.fixture
def flow_config(flow_config, flow_home):
    # Not the default artifact store, so a firing that ignored FlowApp.artifacts_url shows.
    return {**flow_config, "scheduler_interval": 0.5, "artifacts_url": str(flow_home / "served-artifacts")}


async def test_a_schedule_fires_a_batch_run_on_a_real_server(api, store, served_notebook, dask_cluster, flow_config):
    status, created = await api("schedules", method="POST", body=_body(
        name="every-2s", cron="*/2 * * * * *", params={"epochs": 4},
        cluster=dask_cluster.scheduler_address))
    assert status == 201, created

    async def fired():
        _, page = await api("runs", kind="batch")
        return [r for r in page["runs"] if r.get("schedule_id") == created["id"]]

    first = (await until(fired, 30, "the schedule fired no batch run"))[-1]
    # One firing is enough (each runs a kernel); paused, it fires no more.
    assert (await api(f"schedules/{created['id']}", method="PATCH", body='{"paused": true}'))[0] == 200

    async def ended():
        _, run = await api(f"runs/{first['id']}")
        return run if run["status"] != "RUNNING" else None

    run = await until(ended, 120, "the fired batch run did not end")
    assert run["status"] == "SUCCESS", run.get("error")
    check(run, "Run")
    assert run["kind"] == "batch" and run["schedule_id"] == created["id"]
    scheduled_for = run["scheduled_for"]
    assert scheduled_for and int(scheduled_for[17:19]) % 2 == 0, scheduled_for  # an even second
    assert run["params"]["params"] == {"epochs": 4}
    (execution,) = store.list_runs(parent_id=run["id"])
    executed = execution["outputs"]["output_notebook"]  # the executed notebook, kept as an artifact
    assert artifact_store(flow_config["artifacts_url"]).exists(executed)

    _, page = await api("runs", kind="batch")
    listed = next(r for r in page["runs"] if r["id"] == run["id"])
    assert listed["schedule_id"] == created["id"] and listed["scheduled_for"] == scheduled_for

    async def all_ended():
        runs = await fired()
        return runs if all(r["status"] != "RUNNING" for r in runs) else None

    # A firing may have started before the pause landed: the newest one is the last run.
    newest = (await until(all_ended, 120, "a fired batch run was still running"))[0]
    _, schedule = await api(f"schedules/{created['id']}")
    check(schedule, "Schedule")
    assert schedule["paused"] is True and schedule["last_fire_at"]
    assert schedule["last_run_id"] == newest["id"]
    assert schedule["last_run"] == {"id": newest["id"], "status": "SUCCESS", "ended_at": newest["ended_at"]}


@pytest.mark.parametrize("method, path, body, words", [
    # The request models check types at the edge: the message names the field and what it expects.
    ("PATCH", "schedules/nightly", '{"paused": "yes"}', ["'paused'", "boolean", '"yes"']),
    ("POST", "schedules", _body(grid={"epochs": 2}), ["'grid.epochs'", "array"]),
    ("POST", "schedules", _body(parallel="2"), ["'parallel'", "integer"]),
    ("POST", "schedules", json.dumps({"notebook": "work/train.ipynb"}), ["'cron'", "required"]),
    ("POST", "batches", json.dumps({"notebook": "work/train.ipynb", "params": [1]}), ["'params'", "object"]),
])
async def test_bodies_of_the_wrong_type_are_422_naming_the_field_and_the_type(api, store, served_notebook,
                                                                               method, path, body, words):
    assert (await api("schedules", method="POST", body=_body(name="nightly")))[0] == 201
    status, error = await api(path, method=method, body=body)
    assert status == 422, error
    check(error, "Error")
    for word in words:
        assert word in error["message"], (word, error["message"])
    assert store.get_schedule("nightly")["paused"] is False and len(store.list_schedules()) == 1
