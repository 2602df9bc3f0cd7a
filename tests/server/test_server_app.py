"""The extension itself: installed and enabled, its configuration, openapi.json, reconciler."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import time

import pytest
from openapi_spec_validator import validate

from jupyter_flow.server.handlers import routes
from tests.server.conftest import OPENAPI, check, start_background_run


def test_extension_is_enabled_and_validates():
    out = subprocess.run(["jupyter", "server", "extension", "list"], capture_output=True,
                         text=True, timeout=120)
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
    assert re.search(r"jupyter_flow\s+enabled", text), text
    assert re.search(r"jupyter_flow \S+ OK", text), text


def _flow_app(jp_serverapp):
    return jp_serverapp.extension_manager.extension_points["jupyter_flow"].app


async def test_store_comes_from_the_flowapp_traitlet(jp_serverapp, flow_config):
    assert _flow_app(jp_serverapp).service.store.url == flow_config["db_url"]


@pytest.fixture
def env_store(flow_home, monkeypatch):
    url = f"sqlite:///{flow_home / 'from-env.db'}"
    monkeypatch.setenv("JUPYTER_FLOW_DB", url)
    return url


async def test_environment_wins_over_the_traitlet(env_store, jp_serverapp, api):
    assert _flow_app(jp_serverapp).service.store.url == env_store
    assert (await api("health"))[0] == 200


def _methods(handler) -> set[str]:
    """HTTP methods a handler class itself defines (not tornado's 405 stubs)."""
    return {m for m in ("GET", "POST", "PUT", "PATCH", "DELETE")
            if any(m.lower() in vars(cls) for cls in handler.__mro__ if cls.__module__.startswith("jupyter_flow"))}


async def test_openapi_document_is_valid_and_lists_exactly_the_routes(api, jp_base_url):
    status, document = await api("openapi.json")
    assert status == 200
    validate(document)
    assert document["servers"] == [{"url": f"{jp_base_url}jupyter-flow/api"}]
    # Every route with every method it answers (schedules: GET/POST, PATCH, DELETE …).
    documented = {(re.sub(r"\{[^}]+\}", "{}", path), method.upper())
                  for path, operations in document["paths"].items() for method in operations}
    served = {(pattern.removeprefix("/jupyter-flow/api").replace("([^/]+)", "{}"), method)
              for pattern, handler in routes() for method in _methods(handler)}
    assert documented == served
    assert {("/schedules", "POST"), ("/schedules/{}", "PATCH"), ("/schedules/{}", "DELETE"),
            ("/notebooks/params", "GET")} <= served
    assert document["components"] == OPENAPI["components"]


@pytest.fixture
def flow_config(flow_config):
    # The engine heartbeats every 5 s; 6 s without one means its process is gone.
    return {**flow_config, "heartbeat_timeout": 6.0}


async def test_reconciler_marks_runs_of_a_killed_process_lost(api, subprocess_env, tmp_path):
    proc, run_id = start_background_run(subprocess_env, tmp_path, "will-be-killed", 120)
    try:
        deadline = time.monotonic() + 60
        while True:
            _, tasks = await api(f"runs/{run_id}/tasks")
            if {t["name"]: t["status"] for t in tasks["tasks"]} == {"sleepy": "RUNNING", "add": "SUCCESS"}:
                break
            assert time.monotonic() < deadline, tasks
            await asyncio.sleep(0.1)
        _, run = await api(f"runs/{run_id}")
        assert run["status"] == "RUNNING"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    killed = time.monotonic()
    while True:
        _, run = await api(f"runs/{run_id}")
        if run["status"] != "RUNNING":
            break
        assert time.monotonic() - killed < 30, "the reconciler did not mark the run LOST"
        await asyncio.sleep(0.2)
    check(run, "Run")
    assert run["status"] == "LOST" and "heartbeat" in run["error"]
    assert run["task_counts"] == {"LOST": 1, "SUCCESS": 1}  # finished work is kept
