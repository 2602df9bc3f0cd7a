"""A real Jupyter server (pytest-jupyter) with the jupyter_flow extension and a fresh store.

pytest-jupyter's fixtures and hooks are imported here rather than enabled as a plugin for
the whole suite, so only the server tests get its autouse event loop and environment.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
from jupyter_server.utils import url_path_join
from traitlets.config import Config

from pytest_jupyter.jupyter_server import *  # noqa: F403  (fixtures and hooks)
from jupyter_flow.core.provenance import current_user
from jupyter_flow.server import models
from jupyter_flow.store import Store

OPENAPI = json.loads(
    (Path(__file__).resolve().parents[2] / "jupyter_flow" / "server" / "openapi.json").read_text()
)
ME = current_user()


@pytest.fixture
def flow_config(flow_home) -> dict:
    """FlowApp settings of the test server: the test's store, a fast reconciler."""
    return {
        "db_url": f"sqlite:///{flow_home / 'flow.db'}",
        "artifacts_url": str(flow_home / "artifacts"),
        "heartbeat_timeout": 30.0,
        "reconcile_interval": 0.2,
    }


@pytest.fixture
def authorizer_class():
    """``ServerApp.authorizer_class`` of the test server (parametrize to swap it)."""
    return None


@pytest.fixture
def jp_server_config(flow_config, authorizer_class):
    server = {
        "jpserver_extensions": {"jupyter_flow": True, "jupyter_server_terminals": False},
        "allow_unauthenticated_access": False,
    }
    if authorizer_class is not None:
        server["authorizer_class"] = authorizer_class
    return Config({"ServerApp": server, "FlowApp": flow_config})


@pytest.fixture
def store(flow_config):
    opened = Store(flow_config["db_url"])
    yield opened
    opened.close()


@pytest.fixture
def owner(store) -> str:
    return store.register_owner(user=ME, host="lab", pid=4242)


@pytest.fixture
def api(jp_serverapp, http_server_client, jp_auth_header, jp_base_url):
    """``await api("runs", limit=5)`` -> (status, JSON body, or the response if not JSON).

    ``path`` goes into the URL as given (so tests can send encoded traversal attempts);
    list values repeat a query parameter; ``auth=False`` sends no credentials; ``raw=True``
    returns the response even for JSON.
    """

    async def call(path, method="GET", body=None, headers=None, auth=True, raw=False, **params):
        url = url_path_join(jp_base_url, "jupyter-flow/api", path)
        if params:
            url += "?" + urllib.parse.urlencode(params, doseq=True)
        all_headers = {**(jp_auth_header if auth else {}), **(headers or {})}
        if method == "POST" and body is None:
            body = ""
        response = await http_server_client.fetch(
            url, method=method, body=body, headers=all_headers, raise_error=False,
            follow_redirects=False,
        )
        text = response.body.decode(errors="replace") if response.body else ""
        if not raw and "json" in response.headers.get("Content-Type", "") and text:
            return response.code, json.loads(text)
        return response.code, response

    return call


async def until(predicate, timeout: float = 30.0, what: str = "condition"):
    """Await ``predicate()`` (a function or a coroutine function) until it returns something
    truthy, which is returned; the in-process server keeps running meanwhile (a blocking
    wait would stop its event loop)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not met within {timeout} s"
        await asyncio.sleep(0.1)


def route_methods(handler) -> list[str]:
    """HTTP methods a jupyter_flow handler answers (not tornado's 405 stubs), e.g. GET, POST."""
    return [m for m in ("GET", "POST", "PUT", "PATCH", "DELETE")
            if any(m.lower() in vars(cls) for cls in handler.__mro__ if cls.__module__.startswith("jupyter_flow"))]


def check(body, schema_name: str):
    """Fail unless ``body`` matches ``components/schemas/<schema_name>`` of openapi.json and
    its pydantic model (``server.models``; both forbid fields they do not describe, so a
    served field missing from the models fails here)."""
    schema = {"components": OPENAPI["components"], "$ref": f"#/components/schemas/{schema_name}"}
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(body)
    getattr(models, schema_name).model_validate_json(json.dumps(body), strict=True)
    return body


def make_run(store, owner_id, run_id, *, status="RUNNING", tasks=(), **fields):
    """A run written as its owning process would write it."""
    store.create_run({"id": run_id, "kind": "api", "status": status, "owner_id": owner_id, **fields},
                     list(tasks))
    return run_id


BACKGROUND_RUN = """
import os, sys
sys.path.insert(0, os.environ["FLOW_TEST_ROOT"])
import jupyter_flow as jf
from tests.engine import ops

jf.cluster(os.environ["FLOW_TEST_SCHEDULER"])
run = jf.run([ops.sleepy({seconds}), ops.add(1, 1)], name={name!r}, wait=False)
print(run.id, flush=True)
run.wait({wait})
print(run.status, flush=True)
"""


def start_background_run(env: dict, workdir, name: str, seconds: int):
    """A separate Python process owning a real run (one sleeping op, one quick op) on the
    session cluster; returns the process (stdout: run id, then the final status) and the run id."""
    import subprocess
    import sys

    env["FLOW_TEST_ROOT"] = str(Path(__file__).resolve().parents[2])
    script = workdir / f"{name}.py"
    script.write_text(BACKGROUND_RUN.format(seconds=seconds, name=name, wait=2 * seconds + 60))
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True)
    run_id = proc.stdout.readline().strip()
    assert run_id, "the child process did not start its run"
    return proc, run_id


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    """``python -m jupyter_server`` with the jupyter_flow extension, in its own process (so
    a test can send it signals); its output goes to ``log``."""

    proc: subprocess.Popen
    port: int
    token: str
    log: Path

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/jupyter-flow/api/"

    def api(self, path: str, method: str = "GET", body: bytes | None = None, timeout: float = 30):
        """(status, JSON body) of one request; (None, None) while nothing answers."""
        request = urllib.request.Request(
            self.api_url + path, method=method, data=body if method != "GET" else None,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            text = err.read()
            try:
                return err.code, json.loads(text)
            except ValueError:
                return err.code, text.decode(errors="replace")
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None, None

    def wait_for_api(self, timeout: float = 90) -> tuple[int, object]:
        """Poll ``health`` until the extension answers with JSON (200, or 503 for a store it
        cannot open); the server has no readiness event to wait on."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"jupyter_server exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            status, body = self.api("health")
            if status is not None and isinstance(body, dict):
                return status, body
            if time.monotonic() > deadline:
                raise AssertionError(f"jupyter_server did not answer within {timeout} s:\n{self.log_text()[-3000:]}")
            time.sleep(0.2)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


#: Server options that load jupyter_flow alone (JupyterLab, LSP … take seconds to load).
FLOW_ONLY = tuple(f"--ServerApp.jpserver_extensions={name}=False"
                  for name in ("jupyterlab", "jupyter_lsp", "notebook_shim", "jupyter_server_terminals"))


def start_server_process(workdir: Path, db_url: str, artifacts_url: str, *options: str) -> ServerProcess:
    """Start a Jupyter server process serving ``workdir`` on a free port with a token
    (pass ``*FLOW_ONLY`` among ``options`` for a quicker start)."""
    port, token = free_port(), secrets.token_hex(16)
    log = workdir / "server.log"
    with open(log, "w") as out:  # a pipe nobody reads would block the server
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", f"--port={port}",
             "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
             f"--ServerApp.root_dir={workdir}", "--ServerApp.allow_unauthenticated_access=False",
             f"--FlowApp.db_url={db_url}", f"--FlowApp.artifacts_url={artifacts_url}", *options],
            env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT,
        )
    return ServerProcess(proc, port, token, log)
