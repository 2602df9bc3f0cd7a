"""Shared fixtures: a real Dask LocalCluster for the session and a fresh store per test."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def dask_cluster():
    """One real LocalCluster (worker processes with nannies) shared by the whole session."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=2, host="127.0.0.1",
                           dashboard_address=None, processes=True, memory_limit="4GiB")
    yield cluster
    from jupyter_flow.deploy import cluster as clusters

    clusters.close_all()  # clients first, so none keeps reconnecting to a closed scheduler
    cluster.close()


@pytest.fixture
def flow_home(tmp_path, monkeypatch):
    """A fresh JUPYTER_FLOW_HOME (SQLite file + artifact directory) for one test."""
    home = tmp_path / "flow"
    monkeypatch.setenv("JUPYTER_FLOW_HOME", str(home))
    # This test's user keys (artifacts/keyring.py), not the real user's.
    monkeypatch.setenv("JUPYTER_FLOW_KEYS", str(tmp_path / "keys"))
    monkeypatch.delenv("JUPYTER_FLOW_DB", raising=False)
    monkeypatch.delenv("JUPYTER_FLOW_ARTIFACTS", raising=False)
    monkeypatch.delenv("JUPYTER_FLOW_RUN_ID", raising=False)
    yield home
    from jupyter_flow.engine import runtime

    runtime.shutdown()


@pytest.fixture
def jf(flow_home, dask_cluster):
    """``jupyter_flow`` pointed at the session cluster and a fresh store."""
    import jupyter_flow
    from jupyter_flow.deploy import cluster as clusters

    jupyter_flow.cluster(dask_cluster.scheduler_address)
    yield jupyter_flow
    clusters._current[0] = None


@pytest.fixture
def subprocess_env(flow_home, dask_cluster):
    """Environment for a child Python process using the same store and cluster."""
    env = dict(os.environ)
    env["JUPYTER_FLOW_HOME"] = str(flow_home)
    env["FLOW_TEST_SCHEDULER"] = dask_cluster.scheduler_address
    return env
