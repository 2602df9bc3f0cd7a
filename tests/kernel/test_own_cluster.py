"""A kernel that starts its own local cluster, as a new user's notebook does."""

from __future__ import annotations

import pytest

from .conftest import NotebookKernel, error_of, kernel_env, text_of


@pytest.fixture(scope="module")
def own_kernel(tmp_path_factory):
    home = tmp_path_factory.mktemp("flow-home")
    work = tmp_path_factory.mktemp("notebook")
    env = kernel_env(home, "unused", DASK_FLOW__CLUSTERS__LOCAL__KWARGS__N_WORKERS="1",
                     DASK_FLOW__CLUSTERS__LOCAL__KWARGS__THREADS_PER_WORKER="2")
    env.pop("DASK_FLOW__DEFAULT_CLUSTER")  # the default profile: a LocalCluster inside the kernel
    nk = NotebookKernel(env, str(work))
    try:
        nk.ok("%load_ext jupyter_flow\nimport jupyter_flow as jf")
        yield nk
    finally:
        nk.close()


def test_a_refused_first_cell_records_nothing(own_kernel):
    # The kernel's notebook run is made for its first submission; a refused one leaves no trace.
    cell = own_kernel.run("%%flow refused --cluster nope\nx = 1")
    assert error_of(cell)["ename"] == "FlowError" and "unknown cluster profile" in error_of(cell)["evalue"]
    assert own_kernel.value("[r.kind for r in jf.runs()]") == []


def test_worker_processes_of_the_kernel_plot_and_fail_like_cells(own_kernel):
    # Workers started by the kernel inherit its inline matplotlib backend; plt.show() on them
    # must still show the figure in the cell, once.
    cell = own_kernel.run("%%flow plot\nimport matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()\nok = 1",
                          timeout=240)
    assert error_of(cell) is None, text_of(cell)
    assert sum("image/png" in o.get("data", {}) for o in cell.outputs) == 1
    cell = own_kernel.run("%%flow broken\nvalue = {}['missing']", timeout=120)
    assert error_of(cell)["ename"] == "KeyError"
    everything = text_of(cell)
    # Dask's worker logs reach the cell through the kernel's output pipes; its raw
    # "Compute Failed" report of our failing task must not be among them.
    assert "Compute Failed" not in everything and "distributed.worker" not in everything
    assert "Cell 'broken', line 2" in everything
    # The worker never logged it (a log line may otherwise reach a later cell).
    logs = own_kernel.value("[msg for worker in __import__('jupyter_flow.engine.cluster', fromlist=['x'])"
                            ".connect(None).client.get_worker_logs().values() for _, msg in worker]")
    assert logs and not [line for line in logs if "Compute Failed" in line]
