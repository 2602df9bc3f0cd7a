"""Large and deep graphs: a 1,000-op chain plans, runs and resumes in another process; a
fully cached rerun sends nothing to the cluster and is in the store when it returns.

Speed is measured in bench/bench_cached.py, not here.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.waiting import wait_for

from . import ops

ROOT = Path(__file__).resolve().parents[2]
DEPTH = 1000

RESUME_SCRIPT = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, os.environ["FLOW_TEST_ROOT"])
    import jupyter_flow as jf
    jf.cluster(os.environ["FLOW_TEST_SCHEDULER"])
    run = jf.resume(sys.argv[1])
    statuses = [t.status for t in run.tasks]
    print(run.status, run.result(), statuses.count("CACHED"), statuses.count("SUCCESS"), flush=True)
""")


def _chain(depth: int):
    x = ops.chain_step(0)
    for _ in range(depth - 1):
        x = ops.chain_step(x)
    return x


def _transitions(dask_cluster) -> int:
    """Task state changes the scheduler has made: unchanged when nothing was submitted."""
    return dask_cluster.scheduler.transition_counter


def test_a_chain_of_1000_ops_runs_and_resumes_in_another_process(jf, subprocess_env, tmp_path):
    from jupyter_flow.engine.runtime import get_engine

    run = jf.run(_chain(DEPTH), name="deep")
    assert run.status == "SUCCESS", run.error
    assert run.result() == DEPTH
    assert len(run.tasks) == DEPTH
    store = get_engine().store
    get_engine().writer.flush()
    assert store.get_run(run.id)["snapshot"], "the deep graph's snapshot was not stored"
    # The last ops' values are forgotten: the resuming process must compute them again.
    tail = [t.key for t in run.tasks[-5:]]
    store.drop_cache(tail)

    script = tmp_path / "resume.py"
    script.write_text(RESUME_SCRIPT)
    out = subprocess.run([sys.executable, str(script), run.id], env={**subprocess_env, "FLOW_TEST_ROOT": str(ROOT)},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    status, value, cached, computed = out.stdout.split()
    assert (status, value) == ("SUCCESS", str(DEPTH))
    assert (int(cached), int(computed)) == (DEPTH - 5, 5)


def test_a_snapshot_stored_by_an_older_version_still_resumes(jf):
    """Snapshots written before the flat table held the pickled target nodes."""
    from jupyter_flow.engine.runtime import get_engine

    run = jf.run(ops.add(ops.add(1, 2), 3), name="old snapshot")
    assert run.result() == 6
    engine = get_engine()
    engine.writer.flush()
    info = engine.artifacts.put(ops.add(ops.add(1, 2), 3), seal=True)  # the old format
    engine.store.set_snapshot(run.id, info.digest)
    resumed = jf.resume(run.id)
    assert resumed.status == "SUCCESS" and resumed.result() == 6
    assert [t.status for t in resumed.tasks] == ["CACHED", "CACHED"]


def test_a_fully_cached_rerun_submits_nothing_and_is_recorded_when_it_returns(jf, dask_cluster, flow_home):
    from jupyter_flow.store import Store

    nodes = [ops.add(i, 1) for i in range(300)]
    first = jf.run(nodes, name="first")
    assert first.status == "SUCCESS"
    # The first run's futures are released once it ended: let the scheduler forget them.
    wait_for(lambda: not dask_cluster.scheduler.tasks, timeout=30)
    before = _transitions(dask_cluster)
    again = jf.run(nodes, name="again")
    assert _transitions(dask_cluster) == before, "a fully cached rerun sent work to the cluster"
    # Another connection (another process would see the same) reads the whole run at once.
    other = Store(f"sqlite:///{flow_home / 'flow.db'}")
    try:
        row = other.get_run(again.id)
        assert row is not None and row["status"] == "SUCCESS"
        tasks = other.get_tasks(again.id)
    finally:
        other.close()
    assert len(tasks) == 300
    assert all(t["status"] == "CACHED" and t["cached"] for t in tasks)
    # Task ids sort in the order of the graph, as they were made.
    assert [t["id"] for t in tasks] == [t.id for t in again.tasks]
    assert [t["node"] for t in tasks] == [str(i) for i in range(300)]
    assert again.result() == [i + 1 for i in range(300)]
