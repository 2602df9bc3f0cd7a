"""A bounded schemathesis run against a real server process: no 500, responses match."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.server.conftest import start_server_process
from tests.waiting import stop

from jupyter_flow.store import Store

SCHEMATHESIS = shutil.which("st") or shutil.which("schemathesis")


@pytest.mark.skipif(SCHEMATHESIS is None, reason="schemathesis is not installed (pip install -e .[test])")
def test_schemathesis_finds_no_server_error(flow_home, tmp_path):
    db_url = f"sqlite:///{flow_home / 'flow.db'}"
    with Store(db_url) as store:
        owner = store.register_owner()
        store.create_run({"id": "R1", "kind": "api", "status": "SUCCESS", "owner_id": owner},
                         [{"id": "T1", "node": "0", "name": "load", "status": "SUCCESS"}])
    server = start_server_process(tmp_path, db_url, str(flow_home / "artifacts"))
    try:
        # One worker: with two, hypothesis builds strategy reprs (ast.parse of lambda sources)
        # in two threads at once, which CPython 3.11's AST constructor does not survive
        # ("SystemError: AST constructor recursion depth mismatch"). Same checks, same budget.
        out = subprocess.run(
            [SCHEMATHESIS, "run", f"{server.api_url}openapi.json",
             "--wait-for-schema", "60", "-H", f"Authorization: token {server.token}",
             "--checks", "not_a_server_error,response_schema_conformance",
             "--phases", "coverage,fuzzing", "--max-examples", "25", "--max-time", "45",
             "--seed", "1", "--workers", "1",
             "--generation-database", "none", "--report-dir", str(tmp_path / "reports")],
            capture_output=True, text=True, timeout=180, cwd=tmp_path,
        )
        assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
        assert "Traceback" not in server.log_text()
    finally:
        stop(server.proc)
