"""Runs across time and processes: background runs, cancel, LOST and resume, WAITING for resources."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.waiting import gpu_worker, wait_for

from . import ops


def test_background_run_returns_at_once_and_can_be_waited(jf):
    started = time.monotonic()
    run = jf.run(ops.sleepy(1.5), wait=False)
    assert time.monotonic() - started < 1.0
    assert run.status == "RUNNING"
    wait_for(lambda: any(t.status == "RUNNING" for t in run.tasks))
    run.wait(timeout=60)
    assert run.status == "SUCCESS" and run.result() == 1.5


def test_cancel_from_another_process(jf, subprocess_env):
    run = jf.run([ops.sleepy(60), ops.add(1, 1)], wait=False)
    wait_for(lambda: any(t.name == "sleepy" and t.status == "RUNNING" for t in run.tasks))
    requested = time.monotonic()
    subprocess.run(
        [sys.executable, "-c", f"import jupyter_flow as jf; jf.cancel({run.id!r})"],
        env=subprocess_env, check=True, timeout=60,
    )
    run.wait(timeout=30)
    noticed = time.monotonic() - requested
    assert run.status == "CANCELED"
    statuses = {t.name: t.status for t in run.tasks}
    assert statuses["sleepy"] == "CANCELED"
    assert statuses["add"] == "SUCCESS"  # finished work is kept
    assert noticed < 20  # generous bound for a 2 s promise; bench/ measures it
    with pytest.raises(jf.RunCanceled):
        run.result()
    with pytest.raises(jf.FlowError, match="already ended"):
        jf.cancel(run.id)


KILLED_SCRIPT = textwrap.dedent("""
    import os, sys, time
    import jupyter_flow as jf

    @jf.op
    def first(n):
        return n + 1

    @jf.op
    def second(x, marker):
        # Holds while the marker exists, so the test decides when it may finish.
        while os.path.exists(marker):
            time.sleep(0.05)
        return x * 10

    jf.cluster(os.environ["FLOW_TEST_SCHEDULER"])
    run = jf.run(second(first(4), sys.argv[1]), name="killed", wait=False)
    while not any(t.name == "first" and t.status == "SUCCESS" for t in run.tasks):
        time.sleep(0.05)
    from jupyter_flow.engine.runtime import get_engine
    get_engine().writer.flush()
    print(run.id, flush=True)
    time.sleep(600)
""")

RESUME_SCRIPT = textwrap.dedent("""
    import os, sys
    import jupyter_flow as jf
    jf.cluster(os.environ["FLOW_TEST_SCHEDULER"])
    run = jf.resume(sys.argv[1])
    print(run.id, run.status, run.result(), run.resumed_from, flush=True)
    print(sorted((t.name, t.status) for t in run.tasks), flush=True)
""")


def test_killed_process_run_becomes_lost_and_resumes_elsewhere(jf, subprocess_env, tmp_path):
    script = tmp_path / "killed.py"
    script.write_text(KILLED_SCRIPT)
    marker = tmp_path / "hold"
    marker.write_text("")
    proc = subprocess.Popen([sys.executable, str(script), str(marker)], env=subprocess_env,
                            stdout=subprocess.PIPE, text=True)
    try:
        run_id = proc.stdout.readline().strip()
        assert run_id, "the child process did not start its run"
        from jupyter_flow.engine.runtime import get_engine

        store = get_engine().store
        assert store.get_run(run_id)["status"] == "RUNNING"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    time.sleep(1.5)
    assert run_id in store.reconcile(timeout=1.0)
    lost = jf.get_run(run_id)
    assert lost.status == "LOST"
    assert {t.name: t.status for t in lost.tasks} == {"first": "SUCCESS", "second": "LOST"}
    with pytest.raises(jf.RunLost):
        lost.result()

    resume = tmp_path / "resume.py"
    resume.write_text(RESUME_SCRIPT)
    marker.unlink()
    out = subprocess.run([sys.executable, str(resume), run_id], env=subprocess_env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    line, tasks = out.stdout.strip().splitlines()
    new_id, status, value, resumed_from = line.split()
    assert status == "SUCCESS" and value == "50" and resumed_from == run_id
    assert tasks == "[('first', 'CACHED'), ('second', 'SUCCESS')]"
    assert jf.get_run(new_id).kind == "resume"


def test_gpu_op_waits_until_a_gpu_worker_joins(jf, dask_cluster):
    run = jf.run(ops.on_gpu(21), wait=False)
    task = wait_for(lambda: next((t for t in run.tasks if t.status == "WAITING"), None), timeout=30)
    assert "GPU" in task.reason
    with gpu_worker(dask_cluster.scheduler_address):
        run.wait(timeout=90)
        assert run.status == "SUCCESS" and run.result() == 42
        (task,) = run.tasks
        assert task.status == "SUCCESS" and task.attempts == 1


def test_worker_dying_every_time_fails_with_worker_lost(jf):
    run = jf.run(ops.always_dies(1))
    assert run.status == "FAILED"
    (task,) = run.tasks
    assert task.status == "FAILED" and task.attempts >= 2
    with pytest.raises(jf.WorkerLost, match="always_dies"):
        run.result()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed child may linger as a zombie until its parent reaps it.
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().split()[2] != "Z"


def test_cancel_kills_the_child_process_of_an_isolated_op(jf, tmp_path):
    pid_file = tmp_path / "child.pid"
    run = jf.run(ops.isolated_sleeper(str(pid_file)), wait=False)
    pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), timeout=60))
    assert _alive(pid)
    jf.cancel(run.id)
    run.wait(timeout=30)
    assert run.status == "CANCELED"
    wait_for(lambda: not _alive(pid), timeout=20)


def test_local_profile_starts_a_loopback_cluster_once(flow_home):
    import jupyter_flow as jf
    from jupyter_flow.deploy import cluster as clusters

    try:
        first = jf.cluster("local", n_workers=1, threads_per_worker=1)
        assert first.address.startswith("tcp://127.0.0.1:")
        assert jf.cluster("local", n_workers=1, threads_per_worker=1) is first
        assert jf.run(ops.add(2, 2)).result() == 4
        with pytest.raises(jf.FlowError, match="unknown cluster profile"):
            jf.cluster("no-such-profile")
    finally:
        handle = clusters._handles.pop(("local", clusters._freeze({"n_workers": 1, "threads_per_worker": 1})), None)
        clusters._current[0] = None
        if handle is not None:
            handle.close()
