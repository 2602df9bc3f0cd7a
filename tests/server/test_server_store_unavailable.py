"""A store the server cannot open: Jupyter still starts, and every route says what is wrong.

Three real ways a store cannot be opened: a SQLite file full of garbage, a SQLite store
whose schema a newer jupyter_flow wrote, and a PostgreSQL URL nothing answers on.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time

import pytest

from jupyter_flow.server.handlers import routes
from jupyter_flow.store import Store
from tests.server.conftest import check, free_port

FUTURE_REVISION = "9999_from_a_newer_jupyter_flow"
PASSWORD = "s3cret-pw"


def _corrupt_sqlite(flow_home) -> dict:
    path = flow_home / "flow.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(16384))
    return {"db_url": f"sqlite:///{path}", "label": str(path), "advice": f"mv {path} {path}.corrupt"}


def _newer_sqlite(flow_home) -> dict:
    path = flow_home / "flow.db"
    Store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (FUTURE_REVISION,))
    return {"db_url": f"sqlite:///{path}", "label": str(path), "advice": "upgrade jupyter_flow"}


def _unreachable_postgresql(flow_home) -> dict:
    port = free_port()
    return {
        "db_url": f"postgresql+psycopg://flow:{PASSWORD}@127.0.0.1:{port}/flow",
        "label": f"postgresql+psycopg://flow:***@127.0.0.1:{port}/flow",
        "advice": "check that its server is running",
    }


BROKEN = {"corrupt": _corrupt_sqlite, "newer-schema": _newer_sqlite, "unreachable": _unreachable_postgresql}


@pytest.fixture(params=sorted(BROKEN))
def broken_store(request, flow_home) -> dict:
    return BROKEN[request.param](flow_home)


@pytest.fixture
def flow_config(flow_config, broken_store):
    return {**flow_config, "db_url": broken_store["db_url"], "store_retry_interval": 0.2}


#: Well-formed bodies, so that only the store can be what is wrong.
BODIES = {
    ("POST", "batches"): {"notebook": "sweep.ipynb"},
    ("POST", "schedules"): {"notebook": "sweep.ipynb", "cron": "0 3 * * *"},
    ("PATCH", "schedules/" + "a" * 64): {"paused": True},
}


def _requests():
    """(method, path, body) for every route and method, with ids and queries that would
    be fine in a good store."""
    for pattern, handler in routes():
        path = pattern.removeprefix("/jupyter-flow/api/").replace("([^/]+)", "a" * 64)
        for method in ("GET", "POST", "PATCH", "DELETE"):
            if method.lower() not in vars(handler):
                continue
            body = BODIES.get((method, path), {} if method in ("POST", "PATCH") else None)
            query = "?path=sweep.ipynb" if path == "notebooks/params" else ""
            yield method, path + query, None if body is None else json.dumps(body)


async def test_every_route_says_the_store_cannot_be_opened_and_jupyter_still_runs(
    api, broken_store, jp_fetch
):
    for method, path, body in _requests():
        status, error = await api(path, method=method, body=body)
        if path == "openapi.json":  # the API's description needs no store
            assert status == 200
            continue
        assert status == 503, (path, status, error)
        check(error, "StoreUnavailable")
        assert error["store"] == broken_store["label"]
        assert broken_store["label"] in error["message"], error["message"]
        assert broken_store["advice"] in error["message"], error["message"]
        assert PASSWORD not in json.dumps(error)
    # The rest of Jupyter is unaffected.
    response = await jp_fetch("api", "status")
    assert response.code == 200


@pytest.mark.parametrize("broken_store", ["corrupt"], indirect=True)
async def test_a_store_moved_aside_is_replaced_without_a_restart(api, broken_store, flow_home):
    path = flow_home / "flow.db"
    status, error = await api("runs")
    assert status == 503 and "corrupt" in error["message"]
    garbage = path.read_bytes()
    path.rename(flow_home / "flow.db.corrupt")  # what the message tells the user to do
    deadline = time.monotonic() + 30
    while (await api("runs"))[0] != 200:
        assert time.monotonic() < deadline, "the server did not open the new store"
        await asyncio.sleep(0.1)
    status, health = await api("health")
    assert status == 200 and health["status"] == "ok"
    assert (flow_home / "flow.db.corrupt").read_bytes() == garbage  # nothing written into it
