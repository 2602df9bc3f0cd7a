"""Run and Task records users hold: live while the run is in this process, else read from the store."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from ..core.errors import ArtifactError, ArtifactForeign, ArtifactUntrusted, FlowError
from ..core.op import OutputRef
from ..core.status import RunStatus, TaskStatus
from ..core.outputs import stored_outputs
from ..store.records import RunRecord, TaskRecord
from .execution import RunExecution, build_failure
from .state import TaskState

log = logging.getLogger("jupyter_flow.engine")


class Task:
    """One op execution (or cache restore) inside a run."""

    __slots__ = ("id", "run_id", "name", "index", "status", "cached", "reason", "key", "duration",
                 "worker", "attempts", "provenance", "outputs", "error", "traceback", "stdout",
                 "stderr", "node", "upstream", "components", "started_at", "ended_at", "metrics",
                 "failure_kind")

    def __init__(self, **fields: Any):
        for name in self.__slots__:
            setattr(self, name, fields.get(name))

    @property
    def logs(self) -> str:
        """stdout then stderr of the op, as captured on its worker."""
        out, err = self.stdout or "", self.stderr or ""
        return out + (("\n" if out and not out.endswith("\n") else "") + err if err else "")

    @classmethod
    def from_state(cls, run_id: str, s: TaskState) -> "Task":
        """The task as the live run holds it (times as UTC datetimes, like a stored task's)."""
        return cls(
            id=s.id, run_id=run_id, name=s.name, index=s.index, status=s.status.value, cached=s.cached,
            reason=s.reason, key=s.key, duration=s.duration, worker=s.worker, attempts=s.attempts,
            provenance=dict(s.provenance), outputs=dict(s.outputs), error=s.error, traceback=s.traceback,
            stdout=s.stdout, stderr=s.stderr, node=str(s.position), upstream=[str(u) for u in s.upstream],
            components=s.components, started_at=_utc(s.started), ended_at=_utc(s.ended), metrics=dict(s.metrics),
            failure_kind=s.failure_kind,
        )

    @classmethod
    def from_record(cls, record: TaskRecord) -> "Task":
        """The task as the store holds it."""
        fields = {name: getattr(record, name) for name in cls.__slots__}
        fields["provenance"] = record.provenance or {}
        fields["outputs"] = record.outputs or {}
        fields["metrics"] = record.metrics or {}
        return cls(**fields)

    def __repr__(self) -> str:
        return f"<Task {self.name}{'' if self.index is None else f'[{self.index}]'} {self.status}>"


class Run:
    """A run: ``run.status``, ``run.tasks``, ``run.result()``, ``run.wait(timeout)``.

    >>> run = jf.run(train(load(10)))      # doctest: +SKIP
    >>> run.status, run.result()           # doctest: +SKIP
    ('SUCCESS', 4.5)
    """

    def __init__(self, engine, run_id: str, execution: RunExecution | None = None, row: RunRecord | None = None):
        self._engine = engine
        self.id = run_id
        self._execution = execution
        self._row = row
        if row is None and execution is None:
            self.refresh()

    # ---------------------------------------------------------------- state
    def refresh(self) -> "Run":
        self._engine.writer.flush()
        row = self._engine.store.get_run(self.id)
        if row is None:
            raise FlowError(f"no run with id {self.id!r}; list runs with jf.runs()")
        self._row = row
        return self

    def _field(self, name: str) -> Any:
        if self._row is None:
            self.refresh()
        return getattr(self._row, name)

    @property
    def status(self) -> str:
        if self._execution is not None and not self._execution.done.is_set():
            return self._execution.status.value
        if self._execution is not None:
            return self._execution.status.value
        return self.refresh()._row.status

    @property
    def name(self) -> str | None:
        return self._field("name")

    @property
    def kind(self) -> str:
        return self._field("kind")

    @property
    def params(self) -> dict:
        return dict(self.refresh()._row.params or {})

    @property
    def metrics(self) -> dict:
        return dict(self.refresh()._row.metrics or {})

    @property
    def parent_id(self) -> str | None:
        return self._field("parent_id")

    @property
    def notebook(self) -> str | None:
        """The notebook the run came from (cell, graph and notebook runs)."""
        return self._field("notebook")

    @property
    def resumed_from(self) -> str | None:
        return self._field("resumed_from")

    @property
    def owner(self) -> str | None:
        """The Jupyter user the run belongs to (the hub user on JupyterHub)."""
        return self._field("owner")

    @property
    def user(self) -> str | None:
        """The OS user that ran it (provenance)."""
        return self._field("user")

    @property
    def schedule_id(self) -> str | None:
        """The schedule that fired this batch run (None for runs nobody scheduled)."""
        return self._field("schedule_id")

    @property
    def scheduled_for(self) -> datetime | None:
        """The cron time a scheduled batch run was fired for (UTC)."""
        return self._field("scheduled_for")

    @property
    def error(self) -> str | None:
        if self._execution is not None and self._execution.done.is_set():
            return self._execution.error
        return self.refresh()._row.error

    @property
    def created_at(self) -> datetime | None:
        return self._field("created_at")

    @property
    def ended_at(self) -> datetime | None:
        return self.refresh()._row.ended_at

    @property
    def cluster(self) -> str | None:
        return self._field("cluster")

    @property
    def tasks(self) -> list[Task]:
        if self._execution is not None:
            with self._execution.lock:
                return [Task.from_state(self.id, s) for s in self._execution.tasks]
        self._engine.writer.flush()
        return [Task.from_record(r) for r in self._engine.store.get_tasks(self.id)]

    # --------------------------------------------------------------- waiting
    def wait(self, timeout: float | None = None) -> "Run":
        """Block until the run ends (or ``timeout`` seconds pass); Ctrl-C cancels the run."""
        if self._execution is None:
            return self.refresh()
        try:
            self._execution.wait(timeout)
        except KeyboardInterrupt:
            self._execution.request_cancel()
            self._execution.wait(30)
            raise
        if self._execution.done.is_set() and self._execution.record_error is not None:
            raise self._execution.record_error
        return self

    @property
    def done(self) -> bool:
        return self.status in {s.value for s in RunStatus if s.terminal}

    def cancel(self) -> "Run":
        self._engine.cancel(self.id)
        return self

    # --------------------------------------------------------------- results
    def result(self, timeout: float | None = None) -> Any:
        """Values of the run's targets, in the shape they were given; raises for a failed target."""
        self.wait(timeout)
        return self._result()

    def _result(self, recompute: bool = True) -> Any:
        if self._execution is not None:
            graph = self._execution.graph
            values = []
            for target in graph.target_list:
                node = target.node if isinstance(target, OutputRef) else target
                state = self._execution.tasks[graph.position[node]]
                values.append(self._value(state.status, state.outputs, target, state.node.op.multi_output,
                                          lambda s=state: self._execution.failure_for(s), state, node,
                                          recompute=recompute))
            return graph.shape(values)
        return self._stored_result()

    def _value(self, status, outputs, target, multi, failure, state=None, node=None, recompute=True):
        if status not in (TaskStatus.SUCCESS, TaskStatus.CACHED, "SUCCESS", "CACHED"):
            raise failure()
        outputs = stored_outputs(outputs)  # the recorded displays are not a value of the op
        wanted = [target.output] if isinstance(target, OutputRef) else list(outputs)
        try:
            values = self._engine.load_result(outputs, wanted)
        except ArtifactError as err:
            if node is None or not recompute:
                raise
            # The stored result cannot be used here: recompute it, once. A value that cannot
            # be loaded even when fresh (e.g. its class cannot be imported here) raises
            # instead of recomputing again and again.
            if state is not None and state.key and not isinstance(err, ArtifactForeign):
                # Gone, corrupt or unverifiable (planted): no one can use it, so the cache forgets
                # it. Another user's value stays: it is their cache, only not this user's.
                self._engine.store.drop_cache([state.key])
            if state is not None:
                why = "stored result failed verification" if isinstance(err, ArtifactUntrusted) else \
                    "stored result could not be loaded"
                log.warning("jupyter_flow: op %r of run %s: %s (%s); recomputing it", node.op.name, self.id, why, err)
                state.reason = f"{why}: {err}"[:2000]
                self._engine.writer.task_update({"id": state.id, "reason": state.reason}, self.id)
            execution = self._engine.submit(target, name=self.name, parent_id=self.parent_id,
                                            cluster=self._row.get("cluster") if self._row else None)
            redo = Run(self._engine, execution.run_id, execution=execution).wait()
            if redo.status != RunStatus.SUCCESS.value:
                return redo.result()  # raises the op's own error
            try:
                return redo._result(recompute=False)
            except ArtifactError as again:
                raise ArtifactError(
                    f"the result of op {node.op.name!r} cannot be loaded in this process, even freshly "
                    f"recomputed in run {redo.id}: {again}", getattr(again, "digest", None)
                ) from err
        if isinstance(target, OutputRef):
            return values[target.output]
        return values if multi else values["return"]

    def _stored_result(self) -> Any:
        row = self.refresh()._row
        tasks = {t.node: t for t in self._engine.store.get_tasks(self.id)}
        targets = (row.graph or {}).get("targets") or []
        if not targets:
            raise FlowError(f"run {self.id} has no recorded targets")
        values = []
        for pos in targets:
            t = tasks[str(pos)]
            if t.status == TaskStatus.SKIPPED.value:
                blame = next((u for u in tasks.values() if u.status == "FAILED"), t)
                t = blame
            multi = list(stored_outputs(t.outputs)) != ["return"] and bool(stored_outputs(t.outputs))
            failure = lambda t=t: build_failure(t.name, self.id, t.status, t.failure_kind, t.error, t.traceback, None)
            values.append(self._value(t.status, t.outputs or {}, None, multi, failure))
        return values[0] if len(values) == 1 else values

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.name or ''} {self.kind} {self.status}>"


def _utc(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, timezone.utc)
