"""A task's live state in this process, and what restoring it from the cache does to it."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.op import Node
from ..core.secrets import redact
from ..core.status import TaskStatus


@dataclass(slots=True)  # thousands per run: smaller, and quicker to make and read
class TaskState:
    """Live state of one task of a run owned by this process."""

    id: str
    node: Node
    position: int
    name: str
    index: int | None
    key: str | None
    cacheable: bool
    components: dict
    reason: str | None
    upstream: list[int]
    resources: dict
    status: TaskStatus = TaskStatus.PENDING
    cached: bool = False
    outputs: dict = field(default_factory=dict)  # output name -> artifact hash
    output_meta: dict = field(default_factory=dict)
    attempts: int = 0
    worker: str | None = None
    started: float | None = None
    ended: float | None = None
    error: str | None = None
    traceback: str | None = None
    exception: BaseException | None = None
    failure_kind: str | None = None  # a core.status.FailureKind value, stored with the task
    blame: str | None = None  # task id whose failure skipped this one
    stdout: str = ""
    stderr: str = ""
    provenance: dict = field(default_factory=dict)
    dask_key: str | None = None
    forced: bool = False  # rerun on request: its value replaces the cache entry
    waiting_for: str | None = None  # the run computing this task's key, while it waits
    metrics: dict = field(default_factory=dict)  # jf.record inside the op (or restored from the cache)
    pool: str | None = None  # the worker pool it is placed in (deploy/pools.py, placed by engine/placement.py)
    annotation: dict | None = None  # the Dask resources its task asks for
    reason_before_wait: str | None = None  # why it runs, while `reason` says what it waits for

    @property
    def duration(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return max(0.0, self.ended - self.started)


def restore(task: TaskState, entry: dict, *, note: str | None = None, by_id: dict | None = None,
            ended: float | None = None) -> None:
    """Make ``task`` a cache hit of ``entry`` (a cache row, or a claim's "cached" answer).

    The one restore of the engine: at planning (``note`` None: an entry found by the
    lookup), and for a task whose key was computed meanwhile (``note`` says by whom; a
    producer that is a task of this run, ``by_id``, is named as its twin). What it changes
    is the task's state only; the caller records it (a task row, metrics of the run).

    >>> t = TaskState("t1", None, 0, "f", None, "k", True, {}, None, [], {})
    >>> restore(t, {"outputs": {"return": "h"}, "task_id": "t0"}); (t.status.value, t.reason)
    ('CACHED', 'cached')
    """
    task.status = TaskStatus.CACHED
    task.cached = True
    task.outputs = dict(entry["outputs"])
    task.metrics = dict(entry.get("metrics") or {})
    producer = entry.get("task_id")
    twin = by_id.get(producer) if (by_id and producer) else None
    if note is None:
        task.reason = "cached"
    elif twin is not None and twin is not task:  # the same value twice in this run: computed once
        label = twin.name if twin.index is None else f"{twin.name}[{twin.index}]"
        task.reason = f"cached (the same value as {label} of this run, computed once)"
    else:
        task.reason = f"cached ({note})"
    task.provenance = {**task.provenance, "cached_from": producer}
    if ended is not None:
        task.ended = ended


def task_row(s: TaskState, extra: dict | None = None) -> dict:
    """The store row a planned task is recorded as (its provenance as the task keeps it)."""
    provenance = {"op": s.name, "key": s.key, "source_hash": s.components.get("code"), **s.provenance}
    if s.cached:
        # A restored task points at the execution that produced its outputs; that task
        # (and the cache entry) hold the full components and source. Keeping cached rows
        # small is what makes a fully cached rerun of 1,000 ops cheap.
        components = None
    else:
        components = s.components
        if s.node.op.source:
            provenance["source"] = s.node.op.source
    shell = getattr(s.node.op, "command", None)
    if shell is not None:
        kwargs = s.node.kwargs
        provenance["shell"] = {
            # Environment variables named like secrets (API_TOKEN) are not stored as they are.
            "command": shell, "environment": redact(kwargs.get("environment") or {}),
            "inputs": {k: (str(v) if isinstance(v, str) else "(output of an upstream op)")
                       for k, v in (kwargs.get("inputs") or {}).items()},
            "outputs": dict(kwargs.get("outputs") or {}), "cwd": kwargs.get("cwd"),
        }
    if extra:
        provenance.update(extra)
    return {
        "id": s.id, "node": str(s.position), "name": s.name, "index": s.index,
        "status": s.status.value, "cached": s.cached, "reason": s.reason, "key": s.key,
        "components": components, "attempts": 0, "provenance": provenance,
        "outputs": s.outputs, "upstream": [str(u) for u in s.upstream], "resources": s.resources,
        "metrics": s.metrics or None,
    }


@dataclass(frozen=True, slots=True)
class TaskView:
    """What a progress display shows of a task, frozen: the execution publishes a tuple of
    them (``RunExecution.view``), so a display reads it without taking the run's lock."""

    id: str
    name: str
    index: int | None
    status: str
    cached: bool
    reason: str | None
    worker: str | None
    started: float | None
    duration: float | None

    @classmethod
    def of(cls, task: TaskState) -> "TaskView":
        return cls(task.id, task.name, task.index, task.status.value, task.cached, task.reason, task.worker,
                   task.started, task.duration)

    @property
    def terminal(self) -> bool:
        return TaskStatus(self.status).terminal
