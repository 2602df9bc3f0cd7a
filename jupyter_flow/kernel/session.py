"""The notebook run of a kernel: where its cell runs nest and where ``jf.record`` goes.

A notebook executed by a batch works for the ``notebook`` run the batch made (its id is in
``JUPYTER_FLOW_RUN_ID``). Any other kernel (JupyterLab, ``papermill``, ``jupyter nbconvert
--execute``) makes one ``notebook`` run for its session the first time it needs one: when
its first ``%%flow`` cell or ``jf.run`` is submitted, or ``jf.record`` is called outside an
op. That run ends SUCCESS when the kernel shuts down (a killed kernel's run becomes LOST).
So ``jf.record("accuracy", acc)`` in an ordinary cell works the same in every mode.
"""

from __future__ import annotations

import atexit
import os
import threading
from pathlib import Path
from typing import Any

from .shutdown import kernel_shell, on_shutdown

_lock = threading.Lock()
_runs: dict[int, str] = {}  # id(engine) -> the session's notebook run


def notebook_run_id(engine, *, create: bool = True) -> str | None:
    """The notebook run this kernel works for (a batch's, or this session's), made on first
    use when ``create``; None outside Jupyter kernels."""
    given = os.environ.get("JUPYTER_FLOW_RUN_ID")
    if given:
        return given
    if kernel_shell() is None:
        return None
    with _lock:
        run_id = _runs.get(id(engine))
        if run_id is not None or not create:
            return run_id
        from ..core.ids import new_id
        from ..core.status import RunKind, RunStatus
        from . import params
        from .notebook import notebook_path

        path = notebook_path()
        run_id = new_id()
        engine.writer.flush()
        engine.store.create_run({
            "id": run_id, "kind": RunKind.NOTEBOOK.value, "status": RunStatus.RUNNING.value,
            "name": Path(path).stem if path else "notebook", "notebook": path, "owner_id": engine.owner_id,
            "params": params.values(),
        }, [])
        _runs[id(engine)] = run_id
        _open[run_id] = engine
        atexit.register(_finish, engine, run_id)
        # atexit alone is too late: a kernel asked to shut down gets a few seconds before
        # SIGTERM (no atexit handlers), and closing a local Dask cluster takes about that
        # long, so a normal restart left the run RUNNING, later LOST.
        on_shutdown(end_notebook_runs, last=True)
        return run_id


def submitted(engine, run_id: str | None, *, made_now: bool, failed: bool) -> None:
    """After a submission under the session's notebook run: a run made just for a submission
    that was refused is removed (refused input records nothing); the run's params follow
    the notebook's ``jf.param`` values."""
    if run_id is None or os.environ.get("JUPYTER_FLOW_RUN_ID"):
        return
    from . import params

    if failed:
        if made_now:
            with _lock:
                _runs.pop(id(engine), None)
            _open.pop(run_id, None)
            engine.writer.flush()
            engine.store.delete_run(run_id, force=True)
        return
    values = params.values()
    if values and values != _params.get(run_id):
        _params[run_id] = dict(values)
        engine.writer.call(engine.store.set_params, run_id, values)


_params: dict[str, dict] = {}


_open: dict[str, object] = {}  # notebook runs of this kernel not ended yet -> their engine


def end_notebook_runs() -> None:
    """End every notebook run of this kernel that has not ended (SUCCESS): the kernel is
    shutting down or restarting normally; LOST is for a process that died."""
    for run_id, engine in list(_open.items()):
        _finish(engine, run_id)


def _finish(engine, run_id: str) -> None:
    """At kernel shutdown (before the engine closes: atexit runs newest first)."""
    from ..core.errors import FencedWrite

    if _open.pop(run_id, None) is None:
        return  # ended already (the shutdown request came first)
    with _lock:
        if _runs.get(id(engine)) == run_id:
            del _runs[id(engine)]
    try:
        engine.writer.flush()
        engine.store.finish_run(run_id, engine.owner_id, "SUCCESS")
    except FencedWrite:  # already ended (e.g. declared LOST while the kernel was paused)
        pass
    except Exception:  # the store may be gone at exit; the reconciler will mark the run
        pass


def record(name: str, value: Any) -> None:
    """Store a metric: ``jf.record("accuracy", 0.93)``.

    Inside an op it belongs to the op's task (kept with its cache entry and restored on
    cache hits) and is rolled up to the op's run and notebook run. In a notebook's ordinary
    cells it belongs to the notebook run (a batch's, or this kernel session's). Elsewhere
    it goes to the run this process made last.
    """
    from ..core.errors import FlowError
    from ..engine import api
    from ..worker.task import current_task

    if current_task() is not None or kernel_shell() is None:
        return api.record(name, value)
    if not isinstance(name, str) or not name:
        raise FlowError("jf.record: the metric name must be a non-empty string")
    value = api.metric_value(name, value)
    engine = api._engine()
    run_id = notebook_run_id(engine, create=True)
    engine.store.record_metrics(run_id, {name: value})
