"""Cluster profiles: a cluster is built from ``module``/``class``/``kwargs``/``adapt`` in
dask config under ``flow.clusters.<name>``, so a new kind of cluster needs no code.
"""

from __future__ import annotations

import atexit
import importlib
import threading
from dataclasses import dataclass, field
from typing import Any

import dask.config

from ..core.errors import FlowError

BUILTIN_PROFILES: dict[str, dict] = {
    "local": {
        "module": "distributed",
        "class": "LocalCluster",
        # Bound to loopback: nobody else on the network can submit work to it.
        "kwargs": {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0", "processes": True},
    },
}


def profiles() -> dict[str, dict]:
    """Built-in profiles merged with the user's ``flow.clusters`` dask config."""
    merged = {name: dict(spec) for name, spec in BUILTIN_PROFILES.items()}
    user = dask.config.get("flow.clusters", default={}) or {}
    for name, spec in user.items():
        base = merged.get(name, {})
        combined = {**base, **(spec or {})}
        combined["kwargs"] = {**base.get("kwargs", {}), **((spec or {}).get("kwargs") or {})}
        merged[name] = combined
    return merged


def default_profile() -> str:
    return dask.config.get("flow.default-cluster", default=None) or "local"


@dataclass
class ClusterHandle:
    """A connected cluster: its profile name (or address), the Dask client and cluster."""

    name: str
    client: Any
    cluster: Any = None
    owned: bool = True
    kwargs: dict = field(default_factory=dict)

    @property
    def address(self) -> str:
        return self.client.scheduler.address

    @property
    def dashboard_link(self) -> str | None:
        try:
            return self.client.dashboard_link
        except Exception:  # no dashboard (e.g. bokeh missing): there is simply no link
            return None

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.cluster is not None and self.owned:
                self.cluster.close()


_handles: dict[tuple, ClusterHandle] = {}
_lock = threading.Lock()
_current: list[str | None] = [None]


def _freeze(kwargs: dict) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in kwargs.items()))


def connect(target: str | None = None, **overrides: Any) -> ClusterHandle:
    """Get (creating on first use, then reusing) the cluster for a profile or address.

    >>> handle = connect("local", n_workers=1)          # doctest: +SKIP
    >>> handle = connect("tcp://10.0.0.5:8786")          # an existing scheduler  # doctest: +SKIP
    """
    name = target or _current[0] or default_profile()
    key = (name, _freeze(overrides))
    with _lock:
        handle = _handles.get(key)
        if handle is not None and handle.client.status in ("running", "connecting"):
            return handle
        handle = _start(name, overrides)
        _handles[key] = handle
        return handle


def use(target: str | None, **overrides: Any) -> ClusterHandle:
    """Make ``target`` this process's default cluster and connect to it."""
    handle = connect(target, **overrides)
    _current[0] = target
    return handle


def _start(name: str, overrides: dict) -> ClusterHandle:
    from distributed import Client

    if "://" in name:
        try:
            client = Client(name, timeout="10s", set_as_default=False)
        except OSError as err:
            raise FlowError(f"cannot reach the Dask scheduler at {name}: {err}") from None
        return ClusterHandle(name=name, client=client, owned=False)
    specs = profiles()
    if name not in specs:
        raise FlowError(
            f"unknown cluster profile {name!r}; known profiles: {sorted(specs)}. "
            "Define it in dask config under flow.clusters."
        )
    spec = specs[name]
    try:
        module = importlib.import_module(spec["module"])
        cls = getattr(module, spec["class"])
    except (KeyError, ImportError, AttributeError) as err:
        raise FlowError(
            f"cluster profile {name!r}: cannot load {spec.get('module')}.{spec.get('class')} ({err}); "
            "install the package it needs or fix flow.clusters in dask config"
        ) from None
    kwargs = {**spec.get("kwargs", {}), **overrides}
    try:
        cluster = cls(**kwargs)
    except TypeError as err:
        raise FlowError(f"cluster profile {name!r}: bad settings for {spec['class']}: {err}") from None
    adapt = spec.get("adapt")
    if adapt:
        cluster.adapt(**adapt)
    client = Client(cluster, set_as_default=False)
    return ClusterHandle(name=name, client=client, cluster=cluster, kwargs=kwargs)


def close_all() -> None:
    with _lock:
        handles = list(_handles.values())
        _handles.clear()
    for handle in handles:
        try:
            handle.close()
        except Exception:  # closing at exit: a cluster that is already gone is fine
            pass


atexit.register(close_all)
