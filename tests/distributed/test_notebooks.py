"""The Slurm and GPU notebooks execute in the modes this machine supports."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def _execute(name: str, tmp_path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb


def _outputs(nb) -> str:
    return "\n".join(
        str(out.get("data", {}).get("text/plain", "")) + out.get("text", "")
        for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
    )


def test_the_slurm_notebook_runs_on_the_test_slurm(flow_home, slurm, tmp_path, monkeypatch):
    # The kernel reads the site settings from dask config, as a user's flow.yaml would give them.
    monkeypatch.setenv("DASK_FLOW__CLUSTERS__SLURM__KWARGS__INTERFACE", "lo")
    monkeypatch.setenv("DASK_FLOW__CLUSTERS__SLURM__KWARGS__LOG_DIRECTORY", str(slurm))
    monkeypatch.setenv("DASK_FLOW__CLUSTERS__SLURM__KWARGS__SCHEDULER_OPTIONS__DASHBOARD_ADDRESS", "127.0.0.1:0")
    nb = _execute("02-slurm.ipynb", tmp_path)
    text = _outputs(nb)
    assert "('SUCCESS'," in text and "('SUCCESS', True)" in text


def test_the_gpu_notebook_runs_with_a_gpu_declaring_worker(flow_home, tmp_path):
    nb = _execute("03-gpu.ipynb", tmp_path)
    assert "('SUCCESS', 499500.0)" in _outputs(nb)
