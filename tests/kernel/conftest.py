"""Real kernels driven through nbclient, sharing the session's Dask cluster."""

from __future__ import annotations

import json
import os

import nbformat
import pytest
from nbclient import NotebookClient


class NotebookKernel:
    """One live kernel; ``run(source)`` appends a cell to its notebook and executes it."""

    def __init__(self, env: dict, cwd: str):
        self.nb = nbformat.v4.new_notebook()
        self.client = NotebookClient(self.nb, timeout=120, allow_errors=True, kernel_name="python3",
                                     interrupt_on_timeout=True, resources={"metadata": {"path": cwd}})
        self.client.km = self.client.create_kernel_manager()
        self.client.start_new_kernel(env=env, cwd=cwd)
        self.client.start_new_kernel_client()

    def run(self, source: str, timeout: int | None = None):
        cell = nbformat.v4.new_code_cell(source)
        self.nb.cells.append(cell)
        previous = self.client.timeout
        if timeout is not None:
            self.client.timeout = timeout
        try:
            self.client.execute_cell(cell, len(self.nb.cells) - 1)
        finally:
            self.client.timeout = previous
        return cell

    def ok(self, source: str, timeout: int | None = None):
        """Run a cell that must not fail; returns its text."""
        cell = self.run(source, timeout)
        error = error_of(cell)
        assert error is None, f"cell failed: {error['ename']}: {error['evalue']}\n" + "\n".join(error["traceback"])
        return text_of(cell)

    def value(self, expression: str):
        """The JSON value of an expression evaluated in the kernel."""
        out = self.ok(f"import json as _json\nprint('@@' + _json.dumps({expression}, default=str))")
        line = [ln for ln in out.splitlines() if ln.startswith("@@")][-1]
        return json.loads(line[2:])

    def close(self) -> None:
        self.client._cleanup_kernel()


def text_of(cell) -> str:
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif "data" in output and "text/plain" in output["data"]:
            parts.append(output["data"]["text/plain"] + "\n")
        elif output.output_type == "error":
            parts.append("\n".join(output["traceback"]) + "\n")
    return "".join(parts)


def error_of(cell):
    return next((o for o in cell.outputs if o.output_type == "error"), None)


def kernel_env(home, scheduler: str, **extra) -> dict:
    env = dict(os.environ)
    env["JUPYTER_FLOW_HOME"] = str(home)
    env.pop("JUPYTER_FLOW_DB", None)
    env.pop("JUPYTER_FLOW_ARTIFACTS", None)
    env.pop("JUPYTER_FLOW_RUN_ID", None)
    env["FLOW_TEST_SCHEDULER"] = scheduler
    # Runs go to the session's cluster unless a notebook picks another one.
    env["DASK_FLOW__DEFAULT_CLUSTER"] = scheduler
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def kernel(dask_cluster, tmp_path_factory):
    """A kernel with jupyter_flow loaded, on the session cluster and a fresh store."""
    home = tmp_path_factory.mktemp("flow-home")
    work = tmp_path_factory.mktemp("notebook")
    env = kernel_env(home, dask_cluster.scheduler_address, JPY_SESSION_NAME=str(work / "analysis.ipynb"))
    nk = NotebookKernel(env, str(work))
    nk.home = home
    nk.work = work
    try:
        nk.ok("%load_ext jupyter_flow\nimport jupyter_flow as jf\nfrom jupyter_flow.kernel.magics import last_run\n"
              f"%flow cluster {dask_cluster.scheduler_address}")
        yield nk
    finally:
        nk.close()
