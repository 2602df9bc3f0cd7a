"""Notebooks executed by papermill and nbconvert: their runs know the notebook, and jf.record works."""

import subprocess
import sys

import nbformat
import pytest

from tests.notebook_files import write_notebook

CELLS = [
    "%load_ext jupyter_flow\nimport jupyter_flow as jf",
    "%%flow roots\nimport math\nroot = math.sqrt(16)\njf.record('root', root)\nprint('root is', root)",
    "jf.record('checked', math.pi > 3)  # math was imported by the flow cell",
]


def _notebook(path):
    return write_notebook(path, [(source, None) for source in CELLS])


@pytest.mark.parametrize("tool", ["papermill", "nbconvert"])
def test_cli_execution_records_the_notebook_and_its_metrics(tool, subprocess_env, tmp_path):
    env = dict(subprocess_env, DASK_FLOW__DEFAULT_CLUSTER=subprocess_env["FLOW_TEST_SCHEDULER"])
    env.pop("JPY_SESSION_NAME", None)
    source = _notebook(tmp_path / "roots.ipynb")
    output = tmp_path / "executed.ipynb"
    if tool == "papermill":
        command = [sys.executable, "-m", "papermill", str(source), str(output), "--no-progress-bar", "-k", "python3"]
    else:
        command = [sys.executable, "-m", "nbconvert", "--to", "notebook", "--execute", "roots.ipynb",
                   "--output", output.name]
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    executed = nbformat.read(output, as_version=4)
    assert "root is 4.0" in "".join(o.get("text", "") for o in executed.cells[1].outputs)

    from jupyter_flow.store import Store

    store = Store()
    (notebook_run,) = store.list_runs(kind="notebook")
    assert notebook_run["notebook"] == str(source.resolve())
    assert notebook_run["metrics"] == {"root": 4.0, "checked": True}
    assert notebook_run["status"] == "SUCCESS"  # ended with its kernel
    (cell_run,) = store.list_runs(kind="cell")
    assert cell_run["parent_id"] == notebook_run["id"] and cell_run["notebook"] == str(source.resolve())
    (task,) = store.get_tasks(cell_run["id"])
    assert task["metrics"] == {"root": 4.0} and task["provenance"]["notebook"] == str(source.resolve())
