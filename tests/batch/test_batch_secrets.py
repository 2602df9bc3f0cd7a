"""A batch given a secret parameter (``-p api_token s3cr3t``) stores it nowhere in plain text."""

from __future__ import annotations

import json

import nbformat
import pytest

from tests.planted import files_holding

from tests.notebook_files import write_notebook

from .test_batch import flow, runs

SECRET_CELLS = [
    ("%load_ext jupyter_flow\nimport jupyter_flow as jf", None),
    ("api_token = 'placeholder'\nlr = 0.1", ["parameters"]),
    ("api_token = jf.param('api_token', api_token)\nprint('using token', api_token)", None),
    ("%%flow use_token\nscore = len(api_token) + lr", None),  # captures the secret-named global
    ("jf.record('score', score)", None),
]


def write_secret_notebook(path):
    """A notebook whose ``api_token`` parameter is captured by a %%flow cell and printed."""
    return write_notebook(path, SECRET_CELLS)


@pytest.fixture
def secret_notebook(tmp_path):
    return write_secret_notebook(tmp_path / "secret.ipynb")


def test_secret_parameter_is_stored_nowhere_and_runs_still_resume(jf, secret_notebook, subprocess_env, flow_home):
    env = dict(subprocess_env, DASK_FLOW__DEFAULT_CLUSTER=subprocess_env["FLOW_TEST_SCHEDULER"])
    result = flow(env, "batch", str(secret_notebook), "-p", "api_token", "s3cr3t", "-p", "lr", "0.5",
                  "--cluster", env["FLOW_TEST_SCHEDULER"], "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "s3cr3t" not in result.stdout and "s3cr3t" not in result.stderr
    assert "***" in result.stderr  # the per-execution progress line shows the secret masked
    summary = json.loads(result.stdout)
    assert summary["status"] == "SUCCESS"
    (execution,) = summary["executions"]
    assert execution["score"] == 6.5 and execution["api_token"] == "***"  # the kernel had the value

    assert files_holding(flow_home) == []  # flow.db, its WAL, every artifact (the output notebook too)

    batch_run = jf.get_run(summary["batch"])
    assert batch_run.params["params"] == {"api_token": "***", "lr": 0.5}
    (notebook_run,) = runs(env, "--parent", summary["batch"])
    assert notebook_run["params"] == {"api_token": "***", "lr": 0.5}
    from jupyter_flow.engine.runtime import get_engine

    stored = get_engine().artifacts.get(notebook_run["outputs"]["output_notebook"])
    executed = nbformat.reads(stored.decode(), 4)
    injected = next(c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "api_token = '***'" in injected.source and "lr = 0.5" in injected.source
    assert executed.metadata.papermill.parameters == {"api_token": "***", "lr": 0.5}
    assert "using token ***" in json.dumps(executed.cells[3].outputs)

    (cell_run,) = runs(env, "--parent", notebook_run["id"])
    assert cell_run["params"] == {"api_token": "***"}  # jf.param values recorded with the cell run
    resumed = jf.resume(cell_run["id"])  # the sealed snapshot holds the captured value
    assert resumed.status == "SUCCESS" and resumed.result()[0]["score"] == 6.5


def test_passing_a_redacted_marker_back_fails_clearly(secret_notebook, subprocess_env):
    result = flow(subprocess_env, "batch", str(secret_notebook), "-p", "api_token", "***")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "parameter 'api_token' is secret and was not stored; pass its value again" in lines[0]
    assert runs(subprocess_env) == []
