"""Cluster profiles: a cluster is built from ``module``/``class``/``kwargs``/``adapt`` in
dask config under ``flow.clusters.<name>``, so a new kind of cluster needs no code.

This module turns a profile name (and a user's overrides) into the cluster class and the
keyword arguments it is built with; ``cluster.py`` starts, reuses and closes the clusters.
"""

from __future__ import annotations

import importlib
from typing import Any

import dask.config

from ..core.errors import FlowError
from . import pools as pool_lib

# Profile keys other than ``kwargs``: ``module``/``class`` name the cluster class,
# ``adapt`` its Cluster.adapt() arguments, ``gpus`` the GPUs each Slurm job asks for and
# its workers declare, ``pools`` several job shapes on one scheduler (deploy/pools.py),
# ``package`` what to pip install when the module is missing.
BUILTIN_PROFILES: dict[str, dict] = {
    "local": {
        "module": "distributed",
        "class": "LocalCluster",
        # Bound to loopback: nobody else on the network can submit work to it.
        "kwargs": {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0", "processes": True},
    },
    # One small job per worker; the scheduler binds this host's primary address (see
    # _scheduler_host) unless `interface` or `scheduler_options.host` says otherwise.
    "slurm": {
        "module": "dask_jobqueue",
        "class": "SLURMCluster",
        "package": "dask-jobqueue",
        "kwargs": {"cores": 1, "processes": 1, "memory": "4GB", "walltime": "01:00:00"},
        "adapt": {"minimum": 0, "maximum": 10},
    },
    # Every job has `gpus` GPUs and its worker declares GPU=<gpus>: a run's GPU ops and
    # its CPU ops both run on these jobs (one job shape). `slurm-pools` keeps them apart.
    "slurm-gpu": {
        "module": "dask_jobqueue",
        "class": "SLURMCluster",
        "package": "dask-jobqueue",
        "gpus": 1,
        "kwargs": {"cores": 4, "processes": 1, "memory": "16GB", "walltime": "01:00:00"},
        "adapt": {"minimum": 0, "maximum": 4},
    },
    # Two job shapes on one scheduler: each task goes to the smallest pool that fits its
    # request, so CPU ops run on small CPU jobs and only GPU ops on GPU jobs; each pool
    # starts jobs while its tasks need them (docs/clusters.md, "Worker pools").
    "slurm-pools": {
        "module": "dask_jobqueue",
        "class": "SLURMCluster",
        "package": "dask-jobqueue",
        "kwargs": {"processes": 1, "walltime": "01:00:00"},
        "pools": {
            "cpu": {"cores": 1, "memory": "4GB", "maximum": 10},
            "gpu": {"cores": 4, "memory": "16GB", "gpus": 1, "maximum": 2},
        },
        "adapt": {"interval": "1s", "wait_count": 3},
    },
    # One worker per visible GPU, each declaring GPU=1 so `resources={"GPU": 1}` ops run.
    "cuda": {
        "module": "dask_cuda",
        "class": "LocalCUDACluster",
        "package": "dask-cuda",
        "kwargs": {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0", "resources": {"GPU": 1}},
    },
    "gateway": {
        "module": "dask_gateway",
        "class": "GatewayCluster",
        "package": "dask-gateway",
        "kwargs": {},
        "adapt": {"minimum": 0, "maximum": 10},
    },
}

# Overrides that configure the profile rather than the cluster class.
PROFILE_KEYS = ("adapt", "gpus", "pools")


def profiles() -> dict[str, dict]:
    """Built-in profiles merged with the user's ``flow.clusters`` dask config.

    A user entry overrides a built-in one key by key, ``kwargs``/``adapt`` entry by
    entry and ``pools`` pool by pool and key by key, so ``flow.clusters.slurm.kwargs.cores: 4``
    keeps every other slurm setting.

    >>> profiles()["slurm"]["class"]
    'SLURMCluster'
    """
    merged = {name: dict(spec) for name, spec in BUILTIN_PROFILES.items()}
    user = dask.config.get("flow.clusters", default={}) or {}
    for name, spec in user.items():
        spec = spec or {}
        if name not in merged and str(name).replace("_", "-") in merged:
            # DASK_FLOW__CLUSTERS__SLURM_POOLS__… spells a built-in name with "_"
            name = str(name).replace("_", "-")
        base = merged.get(name, {})
        combined = {**base, **spec}
        combined["kwargs"] = {**(base.get("kwargs") or {}), **(spec.get("kwargs") or {})}
        if isinstance(base.get("adapt"), dict) and isinstance(spec.get("adapt"), dict):
            combined["adapt"] = {**base["adapt"], **spec["adapt"]}
        if "pools" in spec:
            combined["pools"] = pool_lib.merge(base.get("pools"), spec["pools"])
        merged[name] = combined
    return merged


def default_profile() -> str:
    return dask.config.get("flow.default-cluster", default=None) or "local"


def load_class(name: str, spec: dict):
    """The cluster class a profile names (FlowError saying what to install or fix)."""
    module_name, class_name = spec.get("module"), spec.get("class")
    try:
        module = importlib.import_module(module_name)  # type: ignore[arg-type]  # None: TypeError below
    except ImportError as err:
        package = spec.get("package") or str(module_name).split(".")[0]
        raise FlowError(
            f"cluster profile {name!r} needs the {package} package, which is not installed "
            f"({err}); install it with `pip install {package}` or choose another profile"
        ) from None
    except (TypeError, ValueError) as err:
        raise FlowError(f"cluster profile {name!r} has no valid module ({module_name!r}: {err}); "
                        "fix flow.clusters in dask config") from None
    try:
        return getattr(module, class_name)  # type: ignore[arg-type]  # None: TypeError below
    except (TypeError, AttributeError):
        raise FlowError(
            f"cluster profile {name!r}: {module_name} has no class {class_name!r}; fix flow.clusters in dask config"
        ) from None


def cluster_kwargs(name: str, _bind: bool = True, **overrides: Any) -> tuple[dict, Any]:
    """The keyword arguments and adapt settings a profile's cluster is built with.

    Profile-level settings (``adapt``, ``gpus``) may be overridden too.

    >>> kwargs, adapt = cluster_kwargs("slurm-gpu", gpus=2)    # doctest: +SKIP
    >>> kwargs["job_extra_directives"], adapt                  # doctest: +SKIP
    (['--gres=gpu:2'], {'minimum': 0, 'maximum': 4})
    """
    specs = profiles()
    if name not in specs:
        raise FlowError(
            f"unknown cluster profile {name!r}; known profiles: {sorted(specs)}. "
            "Define it in dask config under flow.clusters."
        )
    spec = specs[name]
    profile = {key: overrides.pop(key, spec.get(key)) for key in PROFILE_KEYS}
    if "pools" in profile and spec.get("pools") is not None and profile["pools"] is not spec.get("pools"):
        profile["pools"] = pool_lib.merge(spec["pools"], profile["pools"])
    kwargs = {**(spec.get("kwargs") or {}), **overrides}
    if profile["pools"]:
        if profile["gpus"]:
            raise FlowError(f"cluster profile {name!r} has pools: give GPUs per pool (pools.<name>.gpus), "
                            "not with the profile's gpus")
        kwargs["pools"] = _with_bounds(profile["pools"], profile["adapt"])
        kwargs["profile"] = name
    elif profile["gpus"]:
        kwargs = _with_gpus(kwargs, int(profile["gpus"]))
    if spec.get("module") == "dask_jobqueue" and _bind:
        kwargs = _with_scheduler_host(kwargs)
    adapt = profile["adapt"]
    return kwargs, (dict(adapt) if isinstance(adapt, dict) else adapt)


def _with_bounds(pools: dict, adapt: Any) -> dict:
    """Pools without their own ``minimum``/``maximum`` take the profile's ``adapt`` ones."""
    if not isinstance(pools, dict) or not isinstance(adapt, dict):
        return pools
    bounds = {k: adapt[k] for k in ("minimum", "maximum") if k in adapt}
    return {name: ({**bounds, **entry} if isinstance(entry, dict) else entry) for name, entry in pools.items()}


def _with_gpus(kwargs: dict, gpus: int) -> dict:
    """Ask Slurm for ``gpus`` GPUs per job and have the job's worker declare them."""
    directives = list(kwargs.get("job_extra_directives") or [])
    if not any("--gres" in d or "--gpus" in d for d in directives):
        directives.append(f"--gres=gpu:{gpus}")
    worker_args = list(kwargs.get("worker_extra_args") or [])
    if "--resources" not in worker_args:
        worker_args += ["--resources", f"GPU={gpus}"]
    return {**kwargs, "job_extra_directives": directives, "worker_extra_args": worker_args}


def _with_scheduler_host(kwargs: dict) -> dict:
    """Bind the scheduler to an address compute nodes can reach.

    dask-jobqueue binds the workers' ``interface`` when one is given; otherwise the
    scheduler would listen on whatever Dask picks, so use this host's primary address
    (the one its default route leaves from), not loopback.
    """
    options = dict(kwargs.get("scheduler_options") or {})
    if kwargs.get("interface") or options.get("host") or options.get("interface"):
        return kwargs
    from distributed.utils import get_ip

    options["host"] = get_ip()
    return {**kwargs, "scheduler_options": options}


def pool_class(name: str, cls):
    """The cluster class of a profile with pools: a SLURMCluster that runs several job shapes."""
    from dask_jobqueue import SLURMCluster

    if not (isinstance(cls, type) and issubclass(cls, SLURMCluster)):
        raise FlowError(f"cluster profile {name!r} has pools, which need dask_jobqueue.SLURMCluster as its "
                        f"class (it has {getattr(cls, '__name__', cls)!r}); remove pools or use a Slurm profile")
    from .pool_cluster import SlurmPoolCluster

    return SlurmPoolCluster
