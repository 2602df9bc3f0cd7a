"""Many processes on one store, a killed owner, and change-feed ordering under contention."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from jupyter_flow.core.errors import FencedWrite
from jupyter_flow.core.ids import new_id
from jupyter_flow.store import Store

WORKER = Path(__file__).with_name("store_worker.py")
REPO = Path(__file__).resolve().parents[2]


def spawn(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args], env=env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def wait_until(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def test_eight_processes_write_one_fresh_sqlite_store(sqlite_url):
    n_procs, n_runs, n_tasks = 8, 15, 20
    workers = [spawn("write", sqlite_url, str(n_runs), str(n_tasks)) for _ in range(n_procs)]
    for worker in workers:
        assert worker.stdout.readline().strip() == "ready"
    for worker in workers:   # go: all of them open, migrate and write at once
        worker.stdin.write("go\n")
        worker.stdin.flush()
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        assert "locked" not in err and out.strip() == "done"

    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        count = lambda sql: conn.exec_driver_sql(sql).scalar()  # noqa: E731
        assert count("SELECT count(*) FROM alembic_version") == 1
        assert count("SELECT count(*) FROM runs WHERE status = 'SUCCESS'") == n_procs * n_runs
        assert count("SELECT count(*) FROM tasks WHERE status = 'SUCCESS'") == n_procs * n_runs * n_tasks
        assert count("SELECT count(*) FROM tasks") == n_procs * n_runs * n_tasks
        assert count("SELECT count(DISTINCT seq) FROM runs") == n_procs * n_runs
        assert count("SELECT count(*) FROM cache_entries") == n_procs * n_runs
        assert count("SELECT count(*) FROM owners WHERE ended_at IS NOT NULL") == n_procs
    engine.dispose()


def test_owner_killed_with_sigkill_becomes_lost(store_url):
    holder = spawn("hold", store_url)
    try:
        line = holder.stdout.readline().split()
        assert line[:1] == ["ready"], holder.stderr.read()
        owner, run_id = line[1], line[2]
        with Store(store_url) as store:
            assert store.reconcile(timeout=5) == []   # heartbeating: alive
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait(timeout=10)
            # Its last heartbeat ages past the timeout; then the reconciler declares it lost.
            lost = wait_until(lambda: store.reconcile(timeout=0.3), what="the run to be LOST")
            assert lost == [run_id]
            run = store.get_run(run_id)
            assert run["status"] == "LOST" and run["ended_at"] is not None
            assert run["task_counts"] == {"SUCCESS": 1, "LOST": 2}
            with pytest.raises(FencedWrite):
                store.heartbeat(owner)
            with pytest.raises(FencedWrite):
                store.finish_run(run_id, owner, "SUCCESS")
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(timeout=10)
        holder.stdout.close()
        holder.stderr.close()
        holder.stdin.close()


def test_change_feed_never_shows_a_later_seq_before_an_earlier_commit(pg_template, pg_databases):
    """PostgreSQL: the writer that bumps seq first holds the counter row until it commits,
    so a second writer can neither take a smaller seq nor become visible before it."""
    url = pg_databases.create("t_feed_order", template=pg_template)
    with Store(url) as store:
        owner = store.register_owner()
        first, second = new_id(), new_id()
        for run_id in (first, second):
            store.create_run({"id": run_id, "kind": "api", "status": "RUNNING", "owner_id": owner}, [])
        _, cursor = store.changes_since(0)

        slow = store.engine.connect()
        slow_tx = slow.begin()
        store._bump_seq(slow, [first])      # the same step every store write takes
        errors: list[BaseException] = []

        def fast_writer():
            try:
                store.update_run(second, owner, name="renamed")
            except BaseException as err:  # reported to the main thread below
                errors.append(err)

        thread = threading.Thread(target=fast_writer)
        thread.start()
        with store.engine.connect() as monitor:
            wait_until(
                lambda: monitor.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                ).scalar(),
                what="the second writer to wait for the counter row",
            )
        assert store.changes_since(cursor) == ([], cursor)   # nothing committed yet
        slow_tx.commit()
        slow.close()
        thread.join(timeout=10)
        assert not errors
        changes, _ = store.changes_since(cursor)
        assert [r["id"] for r in changes] == [first, second]
        assert changes[0]["seq"] < changes[1]["seq"]
