"""Every GET route's real answer, on a store holding a bit of everything, matches the model
openapi.json names for its 200 (``server.models``, which forbid undescribed fields): the
test that catches drift between the served JSON and the schema."""

from __future__ import annotations

import json

import pytest

from jupyter_flow.artifacts import artifact_store
from jupyter_flow.artifacts.keyring import load_keyring
from jupyter_flow.server import models, schema
from tests.server.conftest import make_run


def _model_of(path: str, method: str = "get") -> list[type]:
    """The models a route's success answer may be (anyOf: several)."""
    responses = schema.PATHS[path][method]["responses"]
    ok = next(r for code, r in responses.items() if code.startswith("2"))
    body = ok["content"]["application/json"]["schema"]
    refs = [part["$ref"] for part in body.get("anyOf", [body])]
    return [getattr(models, ref.rsplit("/", 1)[-1]) for ref in refs]


def _matches(path: str, body) -> None:
    errors = []
    for model in _model_of(path):
        try:
            model.model_validate_json(json.dumps(body), strict=True)
            return
        except ValueError as err:
            errors.append(str(err))
    pytest.fail(f"GET {path} answers what its models do not describe:\n" + "\n".join(errors))


@pytest.fixture
def everything(store, owner, flow_config):
    artifacts = artifact_store(flow_config["artifacts_url"], keyring=load_keyring())
    raw = artifacts.put([1, 2, 3]).digest
    make_run(store, owner, "R1", status="SUCCESS", name="demo", params={"lr": 0.1}, metrics={"accuracy": 0.9},
             graph={"targets": [1]}, tasks=[
                 {"id": "T0", "node": "0", "name": "load", "status": "SUCCESS", "outputs": {"out": raw},
                  "resources": {"GPU": 1}, "stdout": "loaded\n"},
                 {"id": "T1", "node": "1", "name": "train", "status": "FAILED", "upstream": ["0"],
                  "metrics": {"loss": 0.25}, "error": "ValueError: boom"},
             ])
    store.create_schedule({"name": "nightly", "notebook": "/nb/train.ipynb", "cron": "0 3 * * *",
                           "params": {"lr": 0.1}, "grid": {"epochs": [1, 2]}, "created_by": "someone"})
    return raw


async def test_every_get_route_answers_what_its_model_describes(api, everything):
    schedule = (await api("schedules"))[1]["schedules"][0]["id"]
    urls = {
        "/health": "health",
        "/runs": "runs",
        "/runs/{run_id}": "runs/R1",
        "/runs/{run_id}/tasks": "runs/R1/tasks",
        "/tasks/{task_id}": "tasks/T1",
        "/tasks/{task_id}/logs": "tasks/T0/logs",
        "/graphs": "graphs",
        "/graphs/{run_id}": "graphs/R1",
        "/artifacts/{hash}": f"artifacts/{everything}",
        "/lineage/{id}": "lineage/T1",
        "/clusters": "clusters",
        "/schedules": "schedules",
        "/schedules/{schedule_id}": f"schedules/{schedule}",
    }
    for path, url in urls.items():
        status, body = await api(url)
        assert status == 200, (url, body)
        _matches(path, body)
    status, changes = await api("runs", changed_since=0)
    assert status == 200 and changes["runs"]
    _matches("/runs", changes)
    task = (await api("tasks/T1"))[1]
    assert task["metrics"] == {"loss": 0.25}  # served before any schema described it


def test_a_served_field_the_model_lacks_fails():
    served = {"message": "no run 'X' in the store", "reason": "Not Found", "hint": "new"}
    with pytest.raises(ValueError, match="hint"):
        models.Error.model_validate_json(json.dumps(served), strict=True)
