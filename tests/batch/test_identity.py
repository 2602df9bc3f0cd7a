"""Whose runs: the Jupyter (hub) user owns them, the OS user stays in provenance (issue 21
point 1) — through a kernel's batch executions, the Python API and the CLI."""

from __future__ import annotations

import json

from jupyter_flow.core.provenance import current_user
from tests.batch.test_batch import flow, runs, write_sweep_notebook


def test_a_hub_users_batch_and_its_kernels_runs_are_that_users(subprocess_env, tmp_path, flow_home):
    """A batch started by hub user ana (JUPYTERHUB_USER, as JupyterHub sets it in her server
    and kernels): the batch, its executions and the cell runs inside their kernels all belong
    to ana, with the OS user recorded as who ran them; listing by owner finds them."""
    notebook = write_sweep_notebook(tmp_path / "sweep.ipynb")
    env = dict(subprocess_env, JUPYTERHUB_USER="ana", DASK_FLOW__DEFAULT_CLUSTER=subprocess_env["FLOW_TEST_SCHEDULER"])
    env.pop("JUPYTER_FLOW_USER", None)
    result = flow(env, "batch", str(notebook), "-p", "lr", "0.3", "--cluster", env["FLOW_TEST_SCHEDULER"], "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    everything = runs(env)
    kinds = sorted(r["kind"] for r in everything)
    assert kinds == ["batch", "cell", "notebook"], everything
    assert {(r["owner"], r["user"]) for r in everything} == {("ana", current_user())}
    assert len(runs(env, "--mine")) == 3 and len(runs(env, "--owner", "ana")) == 3
    assert runs(env, "--owner", "bo") == []

    # Another hub user on the same store (and OS account) sees ana's runs only by asking
    # for them; "mine" are none.
    bo = dict(env, JUPYTERHUB_USER="bo")
    assert runs(bo, "--mine") == []
    table = flow(bo, "runs")
    assert table.returncode == 0 and "OWNER" in table.stdout and " ana " in table.stdout
    listed = flow(bo, "runs", "--json", "--owner", "me")
    assert json.loads(listed.stdout) == []


def test_python_runs_belong_to_jupyter_flow_user_when_the_server_sets_it(jf, monkeypatch):
    """JUPYTER_FLOW_USER (set for what a server starts) wins over the hub and the OS user."""
    from tests.engine import ops

    monkeypatch.setenv("JUPYTERHUB_USER", "hub-name")
    monkeypatch.setenv("JUPYTER_FLOW_USER", "cy")
    run = jf.run(ops.add(1, 2), name="mine")
    assert run.result() == 3
    assert [r.id for r in jf.runs(owner="me")] == [run.id]
    assert [r.id for r in jf.runs(owner="cy")] == [run.id]
    assert jf.runs(owner="hub-name") == []
    stored = jf.get_run(run.id)
    assert stored.owner == "cy" and stored.user == current_user()
    # The value's cache entry records whose run produced it.
    from jupyter_flow.store import Store

    (task,) = stored.tasks
    assert [e.owner for e in Store().lookup_cache([task.key]).values()] == ["cy"]
