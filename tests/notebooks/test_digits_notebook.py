"""The scikit-learn digits example ported to %%flow cells (notebooks/07): interactive twice, then a batch."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.outputs import images, marks, shown

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "07-digits-classification.ipynb"
FLOW_CELLS = ["digits", "classify", "predictions", "report", "confusion", "rebuilt"]


@pytest.fixture
def digits_notebook(tmp_path):
    path = tmp_path / NOTEBOOK.name
    shutil.copy(NOTEBOOK, path)
    return path


def _execute(path: Path, env: dict) -> nbformat.NotebookNode:
    """One interactive execution in a fresh kernel, as JupyterLab would run all cells."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.km = client.create_kernel_manager()
    client.start_new_kernel(env=env, cwd=str(path.parent))
    client.start_new_kernel_client()
    client.execute(cleanup_kc=True)
    return nb


def _flow_cells(nb) -> dict:
    return {c.source.split()[1]: c for c in nb.cells if c.cell_type == "code" and c.source.startswith("%%flow")}


def test_the_notebook_reruns_from_the_cache_and_shows_the_same_outputs(digits_notebook, subprocess_env):
    env = dict(subprocess_env, DASK_FLOW__DEFAULT_CLUSTER=subprocess_env["FLOW_TEST_SCHEDULER"],
               JPY_SESSION_NAME=str(digits_notebook))
    first = _execute(digits_notebook, env)
    cells = _flow_cells(first)
    assert list(cells) == FLOW_CELLS
    # What the original example shows, cell by cell: its three figures, its prints.
    assert [len(images(cells[name])) for name in FLOW_CELLS] == [1, 0, 1, 0, 1, 0]
    assert "Classification report for classifier SVC(gamma=0.001)" in shown(cells["report"])[0][1]
    assert shown(cells["confusion"])[0][1].startswith("Confusion matrix:\n[[87")
    assert "rebuilt from confusion matrix" in shown(cells["rebuilt"])[0][1]
    everything = json.dumps([c.get("outputs", []) for c in first.cells])
    assert "Traceback" not in everything and "Compute Failed" not in everything

    second = _execute(digits_notebook, env)
    again = _flow_cells(second)
    for name in FLOW_CELLS:
        assert shown(again[name]) == shown(cells[name]), name
    assert [len(marks(again[name])) for name in FLOW_CELLS] == [1, 0, 1, 1, 1, 1]  # cells that show something
    last = [c for c in second.cells if c.cell_type == "code"][-1]
    assert shown(last) == shown([c for c in first.cells if c.cell_type == "code"][-1])

    from jupyter_flow.store import Store

    store = Store()
    first_run, second_run = reversed(store.list_runs(kind="notebook"))
    assert first_run["notebook"] == second_run["notebook"] == str(digits_notebook)
    assert first_run["metrics"] == second_run["metrics"]
    assert set(first_run["metrics"]) == {"accuracy", "f1_macro"} and first_run["metrics"]["accuracy"] > 0.95
    cell_runs = store.list_runs(parent_id=second_run["id"], limit=100)
    assert {t["status"] for r in cell_runs for t in store.get_tasks(r["id"])} == {"CACHED"}
    assert first_run["params"] == {"gamma": 0.001, "test_size": 0.5}


def test_the_notebook_as_a_parallel_batch_compares_its_metrics(jf, digits_notebook, dask_cluster):
    batch = jf.batch(digits_notebook, grid={"gamma": [0.001, 0.0002]}, parallel=2,
                     cluster=dask_cluster.scheduler_address, name="digits-sweep")
    assert batch.status == "SUCCESS", batch.error
    table = jf.compare(batch.id).set_index("gamma")
    assert sorted(table.index) == [0.0002, 0.001]
    assert (table["status"] == "SUCCESS").all()
    assert table.loc[0.001, "accuracy"] > table.loc[0.0002, "accuracy"] > 0.5
    assert table.loc[0.001, "f1_macro"] == pytest.approx(table.loc[0.001, "accuracy"], abs=0.01)

    from jupyter_flow.store import Store

    store = Store()
    for execution in store.list_runs(parent_id=batch.id):
        cells = store.list_runs(parent_id=execution["id"], limit=100)
        assert {c["notebook"] for c in cells} == {str(digits_notebook.resolve())}
    out = subprocess.run([sys.executable, "-m", "jupyter_flow.cli", "compare", batch.id, "--sort", "accuracy"],
                         env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "accuracy" in out.stdout and "f1_macro" in out.stdout
