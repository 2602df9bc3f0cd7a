"""The Python API: ``jf.run``, ``jf.runs``, ``jf.get_run``, ``jf.resume``, ``jf.cancel`` …"""

from __future__ import annotations

from typing import Any, Iterable

from ..core.errors import FlowError
from ..core.status import RunKind, RunStatus
from ..deploy import cluster as clusters
from .records import Run
from ..core.settings import heartbeat_timeout
from .runtime import get_engine
from ..worker.task import current_task, emit


def _engine():
    """The engine, with this process's pending writes in the store (read your own writes)."""
    engine = get_engine()
    engine.writer.flush()
    return engine


def run(
    targets: Any,
    *,
    name: str | None = None,
    cluster: str | None = None,
    force: Iterable[Any] | Any = None,
    wait: bool = True,
    kind: str = RunKind.API.value,
    parent_id: str | None = None,
    params: dict | None = None,
) -> Run:
    """Run a node (or a list/tuple of nodes) and record it; waits unless ``wait=False``.

    >>> run = jf.run(train(load(1000), lr=0.01), name="demo")   # doctest: +SKIP
    >>> run.status, run.result()                                # doctest: +SKIP
    ('SUCCESS', 4995.0)
    """
    engine = _engine()
    execution = engine.submit(targets, name=name, kind=kind, cluster=cluster, force=force,
                              parent_id=parent_id, params=params)
    record = Run(engine, execution.run_id, execution=execution)
    if wait:
        record.wait()
    else:
        # The id handed out must name a recorded run: another process (`jupyter flow cancel
        # ID`, the sidebar, a child run) may use it at once. Its creation was queued to the
        # writer; wait for that, not for the run.
        engine.writer.flush()
    return record


def runs(limit: int = 20, name: str | None = None, status: str | None = None,
         kind: str | None = None, parent_id: str | None = None, owner: str | None = None) -> list[Run]:
    """Recorded runs, newest first (runs of dead processes are marked LOST first).

    ``owner="me"`` keeps this user's runs (``core.provenance.flow_user()``: the Jupyter or hub
    user, else the OS user), ``owner="ana"`` ana's; default everyone's in the store.
    """
    engine = _engine()
    engine.store.reconcile(heartbeat_timeout())
    if status is not None and status not in RunStatus.__members__:
        raise FlowError(f"jf.runs: unknown status {status!r}; use one of {list(RunStatus.__members__)}")
    if owner == "me":
        from ..core.provenance import flow_user

        owner = flow_user()
    rows = engine.store.list_runs(limit=limit, name=name, status=status, kind=kind, parent_id=parent_id,
                                  owner=owner)
    return [Run(engine, row.id, execution=engine.recent.get(row.id), row=row) for row in rows]


def get_run(run_id: str) -> Run:
    """The run with this id, from this or any earlier process."""
    engine = _engine()
    engine.store.reconcile(heartbeat_timeout())
    row = engine.store.get_run(run_id)
    if row is None:
        raise FlowError(f"no run with id {run_id!r}; list runs with jf.runs()")
    return Run(engine, run_id, execution=engine.recent.get(run_id), row=row)


def resume(run_id: str, *, wait: bool = True, cluster: str | None = None) -> Run:
    """Rerun a run from its stored graph snapshot; only what is not cached reruns."""
    engine = _engine()
    execution = engine.resume(run_id, cluster=cluster)
    record = Run(engine, execution.run_id, execution=execution)
    if wait:
        record.wait()
    else:
        # The id handed out must name a recorded run: another process (`jupyter flow cancel
        # ID`, the sidebar, a child run) may use it at once. Its creation was queued to the
        # writer; wait for that, not for the run.
        engine.writer.flush()
    return record


def cancel(run_id: str) -> Run:
    """Ask the run's owner to cancel it (noticed within about a second, from any process)."""
    engine = _engine()
    engine.cancel(run_id)
    return Run(engine, run_id, execution=engine.recent.get(run_id))


def pin(run_id: str, pinned: bool = True) -> None:
    """Keep a run's artifacts through ``jupyter flow cache gc``."""
    engine = _engine()
    if engine.store.get_run(run_id) is None:
        raise FlowError(f"jf.pin: no run with id {run_id!r}")
    engine.store.pin(run_id, pinned)


def delete_run(run_id: str) -> None:
    """Forget a run and its tasks (cached results stay in the cache)."""
    engine = _engine()
    if engine.store.get_run(run_id) is None:
        raise FlowError(f"jf.delete_run: no run with id {run_id!r}")
    if run_id in engine.active:
        raise FlowError(f"jf.delete_run: run {run_id} is still running; cancel it first")
    engine.store.delete_run(run_id)


def record(name: str, value: Any) -> None:
    """Store a metric on the current run: ``jf.record("accuracy", 0.93)``.

    Inside an op the current run is the op's run; elsewhere, the run this process made
    last (or the notebook run a batch started).
    """
    if not isinstance(name, str) or not name:
        raise FlowError("jf.record: the metric name must be a non-empty string")
    value = metric_value(name, value)
    task = current_task()
    if task is not None:
        # The op's task keeps it (and its cache entry, so a cache hit restores it); the
        # run and its notebook run get it too.
        emit({"t": "metric", "run": task[0], "task": task[1], "name": name, "value": value})
        return
    engine = _engine()
    if engine.current_run_id is None:
        raise FlowError("jf.record: there is no current run; call it inside an op or after jf.run")
    engine.writer.flush()
    engine.store.record_metrics(engine.current_run_id, {name: value})


def metric_value(name: str, value: Any) -> Any:
    """``value`` as plain JSON data (numpy scalars and arrays become numbers and lists)."""
    import json

    if hasattr(value, "tolist") and type(value).__module__.partition(".")[0] == "numpy":
        value = value.tolist()
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        raise FlowError(f"jf.record: metric {name!r} must be a number, string, bool, list or dict of those, "
                        f"got {type(value).__name__}") from None
    return value


def cluster(target: str | None = None, **overrides: Any):
    """Choose (and start or connect to) the cluster runs go to: a profile name or an address."""
    return clusters.use(target, **overrides)
