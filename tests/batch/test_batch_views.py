"""What a person sees of a finished batch from the CLI: the parent rows count the ops their
children ran, and `jupyter flow show BATCH` lists its executions (params, status, metrics)."""

import json

from tests.batch.test_batch import flow, runs, write_sweep_notebook


def test_batch_rows_roll_up_and_show_lists_executions(tmp_path, subprocess_env):
    env = dict(subprocess_env, DASK_FLOW__DEFAULT_CLUSTER=subprocess_env["FLOW_TEST_SCHEDULER"])
    notebook = write_sweep_notebook(tmp_path / "sweep.ipynb")
    grid = tmp_path / "grid.yaml"
    grid.write_text("lr: [0.1, 0.2]\n")
    result = flow(env, "batch", str(notebook), "--grid", str(grid), "--parallel", "2",
                  "--cluster", env["FLOW_TEST_SCHEDULER"], "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    batch = json.loads(result.stdout)["batch"]

    # Each execution ran one op (`train`) in one cell run: the batch row counts both.
    listed = {run["id"]: run for run in runs(env)}
    assert listed[batch]["task_counts"] == {"SUCCESS": 2}
    executions = runs(env, "--parent", batch)
    assert [run["task_counts"] for run in executions] == [{"SUCCESS": 1}] * 2

    shown = flow(env, "show", batch)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "2 executions" in lines, shown.stdout
    header = next(line for line in lines if line.startswith("RUN "))
    assert header.split()[:4] == ["RUN", "STATUS", "lr", "accuracy"], header
    rows = {line.split()[0]: line.split() for line in lines if line.split() and line.split()[0] in
            {run["id"] for run in executions}}
    assert len(rows) == 2, shown.stdout
    assert sorted((row[1], row[2], row[3]) for row in rows.values()) == [
        ("SUCCESS", "0.1", "0.9"), ("SUCCESS", "0.2", "0.8")]
    assert all(row[-2] == "1/0/0" for row in rows.values())

    # A notebook run lists its cell runs, which count their op.
    shown = flow(env, "show", executions[0]["id"]).stdout
    assert "1 child run" in shown and " cell " in shown and "1/0/0" in shown, shown
