"""The Slurm and GPU notebooks execute in the modes this machine supports."""

from __future__ import annotations

from pathlib import Path

import nbformat
import yaml
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


def test_the_resources_notebook_places_tasks_in_slurm_pools(flow_home, slurm, tmp_path, monkeypatch):
    import papermill

    from tests.distributed.conftest import TEST_POOLS, TEST_SLURM

    # Site settings as a user's flow.yaml gives them (the kernel reads them from dask config).
    kwargs = {k: v for k, v in TEST_SLURM["kwargs"].items() if k not in ("cores", "memory")}
    config = {"flow": {"clusters": {"slurm-pools": {**TEST_POOLS, "kwargs": {**kwargs, "log_directory": str(slurm)}}}}}
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "flow.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("DASK_CONFIG", str(tmp_path / "config"))
    output = tmp_path / "out.ipynb"
    papermill.execute_notebook(str(NOTEBOOKS / "08-resources-and-pools.ipynb"), str(output), kernel_name="python3",
                               parameters={"profile": "slurm-pools"}, cwd=str(tmp_path), progress_bar=False)
    text = _outputs(nbformat.read(output, as_version=4))
    assert "('SUCCESS', '6 samples, score" in text
    assert "('train', 'gpu'," in text and "('simulate', 'cpu'," in text
    assert "refused: op 'too_big' asks for cores=512, memory=4TB" in text
