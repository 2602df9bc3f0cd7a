"""Batches through the real CLI and papermill kernels, sharing the session cluster."""

import json
import subprocess
import sys

import nbformat
import pytest

from tests.notebook_files import write_notebook

NOTEBOOK_CELLS = [
    ("%load_ext jupyter_flow\nimport jupyter_flow as jf", None),
    ("lr = 0.1\nfail = False", ["parameters"]),
    ("%%flow train\nif fail:\n    raise ValueError('asked to fail')\nscore = round(1 - lr, 6)", None),
    ("jf.record('accuracy', score)", None),
]


def write_sweep_notebook(path):
    """A small parameterised notebook: one %%flow cell, one metric; fails when asked to."""
    return write_notebook(path, NOTEBOOK_CELLS)


@pytest.fixture
def sweep_notebook(tmp_path):
    return write_sweep_notebook(tmp_path / "sweep.ipynb")


def flow(env, *args):
    return subprocess.run([sys.executable, "-m", "jupyter_flow.cli", *args], env=env,
                          capture_output=True, text=True, timeout=600)


def runs(env, *extra):
    out = flow(env, "runs", "--json", "--limit", "100", *extra)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_grid_of_three_then_cached_rerun(sweep_notebook, subprocess_env, tmp_path, flow_home):
    env = dict(subprocess_env, DASK_FLOW__DEFAULT_CLUSTER=subprocess_env["FLOW_TEST_SCHEDULER"])
    grid = tmp_path / "grid.yaml"
    grid.write_text("lr: [0.1, 0.2, 0.3]\n")
    result = flow(env, "batch", str(sweep_notebook), "--grid", str(grid), "--parallel", "2",
                  "--cluster", env["FLOW_TEST_SCHEDULER"], "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "SUCCESS"
    # Not silent while it runs: a line as each execution starts and ends (issue 17 point 9).
    progress = result.stderr.splitlines()
    for lr in (0.1, 0.2, 0.3):
        assert any(line.endswith(f"lr={lr!r}: running") for line in progress), progress
        assert any(f"lr={lr!r}: SUCCESS in " in line and "· ran 1 · cached 0 · failed 0" in line
                   for line in progress), progress
    executions = summary["executions"]
    assert sorted(e["lr"] for e in executions) == [0.1, 0.2, 0.3]
    assert sorted(e["accuracy"] for e in executions) == [0.7, 0.8, 0.9]

    from jupyter_flow.artifacts import artifact_store
    from jupyter_flow.store import Store

    store = Store()
    notebook_runs = store.list_runs(parent_id=summary["batch"])
    assert len(notebook_runs) == 3 and {r["kind"] for r in notebook_runs} == {"notebook"}
    for run in notebook_runs:
        assert run["status"] == "SUCCESS" and run["metrics"]["accuracy"] == pytest.approx(1 - run["params"]["lr"])
        executed = nbformat.reads(artifact_store(None).get(run["outputs"]["output_notebook"]).decode(), 4)
        assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
        cells = store.list_runs(parent_id=run["id"])
        assert [c["kind"] for c in cells] == ["cell"]
        (task,) = store.get_tasks(cells[0]["id"])
        assert task["status"] == "SUCCESS"
        # Its prompt counts in the executed copy (papermill's injected cell included), and
        # says so: the source notebook's own prompts differ (issue 17 point 8).
        (train_cell,) = [c for c in executed.cells if c.source.startswith("%%flow train")]
        assert task["provenance"]["cell_index"] == train_cell.execution_count
        assert task["provenance"]["executed_copy"] is True

    again = flow(env, "batch", str(sweep_notebook), "--grid", str(grid), "--parallel", "2",
                 "--cluster", env["FLOW_TEST_SCHEDULER"], "--json")
    assert again.returncode == 0
    assert "· ran 0 · cached 1 · failed 0" in again.stderr
    again = json.loads(again.stdout)
    assert again["status"] == "SUCCESS"
    for run in store.list_runs(parent_id=again["batch"]):
        (cell,) = store.list_runs(parent_id=run["id"])
        assert [t["status"] for t in store.get_tasks(cell["id"])] == ["CACHED"]

    compared = json.loads(flow(env, "compare", summary["batch"], "--sort", "accuracy", "--desc", "--json").stdout)
    assert [row["lr"] for row in compared] == [0.1, 0.2, 0.3]


def test_failing_execution_fails_its_run_and_the_batch(sweep_notebook, subprocess_env, tmp_path):
    env = dict(subprocess_env, DASK_FLOW__DEFAULT_CLUSTER=subprocess_env["FLOW_TEST_SCHEDULER"])
    grid = tmp_path / "grid.yaml"
    grid.write_text("fail: [false, true]\n")
    result = flow(env, "batch", str(sweep_notebook), "--grid", str(grid), "-p", "lr", "0.5", "--parallel", "2",
                  "--cluster", env["FLOW_TEST_SCHEDULER"], "--json")
    assert result.returncode == 1
    summary = json.loads(result.stdout)
    assert summary["status"] == "FAILED" and summary["error"] == "1 of 2 executions failed"
    by_fail = {r["params"]["fail"]: r for r in runs(env, "--parent", summary["batch"])}
    assert by_fail[False]["status"] == "SUCCESS"
    assert by_fail[True]["status"] == "FAILED"
    assert "cell 2" in by_fail[True]["error"] and "asked to fail" in by_fail[True]["error"]


@pytest.mark.parametrize("args, message", [
    (["missing.ipynb"], "not found"),
    (["{nb}", "-p", "momentum", "0.9"], "unknown parameter"),
    (["{nb}", "--grid", "{bad}"], "not valid YAML"),
    (["{nb}", "--cluster", "nope"], "unknown cluster profile"),
])
def test_bad_input_is_one_line_and_records_nothing(sweep_notebook, subprocess_env, tmp_path, args, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [0.1, 0.2\n")
    args = [a.format(nb=sweep_notebook, bad=bad) for a in args]
    result = flow(subprocess_env, "batch", *args)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert runs(subprocess_env) == []


SHARED_CELLS = [
    ("%load_ext jupyter_flow\nimport jupyter_flow as jf\nimport random, time", None),
    ("lr = 0.1\ncalls = ''", ["parameters"]),
    # Unseeded, and slow enough that all executions ask for it at the same time.
    ("%%flow data\nwith open(calls, 'a') as log:\n    log.write('data\\n')\ntime.sleep(2)\nbase = random.random()",
     None),
    ("%%flow scored\nscore = base * lr", None),
    ("@jf.op\ndef square(x, calls):\n    with open(calls, 'a') as log:\n        log.write('square\\n')\n"
     "    time.sleep(0.5)\n    return x * x\n\n"
     "mapped = jf.run(jf.map(square, [1, 2, 3], calls=calls), name='mapped')\n"
     "jf.record('mapped_sum', sum(mapped.result()))\njf.record('base', base)", None),
]


def test_parallel_batch_computes_shared_ops_once(subprocess_env, tmp_path, flow_home):
    path = write_notebook(tmp_path / "shared.ipynb", SHARED_CELLS)
    calls = tmp_path / "calls.log"
    grid = tmp_path / "grid.yaml"
    grid.write_text("lr: [0.1, 0.2, 0.3]\n")
    env = dict(subprocess_env, DASK_FLOW__DEFAULT_CLUSTER=subprocess_env["FLOW_TEST_SCHEDULER"])
    result = flow(env, "batch", str(path), "--grid", str(grid), "-p", "calls", str(calls), "--parallel", "3",
                  "--cluster", env["FLOW_TEST_SCHEDULER"], "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "SUCCESS"
    lines = calls.read_text().splitlines()
    assert lines.count("data") == 1, lines      # the unseeded upstream ran once for three executions
    assert lines.count("square") == 3, lines    # each mapped item once, not once per execution
    executions = summary["executions"]
    assert len({e["base"] for e in executions}) == 1  # one value for the key everywhere
    assert sorted(e["mapped_sum"] for e in executions) == [14, 14, 14]

    from jupyter_flow.store import Store

    store = Store()
    for run in store.list_runs(parent_id=summary["batch"]):
        children = store.list_runs(parent_id=run["id"])
        # %%flow cells and jf.run calls made inside the notebook nest under its run.
        assert sorted(c["kind"] for c in children) == ["api", "cell", "cell"], children
    data_tasks = [t for r in store.list_runs(limit=100, kind="cell") for t in store.get_tasks(r["id"])
                  if t["name"] == "data"]
    # Three data cells and three scored cells (data upstream): one execution in all.
    assert sorted(t["status"] for t in data_tasks) == ["CACHED"] * 5 + ["SUCCESS"]
    assert len({t["outputs"]["base"] for t in data_tasks}) == 1
