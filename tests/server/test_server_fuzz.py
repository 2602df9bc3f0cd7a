"""A bounded schemathesis run against a real server process: no 500, responses match."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys

import pytest

from tests.waiting import stop

from jupyter_flow.store import Store

SCHEMATHESIS = shutil.which("st") or shutil.which("schemathesis")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(SCHEMATHESIS is None, reason="schemathesis is not installed (pip install -e .[test])")
def test_schemathesis_finds_no_server_error(flow_home, tmp_path):
    db_url = f"sqlite:///{flow_home / 'flow.db'}"
    with Store(db_url) as store:
        owner = store.register_owner()
        store.create_run({"id": "R1", "kind": "api", "status": "SUCCESS", "owner_id": owner},
                         [{"id": "T1", "node": "0", "name": "load", "status": "SUCCESS"}])
    port, token = _free_port(), secrets.token_hex(16)
    log = (tmp_path / "server.log").open("w")  # a pipe nobody reads would block the server
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", f"--port={port}",
         "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={tmp_path}", "--ServerApp.allow_unauthenticated_access=False",
         f"--FlowApp.db_url={db_url}", f"--FlowApp.artifacts_url={flow_home / 'artifacts'}"],
        env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        out = subprocess.run(
            [SCHEMATHESIS, "run", f"http://127.0.0.1:{port}/jupyter-flow/api/openapi.json",
             "--wait-for-schema", "60", "-H", f"Authorization: token {token}",
             "--checks", "not_a_server_error,response_schema_conformance",
             "--phases", "coverage,fuzzing", "--max-examples", "25", "--max-time", "45",
             "--seed", "1", "--workers", "2",
             "--generation-database", "none", "--report-dir", str(tmp_path / "reports")],
            capture_output=True, text=True, timeout=180, cwd=tmp_path,
        )
        assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
        assert "Traceback" not in (tmp_path / "server.log").read_text()
    finally:
        stop(server)
        log.close()
