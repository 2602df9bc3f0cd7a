"""IPython's display functions inside ops, and the set-up of each worker process.

``display()`` (IPython's, the ``display`` builtin of notebooks, and
``IPython.display.display`` imported inside the op), ``clear_output`` and
``publish_display_data`` are routed to the running task's record (capture.py), and fall
back to IPython's own behaviour outside tasks. :func:`install` also selects the matplotlib
backend (mpl_backend.py) and quiets two of Dask's log lines about ops.
"""

from __future__ import annotations

import builtins
import logging
import sys
import threading
import types
from typing import Any, Callable

from .capture import current, format_bundle, jsonable, log, use_flow_backend

_ORIGINAL: dict[str, Callable] = {}


def display(*objs: Any, include=None, exclude=None, metadata=None, transient=None, display_id=None,
            raw: bool = False, clear: bool = False, **kwargs: Any):
    """IPython's ``display`` for code running inside an op: shown in the op's cell."""
    record = current()
    if record is None:
        original = _ORIGINAL.get("display")
        if original is not None:
            return original(*objs, include=include, exclude=exclude, metadata=metadata, transient=transient,
                            display_id=display_id, raw=raw, clear=clear, **kwargs)
        print(*objs)
        return None
    if clear:
        record.clear()
    if display_id is True:
        import uuid

        display_id = uuid.uuid4().hex
    if transient and transient.get("display_id"):
        display_id = transient["display_id"]
    for obj in objs:
        if raw:
            data, md = jsonable(dict(obj)), jsonable(dict(metadata or {}))
        else:
            data, md = format_bundle(obj, include=include, exclude=exclude)
            if not data:
                continue
            md.update(jsonable(dict(metadata or {})))
        record.add_display(data, md, display_id=display_id or None, update=bool(kwargs.get("update")))
    if display_id:
        from IPython.core.display_functions import DisplayHandle

        return DisplayHandle(display_id)
    return None


def clear_output(wait: bool = False) -> Any:
    record = current()
    if record is None:
        original = _ORIGINAL.get("clear_output")
        return original(wait) if original is not None else None
    record.clear()
    return None


def publish_display_data(data, metadata=None, *args, transient=None, **kwargs) -> None:
    record = current()
    if record is None:
        original = _ORIGINAL.get("publish_display_data")
        if original is not None:
            return original(data, metadata, *args, transient=transient, **kwargs)
        return None
    display_id = (transient or {}).get("display_id")
    record.add_display(jsonable(dict(data)), jsonable(dict(metadata or {})), display_id=display_id,
                       update=bool(kwargs.get("update")))
    return None


def _patch_ipython(module: types.ModuleType | None = None) -> None:
    """Route IPython's display functions to the running task's record (falling back to
    IPython's own behaviour outside tasks)."""
    functions = sys.modules.get("IPython.core.display_functions") if module is None else module
    if functions is None:
        return
    replacements = {"display": display, "clear_output": clear_output, "publish_display_data": publish_display_data}
    for name, replacement in replacements.items():
        original = getattr(functions, name, None)
        if original is not None and original is not replacement:
            _ORIGINAL.setdefault(name, original)
    for module_name in ("IPython.core.display_functions", "IPython.core.display", "IPython.display", "IPython"):
        target = functions if module_name == "IPython.core.display_functions" else sys.modules.get(module_name)
        if target is None:
            continue
        for name, replacement in replacements.items():
            if getattr(target, name, None) is _ORIGINAL.get(name) and name in _ORIGINAL:
                setattr(target, name, replacement)


class _AfterImport:
    """A one-shot import hook: run ``callback(module)`` right after ``name`` is imported."""

    def __init__(self, name: str, callback: Callable[[types.ModuleType], None]):
        self.name = name
        self.callback = callback

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        import importlib.util

        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module
        callback = self.callback

        def exec_and_patch(module):
            exec_module(module)
            callback(module)

        loader.exec_module = exec_and_patch
        return spec


# ---------------------------------------------------------------- worker set-up

_installed = False
_install_lock = threading.Lock()


class _QuietComputeFailed(logging.Filter):
    """Dask logs every failing task with its raw arguments ("Compute Failed"); a failing op
    is reported to its cell with its own traceback, so that blob only adds noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Compute Failed") and isinstance(record.args, tuple) and record.args:
            return not str(record.args[0]).startswith("jf-")
        return True


class _QuietCanceledOp(logging.Filter):
    """A canceled op's worker is restarted; Dask then warns that the op's task "ended with
    CancelledError", which reaches the notebook cell as a line of noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        return not (text.startswith("Async instruction for") and "('jf-" in text and "CancelledError" in text)


def install() -> None:
    """Once per worker process: route display(), matplotlib and Dask's failure logs."""
    global _installed
    if _installed:
        return
    with _install_lock:
        if _installed:
            return
        if not hasattr(builtins, "display"):
            setattr(builtins, "display", display)  # what notebooks have without an import
        if "IPython.core.display_functions" in sys.modules:
            _patch_ipython()
        else:
            sys.meta_path.insert(0, _AfterImport("IPython.core.display_functions", _patch_ipython))
        try:
            use_flow_backend()
        except Exception:  # a broken matplotlib must not break ops that do not plot
            log.debug("jupyter_flow: could not select the matplotlib backend", exc_info=True)
        logging.getLogger("distributed.worker").addFilter(_QuietComputeFailed())
        logging.getLogger("distributed.worker.state_machine").addFilter(_QuietCanceledOp())
        _installed = True
