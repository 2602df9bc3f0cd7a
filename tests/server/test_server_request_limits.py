"""Hostile request bodies, names and ids get a 4xx naming the field and the limit, never a
500, and record nothing; on SQLite and on a real PostgreSQL (which refuses NUL in text)."""

from __future__ import annotations

import json

import pytest

from jupyter_flow.server import limits
from jupyter_flow.store.models import Run
from tests.batch.test_batch import write_sweep_notebook
from tests.server.conftest import OPENAPI, check, make_run
from tests.store.conftest import pg_databases, pg_server, pg_url  # noqa: F401  (fixtures)

NOTEBOOK = "work/sweep.ipynb"
DEEP = 100_000


@pytest.fixture(params=["sqlite", "postgresql"])
def flow_config(request, flow_home):
    url = (request.getfixturevalue("pg_url") if request.param == "postgresql"
           else f"sqlite:///{flow_home / 'flow.db'}")
    return {"db_url": url, "artifacts_url": str(flow_home / "artifacts"),
            "heartbeat_timeout": 30.0, "reconcile_interval": 0.2}


@pytest.fixture
def served_notebook(jp_root_dir):
    (jp_root_dir / "work").mkdir(exist_ok=True)
    write_sweep_notebook(jp_root_dir / "work" / "sweep.ipynb")
    return NOTEBOOK


def _nested(depth: int, leaf: str = "0") -> str:
    return "[" * depth + leaf + "]" * depth


BAD_BATCHES = [
    # (what, raw body, status, words the message must contain)
    ("deep body", _nested(DEEP), 422, ["nested too deeply", "32"]),
    ("deep param", '{"notebook": "%s", "params": {"lr": %s}}' % (NOTEBOOK, _nested(40)), 422,
     ["params.lr", "nested too deeply", "32"]),
    ("deep grid value", '{"notebook": "%s", "grid": {"lr": %s}}' % (NOTEBOOK, _nested(DEEP)), 422,
     ["nested too deeply"]),
    ("NUL in name", json.dumps({"notebook": NOTEBOOK, "name": "a\x00b"}), 422, ["'name'", "NUL"]),
    ("NUL in notebook", json.dumps({"notebook": "work/\x00sweep.ipynb"}), 422, ["'notebook'", "NUL"]),
    ("NUL in a param value", json.dumps({"notebook": NOTEBOOK, "params": {"lr": "0.1\x00"}}), 422,
     ["'params.lr'", "NUL"]),
    ("NUL in a param name", json.dumps({"notebook": NOTEBOOK, "params": {"l\x00r": 1}}), 422,
     ["key in 'params'", "NUL"]),
    ("NUL in a grid value", json.dumps({"notebook": NOTEBOOK, "grid": {"lr": [0.1, "x\x00"]}}), 422,
     ["'grid.lr[1]'", "NUL"]),
    ("NUL in cluster", json.dumps({"notebook": NOTEBOOK, "cluster": "\x00"}), 422, ["'cluster'", "NUL"]),
    ("lone surrogate", '{"notebook": "%s", "name": "\\ud800"}' % NOTEBOOK, 422, ["'name'", "surrogate"]),
    ("long name", json.dumps({"notebook": NOTEBOOK, "name": "n" * 256}), 422,
     ["'name'", "256 characters", "limit is 255"]),
    ("long cluster", json.dumps({"notebook": NOTEBOOK, "cluster": "c" * 256}), 422,
     ["'cluster'", "limit is 255"]),
    ("long notebook path", json.dumps({"notebook": "d/" * 2100 + "x.ipynb"}), 422,
     ["'notebook'", "limit is 4096"]),
    ("long param name", json.dumps({"notebook": NOTEBOOK, "params": {"p" * 256: 1}}), 422,
     ["parameter name in 'params'", "limit is 255"]),
    ("long grid name", json.dumps({"notebook": NOTEBOOK, "grid": {"g" * 300: [1]}}), 422,
     ["parameter name in 'grid'", "limit is 255"]),
    ("NaN", '{"notebook": "%s", "params": {"lr": NaN}}' % NOTEBOOK, 422, ["NaN"]),
    ("huge number", '{"notebook": "%s", "params": {"lr": 1e999}}' % NOTEBOOK, 422, ["'params.lr'", "too large"]),
    ("huge integer", '{"notebook": "%s", "params": {"lr": %s}}' % (NOTEBOOK, "9" * 5000), 422, ["not valid JSON"]),
    ("huge grid", json.dumps({"notebook": NOTEBOOK, "grid": {"lr": list(range(101)), "epochs": list(range(100))}}),
     422, ["10100", "limit is 10000"]),
    ("huge body", json.dumps({"notebook": NOTEBOOK, "params": {"lr": "x" * (2 * 1024 * 1024)}}), 413,
     ["limit is 1048576 bytes"]),
    ("not UTF-8", b'{"notebook": "\xff\xfe"}', 422, ["not valid JSON"]),
]


@pytest.mark.parametrize("what, body, status, words", BAD_BATCHES, ids=[case[0] for case in BAD_BATCHES])
async def test_bad_batch_bodies_are_4xx_naming_the_field_and_record_nothing(
    api, store, served_notebook, what, body, status, words
):
    code, error = await api("batches", method="POST", body=body)
    assert code == status, (what, code, error)
    check(error, "Error")
    for word in words:
        assert word in error["message"], (what, error["message"])
    assert len(error["message"]) < 600  # the offending value is named, not echoed back
    assert store.list_runs() == []


@pytest.mark.parametrize("body", [_nested(DEEP), '{"a\\u0000": 1}', "{}" + " " * (2 * 1024 * 1024)])
async def test_bad_cancel_bodies_are_4xx_and_cancel_nothing(api, store, owner, body):
    make_run(store, owner, "R1")
    code, error = await api("runs/R1/cancel", method="POST", body=body)
    assert code in (413, 422), (code, error)
    check(error, "Error")
    assert not store.cancel_requested(["R1"])


@pytest.mark.parametrize("path, params, status, words", [
    ("runs", {"name": "n" * 1025}, 400, ["'name'", "limit is 1024"]),
    ("runs", {"before": "b" * 5000}, 400, ["'before'", "limit is 1024"]),
    ("graphs", {"before": "g" * 1025}, 400, ["'before'", "limit is 1024"]),
    ("runs/" + "r" * 129, {}, 404, ["no run"]),
    ("tasks/T%00", {}, 404, ["no task"]),
    ("lineage/" + "x" * 2000, {}, 404, []),
])
async def test_bad_ids_and_query_strings_are_4xx(api, store, path, params, status, words):
    # (tornado turns control characters in query values into blanks, so NUL never arrives there)
    code, error = await api(path, **params)
    assert code == status, (path, code, error)
    check(error, "Error")
    for word in words:
        assert word in error["message"], error["message"]


def test_limits_fit_the_store_columns_and_openapi_states_them():
    assert limits.MAX_NAME_LENGTH <= Run.__table__.c.name.type.length
    assert limits.MAX_NAME_LENGTH <= Run.__table__.c.cluster.type.length
    batch = OPENAPI["paths"]["/batches"]["post"]
    body = batch["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    fields = OPENAPI["components"]["schemas"][body]["properties"]
    assert fields["name"]["maxLength"] == fields["cluster"]["maxLength"] == limits.MAX_NAME_LENGTH
    assert fields["params"]["propertyNames"]["maxLength"] == limits.MAX_NAME_LENGTH
    assert fields["grid"]["propertyNames"]["maxLength"] == limits.MAX_NAME_LENGTH
    assert fields["notebook"]["maxLength"] == limits.MAX_PATH_LENGTH
    assert fields["parallel"]["maximum"] == limits.MAX_BATCH_PARALLEL
    assert str(limits.MAX_BATCH_POINTS) in fields["grid"]["description"]
    assert str(limits.MAX_JSON_DEPTH) in batch["requestBody"]["description"]
    assert "1 MiB" in batch["responses"]["413"]["description"] and limits.MAX_BODY_BYTES == 1024 * 1024
    runs = {p["name"]: p["schema"] for p in OPENAPI["paths"]["/runs"]["get"]["parameters"]}
    assert runs["name"]["maxLength"] == runs["before"]["maxLength"] == limits.MAX_QUERY_LENGTH
    assert runs["limit"]["maximum"] == limits.MAX_PAGE
    artifact = {p["name"]: p["schema"] for p in OPENAPI["paths"]["/artifacts/{hash}"]["get"]["parameters"]}
    assert artifact["max_bytes"]["maximum"] == limits.PREVIEW_MAX
