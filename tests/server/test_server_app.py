"""The extension itself: installed and enabled, its configuration, openapi.json, reconciler."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time

import pytest
from openapi_spec_validator import validate
from traitlets import TraitError

from jupyter_flow.server.app import FlowApp
from jupyter_flow.server.handlers import routes
from tests.server.conftest import OPENAPI, check, route_methods, start_background_run, until


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


async def test_openapi_document_is_valid_and_lists_exactly_the_routes(api, jp_base_url):
    status, document = await api("openapi.json")
    assert status == 200
    validate(document)
    assert document["servers"] == [{"url": f"{jp_base_url}jupyter-flow/api"}]
    # Every route with every method it answers (schedules: GET/POST, PATCH, DELETE …).
    documented = {(re.sub(r"\{[^}]+\}", "{}", path), method.upper())
                  for path, operations in document["paths"].items() for method in operations}
    served = {(pattern.removeprefix("/jupyter-flow/api").replace("([^/]+)", "{}"), method)
              for pattern, handler in routes() for method in route_methods(handler)}
    assert documented == served
    assert {("/schedules", "POST"), ("/schedules/{}", "PATCH"), ("/schedules/{}", "DELETE"),
            ("/notebooks/params", "GET")} <= served
    assert document["components"] == OPENAPI["components"]


@pytest.fixture
def app_settings() -> dict:
    """More FlowApp settings of the test server (parametrize to change them)."""
    return {}


@pytest.fixture
def flow_config(flow_config, app_settings):
    # The engine heartbeats every 5 s; 6 s without one means its process is gone.
    return {**flow_config, "heartbeat_timeout": 6.0, **app_settings}


async def test_the_server_takes_the_scheduler_lease(jp_serverapp, store):
    holder = (await until(lambda: store.lease("scheduler"), what="a lease"))["holder"]
    assert holder == _flow_app(jp_serverapp).schedule_firer.holder and f":{os.getpid()}" in holder


@pytest.mark.parametrize("app_settings", [{"scheduler": False}, {"scheduler_interval": 20.0, "lease_ttl": 15.0}])
async def test_a_server_told_not_to_fire_has_no_scheduler(jp_serverapp, app_settings):
    # scheduler_interval >= lease_ttl would lose the lease between ticks: refused, and said.
    assert _flow_app(jp_serverapp).schedule_firer is None


@pytest.mark.parametrize("setting, value, words", [
    ("notify_kinds", ["python"], ["notify_kinds", "python", "api"]),
    ("notify_statuses", ["RUNNING"], ["notify_statuses", "RUNNING", "FAILED"]),
    ("scheduler_interval", 0.0, ["scheduler_interval", "positive"]),
    ("schedule_grace", -1.0, ["schedule_grace"]),
])
def test_bad_flowapp_settings_are_refused_naming_the_setting(setting, value, words):
    with pytest.raises(TraitError) as refused:
        FlowApp(**{setting: value})
    for word in words:
        assert word in str(refused.value)


async def test_reconciler_marks_runs_of_a_killed_process_lost(api, subprocess_env, tmp_path):
    proc, run_id = start_background_run(subprocess_env, tmp_path, "will-be-killed", 120)
    try:
        deadline = time.monotonic() + 60
        while True:
            # 404 until the child's first write lands (its engine writes in the background).
            status, tasks = await api(f"runs/{run_id}/tasks")
            if status == 200 and {t["name"]: t["status"] for t in tasks["tasks"]} == {"sleepy": "RUNNING",
                                                                                      "add": "SUCCESS"}:
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
