"""SIGTERM stops the Jupyter server, whatever state its store is in and while the
reconciler runs: a real ``python -m jupyter_server`` process, a real signal."""

from __future__ import annotations

import signal
import socket
import subprocess
import time

import pytest

from jupyter_flow.store import Store
from tests.server.conftest import start_server_process
from tests.waiting import stop

EXIT_DEADLINE_S = 30.0
STORE_FAILURE = "cannot open its store"


def _healthy(flow_home) -> str:
    url = f"sqlite:///{flow_home / 'flow.db'}"
    with Store(url) as store:  # work for the reconciler: a run whose owner died long ago
        owner = store.register_owner(pid=999_999)
        store.create_run({"id": "R1", "kind": "api", "status": "RUNNING", "owner_id": owner},
                         [{"id": "T1", "node": "0", "name": "load", "status": "RUNNING"}])
    return url


def _corrupt(flow_home) -> str:
    flow_home.mkdir(parents=True, exist_ok=True)
    (flow_home / "flow.db").write_bytes(b"\x13not a database\x00" * 1024)
    return f"sqlite:///{flow_home / 'flow.db'}"


@pytest.fixture
def silent_postgresql():
    """A port that accepts TCP connections and never says a word, like a hung database
    server; libpq would wait for its greeting forever."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"postgresql+psycopg://flow:hung-pw-123@127.0.0.1:{listener.getsockname()[1]}/flow"


def _stop_and_time(server) -> float:
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(EXIT_DEADLINE_S)
    except subprocess.TimeoutExpired:
        stop(server.proc, grace=1)
        pytest.fail(f"the server ignored SIGTERM for {EXIT_DEADLINE_S} s:\n{server.log_text()[-3000:]}")
    return time.monotonic() - started


@pytest.mark.timeout(180)
def test_sigterm_stops_a_server_whose_reconciler_and_scheduler_are_busy(flow_home, tmp_path):
    url = _healthy(flow_home)
    server = start_server_process(tmp_path, url, str(flow_home / "artifacts"),
                                  "--FlowApp.reconcile_interval=0.02", "--FlowApp.heartbeat_timeout=1",
                                  "--FlowApp.scheduler_interval=0.02", "--FlowApp.lease_ttl=60")
    try:
        status, health = server.wait_for_api()
        assert status == 200 and health["status"] == "ok"
        deadline = time.monotonic() + 30
        while server.api("runs/R1")[1]["status"] != "LOST":  # the reconciler is at work
            assert time.monotonic() < deadline, "the reconciler never ran"
            time.sleep(0.1)
        with Store(url) as store:  # so is the scheduler, renewing its lease
            assert f":{server.proc.pid}" in store.lease("scheduler")["holder"]
        _stop_and_time(server)
    finally:
        stop(server.proc)
    assert "Traceback" not in server.log_text()
    with Store(url) as store:  # released on the way out: another server may fire at once
        assert store.lease("scheduler") is None


@pytest.mark.timeout(180)
def test_sigterm_stops_a_server_whose_store_is_corrupt(flow_home, tmp_path):
    server = start_server_process(tmp_path, _corrupt(flow_home), str(flow_home / "artifacts"),
                                  "--FlowApp.reconcile_interval=0.05", "--FlowApp.store_retry_interval=0.1")
    try:
        status, error = server.wait_for_api()
        assert status == 503, error
        assert str(flow_home / "flow.db") in error["message"] and "corrupt" in error["message"]
        for _ in range(5):  # requests and reconciler passes retry the store meanwhile
            assert server.api("runs")[0] == 503
            time.sleep(0.1)
        _stop_and_time(server)
    finally:
        stop(server.proc)
    log = server.log_text()
    assert "Traceback" not in log
    assert sum(STORE_FAILURE in line for line in log.splitlines()) == 1, log[-3000:]


@pytest.mark.timeout(180)
def test_sigterm_stops_a_server_whose_database_never_answers(silent_postgresql, flow_home, tmp_path):
    server = start_server_process(tmp_path, silent_postgresql, str(flow_home / "artifacts"),
                                  "--FlowApp.reconcile_interval=0.05", "--FlowApp.store_retry_interval=0.1")
    try:
        # Opening waits for the connect timeout (10 s), then the API says why.
        status, error = server.wait_for_api(timeout=120)
        assert status == 503, error
        assert "timeout" in error["message"] and "hung-pw-123" not in error["message"]
        time.sleep(1)  # a reconciler pass is now waiting on the database again
        _stop_and_time(server)
    finally:
        stop(server.proc)
    assert "Traceback" not in server.log_text()
