"""jupyter_flow: notebook cells as a persistent, cached, distributed workflow.

>>> import jupyter_flow as jf
>>> @jf.op
... def double(x):
...     return 2 * x
>>> node = double(21)            # lazy: jf.run(node).result() == 42
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from ._version import __version__  # noqa: F401
from .core.errors import (  # noqa: E402  (light imports, no Dask or SQL)
    FlowError,
    OpTimeout,
    RunCanceled,
    RunLost,
    WorkerLost,
)
from .core.composites import funnel, map_op as map, parallel, pipeline  # noqa: E402,A001
from .core.files import file  # noqa: E402
from .core.op import Node, Op, op  # noqa: E402
from .core.shell import ShellCommandFailed, shell  # noqa: E402

# Heavier parts load on first use so `import jupyter_flow` stays fast in kernels.
_LAZY = {
    "run": "jupyter_flow.kernel.live",  # engine.api.run, with progress and op outputs in notebooks
    "runs": "jupyter_flow.engine.api",
    "get_run": "jupyter_flow.engine.api",
    "resume": "jupyter_flow.engine.api",
    "cancel": "jupyter_flow.engine.api",
    "pin": "jupyter_flow.engine.api",
    "delete_run": "jupyter_flow.engine.api",
    "record": "jupyter_flow.kernel.session",  # in notebooks, the notebook run outside ops
    "cluster": "jupyter_flow.engine.api",
    "Run": "jupyter_flow.engine.records",
    "Task": "jupyter_flow.engine.records",
    "param": "jupyter_flow.kernel.params",
    "batch": "jupyter_flow.batch.runner",
    "compare": "jupyter_flow.batch.runner",
    "schedule": "jupyter_flow.batch.schedules",
    "schedules": "jupyter_flow.batch.schedules",
    "pause_schedule": "jupyter_flow.batch.schedules",
    "resume_schedule": "jupyter_flow.batch.schedules",
    "remove_schedule": "jupyter_flow.batch.schedules",
}

__all__ = [
    "FlowError", "OpTimeout", "RunCanceled", "RunLost", "WorkerLost", "Node", "Op", "op",
    "pipeline", "parallel", "funnel", "map", "file", "shell", "ShellCommandFailed", *_LAZY,
]


# ``jf.batch`` is a function, and ``jupyter_flow.batch`` a subpackage. Whenever that
# subpackage is first imported, Python sets this module's ``batch`` attribute to it, so a
# later ``jf.batch(...)`` would fail with "'module' object is not callable". Importing the
# (light) subpackage now and dropping the attribute leaves ``batch`` to ``__getattr__``.
from . import batch as _batch_package  # noqa: E402,F401

del globals()["batch"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jupyter_flow' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def load_ipython_extension(ipython) -> None:
    """``%load_ext jupyter_flow``: registers the ``%%flow`` magics."""
    from .kernel.magics import load_ipython_extension as load

    load(ipython)


def _jupyter_server_extension_points() -> list[dict]:
    from .server.app import FlowApp

    return [{"module": "jupyter_flow.server.app", "app": FlowApp}]


def _jupyter_labextension_paths() -> list[dict]:
    return [{"src": "labextension", "dest": "jupyter-flow"}]
