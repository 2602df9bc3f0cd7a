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
    logs = own_kernel.value("[msg for worker in __import__('jupyter_flow.deploy.cluster', fromlist=['x'])"
                            ".connect(None).client.get_worker_logs().values() for _, msg in worker]")
    assert logs and not [line for line in logs if "Compute Failed" in line]


def test_an_interrupted_cell_says_one_line_and_the_next_cell_runs_at_once(own_kernel):
    # What a person does: a %%flow cell takes too long, they press Interrupt (Jupyter sends
    # SIGINT to the kernel's whole process group, the kernel's own worker processes included),
    # then run the next cell.
    own_kernel.ok("%%flow warm_up\nwarm = 1", timeout=240)
    workers = "len(jf.deploy.cluster.connect(None).client.scheduler_info()['workers'])"
    own_kernel.ok("import jupyter_flow.deploy.cluster")
    assert own_kernel.value(workers) == 1
    cell = own_kernel.run("%%flow sleepy\nimport time\ntime.sleep(90)\nslept = 1", timeout=8)  # nbclient interrupts
    error = error_of(cell)
    assert error is not None and error["ename"] == "KeyboardInterrupt", text_of(cell)
    shown = text_of(cell)
    assert "canceled" in error["evalue"] and len(error["traceback"]) <= 2, shown
    assert "magics.py" not in shown and "threading.py" not in shown and shown.count("KeyboardInterrupt") == 1, shown
    state = "[(t.name, t.status) for t in __import__('jupyter_flow.kernel.magics', fromlist=['x']).last_run().tasks]"
    assert own_kernel.value(state) == [["sleepy", "CANCELED"]]
    # The cluster is intact: the next cell runs at once, on a worker that is not busy.
    cell = own_kernel.run("%%flow after_interrupt\nafter = 2", timeout=60)
    assert error_of(cell) is None, text_of(cell)
    assert own_kernel.value("after") == 2
    assert own_kernel.value(workers) == 1
    assert "KeyboardInterrupt" not in text_of(cell)


def test_restarting_or_shutting_down_the_kernel_ends_its_notebook_run_normally(tmp_path):
    # Restart Kernel, then close the notebook (shut the kernel down): neither is a loss.
    from jupyter_core.utils import run_sync

    from jupyter_flow.store import Store

    home = tmp_path / "flow-home"
    env = kernel_env(home, "unused", DASK_FLOW__CLUSTERS__LOCAL__KWARGS__N_WORKERS="1",
                     DASK_FLOW__CLUSTERS__LOCAL__KWARGS__THREADS_PER_WORKER="1",
                     JUPYTER_FLOW_KEYS=str(tmp_path / "keys"))
    env.pop("DASK_FLOW__DEFAULT_CLUSTER")
    nk = NotebookKernel(env, str(tmp_path))
    store = None
    try:
        nk.ok("%load_ext jupyter_flow\nimport jupyter_flow as jf")
        nk.ok("%%flow before_restart\nx = 1", timeout=240)
        store = Store(f"sqlite:///{home}/flow.db")

        def notebook_runs():
            return [r["status"] for r in store.list_runs(limit=20) if r["kind"] == "notebook"]

        assert notebook_runs() == ["RUNNING"]
        run_sync(nk.client.km.restart_kernel)(now=False)  # what JupyterLab's Restart Kernel does
        assert notebook_runs() == ["SUCCESS"]  # not left RUNNING for the reconciler to call LOST
        run_sync(nk.client.kc.wait_for_ready)(timeout=60)
        nk.ok("%load_ext jupyter_flow\nimport jupyter_flow as jf")
        nk.ok("%%flow after_restart\ny = 2", timeout=240)
        assert sorted(notebook_runs()) == ["RUNNING", "SUCCESS"]
    finally:
        nk.close()  # a graceful shutdown, as closing the notebook's kernel does
    assert notebook_runs() == ["SUCCESS", "SUCCESS"]
    store.close()
