"""Where the store and artifacts live: explicit argument > environment > traitlets > default."""

from __future__ import annotations

import os
from pathlib import Path


def flow_home() -> Path:
    """``JUPYTER_FLOW_HOME``, else ``jupyter_data_dir()/flow``."""
    env = os.environ.get("JUPYTER_FLOW_HOME")
    if env:
        return Path(env).expanduser()
    # jupyter_core only computes a path here; the core stays free of Jupyter machinery.
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "flow"


def keys_dir() -> Path:
    """``JUPYTER_FLOW_KEYS``, else ``jupyter_data_dir()/flow-keys``: this user's private keys.

    Kept apart from :func:`flow_home` so that a team can share the store while each person's
    keys stay in their own home directory.
    """
    env = os.environ.get("JUPYTER_FLOW_KEYS")
    if env:
        return Path(env).expanduser()
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "flow-keys"


def resolve_db_url(explicit: str | None = None, configured: str | None = None) -> str:
    """SQLAlchemy URL of the store.

    >>> resolve_db_url("sqlite:///x.db")
    'sqlite:///x.db'
    """
    if explicit:
        return explicit
    env = os.environ.get("JUPYTER_FLOW_DB")
    if env:
        return env
    if configured:
        return configured
    return f"sqlite:///{flow_home() / 'flow.db'}"


def resolve_artifacts_url(explicit: str | None = None, configured: str | None = None) -> str:
    """fsspec URL (or local path) of the artifact store."""
    if explicit:
        return explicit
    env = os.environ.get("JUPYTER_FLOW_ARTIFACTS")
    if env:
        return env
    if configured:
        return configured
    return str(flow_home() / "artifacts")


DEFAULT_HEARTBEAT_TIMEOUT_S = 30.0


def heartbeat_timeout() -> float:
    """Seconds without a heartbeat after which an owner is declared dead
    (``JUPYTER_FLOW_HEARTBEAT_TIMEOUT``, default 30). Owners beat at a third of it, at most
    every 5 s.

    >>> heartbeat_timeout() > 0
    True
    """
    text = os.environ.get("JUPYTER_FLOW_HEARTBEAT_TIMEOUT")
    if not text:
        return DEFAULT_HEARTBEAT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"JUPYTER_FLOW_HEARTBEAT_TIMEOUT={text!r} is not a number of seconds"
        ) from None
    if value < 1:
        raise ValueError(f"JUPYTER_FLOW_HEARTBEAT_TIMEOUT={text!r}: use at least 1 second")
    return value


DEFAULT_CANCEL_GRACE_S = 2.0


def cancel_grace() -> float:
    """Seconds a canceled run's ops may take to end by themselves before the engine restarts
    the workers still running them (``JUPYTER_FLOW_CANCEL_GRACE``, default 2; 0 restarts at
    once). A Python thread cannot be interrupted; ``isolate=True`` ops are killed at once.

    >>> cancel_grace() >= 0
    True
    """
    text = os.environ.get("JUPYTER_FLOW_CANCEL_GRACE")
    if not text:
        return DEFAULT_CANCEL_GRACE_S
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"JUPYTER_FLOW_CANCEL_GRACE={text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"JUPYTER_FLOW_CANCEL_GRACE={text!r}: use a number of seconds, 0 or more")
    return value
