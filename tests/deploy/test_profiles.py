"""Cluster profiles from dask config (deploy/profiles.py): what a profile that cannot be
built says before anything starts."""

from __future__ import annotations

import dask
import pytest

import jupyter_flow as jf
from jupyter_flow.deploy import profiles


@pytest.fixture(autouse=True)
def builtin_profiles_only():
    """The built-in profiles as shipped, whatever site settings this session has set."""
    with dask.config.set({"flow.clusters": {}}):
        yield


def test_a_profile_whose_package_is_missing_says_what_to_install():
    spec = {"module": "no_such_cluster_package", "class": "Cluster", "package": "no-such-cluster"}
    with pytest.raises(jf.FlowError) as info:
        profiles.load_class("mine", spec)
    assert "cluster profile 'mine' needs the no-such-cluster package" in str(info.value)
    assert "pip install no-such-cluster" in str(info.value)


def test_a_profile_naming_a_class_its_module_lacks_says_so():
    with pytest.raises(jf.FlowError, match="cluster profile 'mine': distributed has no class 'Nope'"):
        profiles.load_class("mine", {"module": "distributed", "class": "Nope"})


def test_pools_need_a_slurm_cluster():
    import distributed

    pytest.importorskip("dask_jobqueue")
    with pytest.raises(jf.FlowError, match="has pools, which need dask_jobqueue.SLURMCluster"):
        profiles.pool_class("mine", distributed.LocalCluster)


def test_a_site_profile_overrides_a_builtin_one_key_by_key():
    with dask.config.set({"flow.clusters.slurm.kwargs.cores": 4, "flow.default-cluster": "slurm"}):
        slurm = profiles.profiles()["slurm"]
        default = profiles.default_profile()
    assert slurm["kwargs"]["cores"] == 4 and slurm["kwargs"]["memory"] == "4GB"  # the rest is kept
    assert slurm["class"] == "SLURMCluster" and default == "slurm"


def test_an_unknown_profile_lists_the_known_ones():
    with pytest.raises(jf.FlowError) as info:
        profiles.cluster_kwargs("nowhere")
    assert "unknown cluster profile 'nowhere'" in str(info.value) and "'local'" in str(info.value)
