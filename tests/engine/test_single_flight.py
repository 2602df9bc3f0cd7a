"""One computation per cache key: concurrent runs in this and other processes wait for the
run that claimed a key and reuse its value; a dead claimer's key is taken over."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.waiting import wait_for

from . import ops

ROOT = Path(__file__).resolve().parents[2]

CONCURRENT_SCRIPT = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, os.environ["FLOW_TEST_ROOT"])
    import jupyter_flow as jf
    from tests.engine import ops

    go, calls = sys.argv[1], sys.argv[2]
    jf.cluster(os.environ["FLOW_TEST_SCHEDULER"])
    while not os.path.exists(go):
        time.sleep(0.01)
    run = jf.run(ops.total([ops.unseeded("shared", calls)]), name="racer")
    print(run.status, repr(run.result()), flush=True)
""")


def _calls(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_concurrent_processes_compute_a_key_once(jf, subprocess_env, tmp_path):
    script = tmp_path / "racer.py"
    script.write_text(CONCURRENT_SCRIPT)
    go, calls = tmp_path / "go", tmp_path / "calls"
    env = {**subprocess_env, "FLOW_TEST_ROOT": str(ROOT)}
    racers = [subprocess.Popen([sys.executable, str(script), str(go), str(calls)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(3)]
    time.sleep(2.0)  # each racer has its engine and cluster connection ready
    go.write_text("")
    results = []
    for racer in racers:
        out, err = racer.communicate(timeout=180)
        assert racer.returncode == 0, err[-3000:]
        results.append(out.split())
    assert [r[0] for r in results] == ["SUCCESS"] * 3
    assert len({r[1] for r in results}) == 1, results  # one value for the key, everywhere
    assert len(_calls(calls)) == 1, _calls(calls)  # computed by exactly one racer
    unseeded_tasks = [t for run in jf.runs(name="racer") for t in run.tasks if t.name == "unseeded"]
    assert sorted(t.status for t in unseeded_tasks) == ["CACHED", "CACHED", "SUCCESS"]
    assert len({t.outputs["return"] for t in unseeded_tasks}) == 1
    from jupyter_flow.engine.runtime import get_engine

    assert get_engine().store.claims() == []  # nothing left claimed


def test_concurrent_runs_in_one_process_and_within_one_run(jf, tmp_path):
    calls = tmp_path / "calls"
    first = jf.run(ops.unseeded("same", str(calls)), wait=False)
    wait_for(lambda: _calls(calls))
    second = jf.run(ops.unseeded("same", str(calls)), wait=False)
    (waiting,) = second.tasks
    assert waiting.status == "WAITING" and first.id in waiting.reason
    assert first.wait(60).status == "SUCCESS" and second.wait(60).status == "SUCCESS"
    assert first.result() == second.result()
    (restored,) = second.tasks
    assert restored.status == "CACHED" and "another run" in restored.reason
    assert len(_calls(calls)) == 1
    # Two tasks of one run with the same key: one computes, the other reuses its value.
    both = jf.run(jf.parallel([ops.unseeded("twin", str(calls), 0.5), ops.unseeded("twin", str(calls), 0.5)]))
    assert both.status == "SUCCESS"
    a, b = both.result()
    assert a == b
    assert sorted(t.status for t in both.tasks if t.name == "unseeded") == ["CACHED", "SUCCESS"]
    assert len(_calls(calls)) == 2


def test_waiting_run_starts_its_downstream_ops_once_the_value_is_recorded(jf, tmp_path):
    calls = tmp_path / "calls"
    shared = ops.unseeded("upstream", str(calls))
    first = jf.run(shared, wait=False)
    wait_for(lambda: _calls(calls))
    second = jf.run(ops.chain_step(ops.unseeded("upstream", str(calls))))
    assert second.status == "SUCCESS"
    assert second.result() == first.wait(60).result() + 1
    assert {t.name: t.status for t in second.tasks} == {"unseeded": "CACHED", "chain_step": "SUCCESS"}


HOLDER_SCRIPT = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, os.environ["FLOW_TEST_ROOT"])
    import jupyter_flow as jf
    from tests.engine import ops

    jf.cluster(os.environ["FLOW_TEST_SCHEDULER"])
    run = jf.run(ops.hold_while(sys.argv[1], sys.argv[2]), name="holder", wait=False)
    while not any(t.status == "RUNNING" for t in run.tasks):
        time.sleep(0.05)
    from jupyter_flow.engine.runtime import get_engine
    get_engine().writer.flush()
    print(run.id, flush=True)
    time.sleep(600)
""")


def test_a_dead_claimers_key_is_taken_over(jf, subprocess_env, tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_FLOW_HEARTBEAT_TIMEOUT", "3")
    env = {**subprocess_env, "FLOW_TEST_ROOT": str(ROOT), "JUPYTER_FLOW_HEARTBEAT_TIMEOUT": "3"}
    script = tmp_path / "holder.py"
    script.write_text(HOLDER_SCRIPT)
    marker, calls = tmp_path / "hold", tmp_path / "calls"
    marker.write_text("")
    holder = subprocess.Popen([sys.executable, str(script), str(marker), str(calls)], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        holder_run = holder.stdout.readline().strip()
        assert holder_run, "the holder did not start its run"
        waiter = jf.run(ops.hold_while(str(marker), str(calls)), wait=False)
        assert wait_for(lambda: waiter.tasks[0].status == "WAITING", timeout=10)
        assert holder_run in waiter.tasks[0].reason
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    marker.unlink()  # the holder's op is orphaned on its worker; ours may finish
    waiter.wait(timeout=90)
    assert waiter.status == "SUCCESS" and waiter.result() == "released"
    (task,) = waiter.tasks
    assert task.status == "SUCCESS" and holder_run in task.reason and "taken over" in task.reason
    assert jf.get_run(holder_run).status == "LOST"


RESUMER_SCRIPT = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, os.environ["FLOW_TEST_ROOT"])
    import jupyter_flow as jf

    jf.cluster(os.environ["FLOW_TEST_SCHEDULER"])
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.01)
    run = jf.resume(sys.argv[1])
    print(run.status, repr(run.result()), flush=True)
""")


def test_concurrent_resumes_of_a_lost_run_compute_once(jf, subprocess_env, tmp_path):
    starter = tmp_path / "start.py"
    starter.write_text(CONCURRENT_SCRIPT.replace('run = jf.run(', 'run = jf.run(').replace(
        'print(run.status, repr(run.result()), flush=True)',
        'print(run.id, flush=True); time.sleep(600)').replace(
        'run = jf.run(ops.total([ops.unseeded("shared", calls)]), name="racer")',
        'run = jf.run(ops.total([ops.unseeded("lost", calls, 4)]), name="racer", wait=False)\n'
        'while not any(t.status == "RUNNING" for t in run.tasks): time.sleep(0.05)\n'
        'from jupyter_flow.engine.runtime import get_engine; get_engine().writer.flush()'))
    go, calls = tmp_path / "go", tmp_path / "calls"
    go.write_text("")
    env = {**subprocess_env, "FLOW_TEST_ROOT": str(ROOT)}
    owner = subprocess.Popen([sys.executable, str(starter), str(go), str(calls)], env=env,
                             stdout=subprocess.PIPE, text=True)
    run_id = owner.stdout.readline().strip()
    owner.send_signal(signal.SIGKILL)
    owner.wait(10)
    from jupyter_flow.engine.runtime import get_engine

    time.sleep(1.5)
    assert run_id in get_engine().store.reconcile(timeout=1.0)
    script, start = tmp_path / "resume.py", tmp_path / "resume-go"
    script.write_text(RESUMER_SCRIPT)
    resumers = [subprocess.Popen([sys.executable, str(script), run_id, str(start)], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(2.0)
    before = len(_calls(calls))  # the killed owner's own attempt (still sleeping on its worker)
    start.write_text("")
    results = []
    for resumer in resumers:
        out, err = resumer.communicate(timeout=180)
        assert resumer.returncode == 0, err[-3000:]
        results.append(out.split())
    assert [r[0] for r in results] == ["SUCCESS", "SUCCESS"] and results[0][1] == results[1][1]
    assert len(_calls(calls)) == before + 1  # the two resumes computed the lost op once
