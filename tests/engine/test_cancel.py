"""A cancel stops the work: on the local cluster jupyter_flow starts, a canceled op no longer
occupies its worker a few seconds later, and nothing it produced is kept as its result."""

from __future__ import annotations

import os
import time

import pytest

from tests.waiting import wait_for

from . import ops


@pytest.fixture(scope="module")
def own_cluster():
    """The `local` profile as a new user gets it: one worker process (with its nanny) and
    two threads, started by jupyter_flow in this process."""
    from jupyter_flow.deploy import cluster as clusters

    overrides = {"n_workers": 1, "threads_per_worker": 2}
    handle = clusters.use("local", **overrides)
    yield handle
    clusters._handles.pop(("local", clusters._freeze(overrides)), None)
    clusters._current[0] = None
    clusters._current_overrides.clear()
    handle.close()


@pytest.fixture
def jf(flow_home, own_cluster):
    import jupyter_flow

    return jupyter_flow


def _engine():
    from jupyter_flow.engine.runtime import get_engine

    return get_engine()


def _task(run):
    (task,) = run.tasks
    return task


def _running(run) -> bool:
    return _task(run).status == "RUNNING"


def test_cancel_frees_the_worker_and_a_waiting_run_takes_the_key_over(jf, own_cluster, tmp_path):
    flag, other_flag = tmp_path / "hold-a", tmp_path / "hold-b"
    flag.touch()
    other_flag.touch()
    canceled = jf.run(ops.hold(str(flag), str(tmp_path / "a.count"), "a"), wait=False)
    other = jf.run(ops.hold(str(other_flag), str(tmp_path / "b.count"), "b"), wait=False)
    wait_for(lambda: _running(canceled) and _running(other), timeout=120)
    pids = own_cluster.client.run(os.getpid)
    # Same value as the canceled run: it waits for that run's claim on the key.
    waiting = jf.run(ops.hold(str(flag), str(tmp_path / "a.count"), "a"), wait=False)
    wait_for(lambda: _task(waiting).status == "WAITING", timeout=60)

    asked = time.monotonic()
    jf.cancel(canceled.id)
    canceled.wait(timeout=60)
    assert canceled.status == "CANCELED" and _task(canceled).status == "CANCELED"
    # The waiting run computes the key itself at once: the canceled op's thread (still in its
    # loop: its flag is there) no longer holds a worker thread, because its worker restarted.
    waiting.wait(timeout=60)
    freed = time.monotonic() - asked
    assert waiting.status == "SUCCESS", _task(waiting).error
    took = _task(waiting)
    assert not took.cached and "taken over from run" in took.reason
    assert freed < 45  # a few seconds on an idle machine; generous for a loaded one
    assert own_cluster.client.run(os.getpid) != pids  # the worker process was replaced
    # The other run's task on the restarted worker was retried, not failed.
    other.wait(timeout=60)
    assert other.status == "SUCCESS" and _task(other).attempts == 2
    # The only cache entry of the key is the one the waiting run computed.
    entry = _engine().store.lookup_cache([took.key])[took.key]
    assert entry["task_id"] == took.id
    assert not _task(canceled).outputs
    flag.unlink()


def test_an_op_that_ends_after_its_cancel_leaves_no_result(jf, own_cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_FLOW_CANCEL_GRACE", "30")  # it ends by itself: no restart
    engine = _engine()
    flag, counter = tmp_path / "hold", tmp_path / "late.count"
    flag.touch()
    run = jf.run(ops.hold(str(flag), str(counter), "late"), wait=False)
    wait_for(lambda: _running(run), timeout=120)
    pids = own_cluster.client.run(os.getpid)
    files, rows = set(engine.artifacts.digests()), {a["hash"] for a in engine.store.list_artifacts()}
    jf.cancel(run.id)
    # The task is CANCELED once the workers know; then the op finishes, inside the grace period.
    wait_for(lambda: _task(run).status == "CANCELED", timeout=30)
    flag.unlink()
    run.wait(timeout=60)
    assert run.status == "CANCELED"
    key = _task(run).key
    assert engine.store.lookup_cache([key]) == {}
    assert own_cluster.client.run(os.getpid) == pids  # it ended by itself: nothing was restarted
    engine.writer.flush()
    assert {a["hash"] for a in engine.store.list_artifacts()} <= rows | {
        a["hash"] for a in engine.store.list_artifacts() if a["type"] == "graph snapshot"}
    assert set(engine.artifacts.digests()) - files <= {
        a["hash"] for a in engine.store.list_artifacts() if a["type"] == "graph snapshot"}
    # Rerunning the canceled op computes it: nothing of the canceled run was cached.
    again = jf.run(ops.hold(str(flag), str(counter), "late"))
    assert again.status == "SUCCESS" and not _task(again).cached
    assert _task(again).reason == "no cache entry"
