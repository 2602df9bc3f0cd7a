"""A run reported SUCCESS is a recorded run: stalls, a fenced owner and a full disk never
end in a SUCCESS the store does not hold."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.waiting import wait_for

from . import ops

ROOT = Path(__file__).resolve().parents[2]

STALLED_SCRIPT = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, os.environ["FLOW_TEST_ROOT"])
    import jupyter_flow as jf
    from tests.engine import ops

    jf.cluster(os.environ["FLOW_TEST_SCHEDULER"])
    run = jf.run(ops.hold_while(sys.argv[1], sys.argv[2]), name="stalled", wait=False)
    while not any(t.status == "RUNNING" for t in run.tasks):
        time.sleep(0.05)
    from jupyter_flow.engine.runtime import get_engine
    get_engine().writer.flush()
    print(run.id, flush=True)
    sys.stdin.readline()  # the test stops this process, then lets it go on
    run.wait(120)
    print(run.status, flush=True)
    print(run.error, flush=True)
    after = jf.run(ops.add(2, 3), name="after")
    print(after.status, after.id, flush=True)
""")


def test_a_process_fenced_during_a_stall_reports_lost_and_records_later_runs(jf, subprocess_env, tmp_path,
                                                                               monkeypatch):
    monkeypatch.setenv("JUPYTER_FLOW_HEARTBEAT_TIMEOUT", "3")
    env = {**subprocess_env, "FLOW_TEST_ROOT": str(ROOT), "JUPYTER_FLOW_HEARTBEAT_TIMEOUT": "3"}
    script = tmp_path / "stalled.py"
    script.write_text(STALLED_SCRIPT)
    marker, calls = tmp_path / "hold", tmp_path / "calls"
    marker.write_text("")
    child = subprocess.Popen([sys.executable, str(script), str(marker), str(calls)], env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run_id = child.stdout.readline().strip()
        assert run_id, child.stderr.read()[-3000:]
        child.send_signal(signal.SIGSTOP)   # a laptop lid closed for longer than the timeout
        time.sleep(4.0)
        # jf.runs()/get_run reconcile: the silent owner is fenced, its run LOST.
        assert wait_for(lambda: jf.get_run(run_id).status == "LOST", timeout=20)
        marker.unlink()                      # the op finishes while the process is stopped
        time.sleep(1.0)
        child.send_signal(signal.SIGCONT)
        out, err = child.communicate("go\n", timeout=180)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, err[-3000:]
    status, error, after = out.strip().splitlines()
    assert status == "LOST", out          # never SUCCESS for a run the store holds as LOST
    assert "declared run" in error and "LOST" in error
    after_status, after_id = after.split()
    assert after_status == "SUCCESS"
    assert jf.get_run(after_id).status == "SUCCESS"   # re-registered: later runs are recorded
    assert jf.get_run(run_id).status == "LOST"
    # The value it computed reached the cache: resuming restores it instead of rerunning.
    resumed = jf.resume(run_id)
    assert resumed.status == "SUCCESS" and [t.status for t in resumed.tasks] == ["CACHED"]
    assert calls.read_text().count("hold") == 1


@pytest.fixture
def small_disk(tmp_path):
    """A real 4 MiB filesystem (tmpfs) that the test can fill up."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"the test needs to mount a small tmpfs (run as root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        from jupyter_flow.engine import runtime

        runtime.shutdown()
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    # Unbuffered: a buffered file would fail again when closed, flushing what did not fit.
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


def test_a_full_store_disk_fails_loudly_naming_the_path(jf, small_disk, monkeypatch):
    db = small_disk / "flow.db"
    monkeypatch.setenv("JUPYTER_FLOW_DB", f"sqlite:///{db}")
    assert jf.run(ops.add(1, 1)).status == "SUCCESS"   # the store works
    filler = _fill(small_disk)
    with pytest.raises(jf.FlowError) as raised:
        jf.run(ops.add(40, 2))
    message = str(raised.value)
    assert str(db) in message and "full" in message
    # A fully cached run computes nothing, yet its record cannot be written either.
    with pytest.raises(jf.FlowError) as raised:
        jf.run(ops.add(1, 1))
    assert str(db) in str(raised.value) and "full" in str(raised.value)
    filler.unlink()
    run = jf.run(ops.add(40, 2))
    assert run.status == "SUCCESS" and jf.get_run(run.id).status == "SUCCESS"
    # Nothing of the unrecorded run pretends to have succeeded.
    assert all(r.status != "SUCCESS" or r.id == run.id or r.name is None for r in jf.runs(limit=50))


def test_why_each_task_failed_is_recorded_and_read_back(jf):
    """The engine writes each task's failure kind; a run read back from the store (another
    process, the CLI) raises the same errors from it as the live run."""
    from jupyter_flow.engine.records import Run
    from jupyter_flow.engine.runtime import get_engine

    run = jf.run([ops.add(ops.too_slow(5), 1), ops.boom(1), ops.add(1, 2)])
    assert run.status == "FAILED"
    engine = get_engine()
    engine.writer.flush()
    expected = [("add", "SKIPPED", "upstream"), ("add", "SUCCESS", None), ("boom", "FAILED", "exception"),
                ("too_slow", "FAILED", "timeout")]
    assert sorted((t["name"], t["status"], t["failure_kind"]) for t in engine.store.get_tasks(run.id)) == expected
    assert sorted((t.name, t.status, t.failure_kind) for t in run.tasks) == expected
    # The live run's times are UTC datetimes, as the stored run's are (they were epoch floats).
    live = {t.id: t for t in run.tasks}
    stored_tasks = {t.id: t for t in Run(engine, run.id).tasks}
    for task_id, task in live.items():
        assert isinstance(task.ended_at, datetime) and task.ended_at.tzinfo is not None
        assert abs((task.ended_at - stored_tasks[task_id].ended_at).total_seconds()) < 1

    timed_out = jf.run(ops.too_slow(5))
    stored = Run(engine, timed_out.id)  # no live execution: read from the store
    with pytest.raises(jf.OpTimeout, match="too_slow"):
        stored.result()
