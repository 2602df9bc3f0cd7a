"""notebooks/01-quickstart.ipynb runs top to bottom, and papermill parameters reach flow cells."""

from __future__ import annotations

import pathlib

import nbformat

from .conftest import kernel_env

NOTEBOOK = pathlib.Path(__file__).parents[2] / "notebooks" / "01-quickstart.ipynb"


def test_quickstart_runs_under_papermill_with_an_injected_parameter(dask_cluster, tmp_path, monkeypatch):
    import papermill

    env = kernel_env(tmp_path / "flow", dask_cluster.scheduler_address)
    for name in ("JUPYTER_FLOW_HOME", "DASK_FLOW__DEFAULT_CLUSTER"):
        monkeypatch.setenv(name, env[name])
    output = tmp_path / "out.ipynb"
    papermill.execute_notebook(str(NOTEBOOK), str(output), parameters={"top_n": "3"}, cwd=str(tmp_path),
                               kernel_name="python3", progress_bar=False, log_output=False)
    nb = nbformat.read(output, as_version=4)
    text = {i: _text(cell) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"}
    assert not any(o.output_type == "error" for cell in nb.cells for o in cell.get("outputs", []))
    printed = next(t for t in text.values() if "for word, n in" not in t and t.count("\n") == 3 and "  " in t)
    assert len(printed.strip().splitlines()) == 3  # the injected top_n (a string) became the int 3
    graph_run = next(t for source, t in ((c.source, _text(c)) for c in nb.cells if c.cell_type == "code")
                     if source == "%flow run")
    assert "graph: run" in graph_run and graph_run.count("CACHED") == 3 and "SUCCESS" in graph_run
    assert (tmp_path / "zen.txt").exists()


def _text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        elif "text/plain" in output.get("data", {}):
            parts.append(output["data"]["text/plain"] + "\n")
    return "".join(parts)
