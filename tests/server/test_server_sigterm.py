"""SIGTERM stops the Jupyter server, whatever state its store is in and while the
reconciler runs: a real ``python -m jupyter_server`` process, a real signal."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from jupyter_flow.store import Store
from tests.server.conftest import start_server_process
from tests.waiting import stop, wait_for

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
        with Store(url) as store:  # so is the scheduler (once it has loaded), renewing its lease
            assert f":{server.proc.pid}" in wait_for(lambda: store.lease("scheduler"))["holder"]
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


@pytest.mark.timeout(180)
def test_requests_during_sigterm_get_503_not_500(flow_home, tmp_path):
    """The sidebar polls while a person stops the server: requests that arrive after the
    extension stopped its worker threads were 500s logging "cannot schedule new futures
    after shutdown" (issue 17 point 10); they are 503 "shutting down", and nothing is logged
    as an error."""
    import threading

    url = _healthy(flow_home)
    server = start_server_process(tmp_path, url, str(flow_home / "artifacts"), "--FlowApp.reconcile_interval=0.02",
                                  "--FlowApp.scheduler_interval=0.02", "--FlowApp.lease_ttl=60")
    answers: list[int | None] = []
    done = threading.Event()

    def poll():
        while not done.is_set():
            status, _ = server.api("runs?limit=50", timeout=5)
            answers.append(status)
            if status is None:
                return  # the server has stopped listening

    try:
        assert server.wait_for_api()[0] == 200
        # A kernel, as a person's lab has: the server shuts it down after the extensions,
        # and keeps answering requests meanwhile.
        request = urllib.request.Request(f"http://127.0.0.1:{server.port}/api/kernels", method="POST", data=b"{}",
                                         headers={"Authorization": f"token {server.token}"})
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 201
        pollers = [threading.Thread(target=poll, daemon=True) for _ in range(12)]
        for thread in pollers:
            thread.start()
        time.sleep(2)
        _stop_and_time(server)
        done.set()
        for thread in pollers:
            thread.join(10)
    finally:
        done.set()
        stop(server.proc)
    log = server.log_text()
    assert 200 in answers
    assert 500 not in answers, (answers.count(500), log[-3000:])
    assert "cannot schedule new futures" not in log and "Traceback" not in log, log[-3000:]


async def test_a_request_after_the_extension_stopped_is_a_503(api, jp_serverapp):
    """Between the extension's stop (its worker threads shut down) and the HTTP server's,
    jupyter_server keeps answering while it shuts kernels down: a request then was a 500
    "cannot schedule new futures after shutdown"; it is a 503 that says the server stops."""
    (flow_app,) = [ext for ext in _extension_apps(jp_serverapp) if type(ext).__name__ == "FlowApp"]
    assert (await api("runs"))[0] == 200
    await flow_app.stop_extension()
    status, body = await api("runs")
    assert status == 503, body
    assert body["message"] == "the Jupyter server is shutting down; retry once it is back"


def _extension_apps(serverapp):
    for extension in serverapp.extension_manager.extensions.values():
        for point in extension.extension_points.values():
            if point.app is not None:
                yield point.app
