"""The rules of a run in flight, as a state machine: events in, instructions out.

Events are what happens to a run: the worker's messages (``Started``, ``Finished``,
``Failed``, ``Log``, ``Metric``, as worker/task.py publishes them), a Dask future that
ended (``FutureEnded``: error, cancelled), a cancel, the claims of other runs polled
(``ClaimsPolled``), a dynamic map's items known (``MapItemsKnown``). The machine changes the tasks' state
(``TaskState``) by the rules — who is skipped and whom a skip blames, which op of a fused
chain died with its worker, how retries count, what a cancel does — and answers with
instructions for the store (``WriteTask``, ``WriteArtifacts``, ``WriteCache``,
``ReleaseClaims``, ``RecordMetrics``, ``AddTasks``) and the cluster (``Submit``). It never writes,
submits or reads the clock itself (times come with the events, ``now`` is passed in):
``RunExecution`` drives it from its Dask loop and executes what it answers, and the rules
are tested without a cluster (tests/engine/test_run_machine.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Union

from ..core.op import MapOp
from ..core.status import TASK_PROGRESS, TaskStatus
from .single_flight import MEANWHILE
from .state import TaskState, restore, task_row
from .tracebacks import localize

AVAILABLE = (TaskStatus.SUCCESS, TaskStatus.CACHED)
BROKEN = (TaskStatus.FAILED, TaskStatus.SKIPPED, TaskStatus.CANCELED, TaskStatus.LOST)
LOG_TAIL = 64 * 1024  # characters of live stdout/stderr written to the store while a task runs
_FACTS = ("worker", "host", "pid", "slurm_job_id", "gateway_cluster", "pool", "gpus")


# ------------------------------------------------------------------ events
@dataclass(frozen=True, slots=True)
class Started:
    """An attempt of an op began on a worker."""

    task: str
    time: float | None = None
    facts: dict = field(default_factory=dict)  # worker, host, pid, slurm_job_id, pool, gpus


@dataclass(frozen=True, slots=True)
class Finished:
    """An op returned; its outputs are stored (output name -> artifact metadata)."""

    task: str
    outputs: dict
    attempt: int = 1
    stdout: str = ""
    stderr: str = ""
    started: float | None = None
    time: float | None = None
    facts: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Failed:
    """An op raised (or timed out: ``timeout``) on its last attempt."""

    task: str
    error: str | None = None
    traceback: str | None = None
    attempt: int = 1
    timeout: bool = False
    stdout: str = ""
    stderr: str = ""
    started: float | None = None
    time: float | None = None
    facts: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Log:
    """Jupyter outputs an op showed while running (stream items extend its logs)."""

    task: str
    seq: int = 0
    items: tuple = ()


@dataclass(frozen=True, slots=True)
class Metric:
    """``jf.record`` inside an op (``task`` None: the run's own metric)."""

    task: str | None
    name: str
    value: Any


WorkerEvent = Union[Started, Finished, Failed, Log, Metric]


@dataclass(frozen=True, slots=True)
class FutureEnded:
    """The Dask future of ``key`` ended as ``status`` ("finished", "error", "cancelled").
    ``error``: its exception's class name; ``error_task``: the key a KilledWorker names."""

    key: str
    status: str
    error: str | None = None
    error_task: str | None = None
    allowed_failures: int = 0
    exception: BaseException | None = None


@dataclass(frozen=True, slots=True)
class ClaimsPolled:
    """Where the keys this run waits for stand (``SingleFlight.poll``: key -> ``cached``,
    ``held`` or ``mine``); ``refused``: key -> why its cached entry is not usable here.
    ``status`` None: this process was fenced meanwhile (the run ends as it is)."""

    status: dict | None
    refused: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MapItemsKnown:
    """A dynamic map's list is known: ``plan`` holds its items' tasks (engine/plan.py,
    ``plan_map``), ``collect`` the node gathering their values."""

    gather: TaskState
    plan: Any
    collect: Any


def parse(msg: dict) -> WorkerEvent | None:
    """A worker's message (a dict on the Dask topic) as its event; None for other shapes.

    >>> parse({"t": "start", "run": "r", "task": "t1", "worker": "w", "time": 1.0})
    Started(task='t1', time=1.0, facts={'worker': 'w'})
    """
    kind = msg.get("t")
    task = msg.get("task")
    facts = {k: msg[k] for k in _FACTS if msg.get(k)}
    if kind == "start":
        return Started(task, msg.get("time"), facts)
    if kind == "done":
        return Finished(task, msg["outputs"], int(msg.get("attempt") or 1), msg.get("stdout", ""),
                        msg.get("stderr", ""), msg.get("started"), msg.get("time"), facts)
    if kind == "failed":
        return Failed(task, msg.get("error"), msg.get("traceback"), int(msg.get("attempt") or 1),
                      bool(msg.get("timeout")), msg.get("stdout", ""), msg.get("stderr", ""),
                      msg.get("started"), msg.get("time"), facts)
    if kind == "output":
        return Log(task, int(msg.get("seq") or 0), tuple(msg.get("items") or ()))
    if kind == "metric":
        return Metric(task, msg.get("name"), msg.get("value"))
    return None


# ------------------------------------------------------------ instructions
@dataclass(frozen=True, slots=True)
class WriteTask:
    """Update a task's row (``update`` holds its id). ``of_run``: a failure to write it is
    the run's (its final records depend on it)."""

    update: dict
    of_run: bool = True


@dataclass(frozen=True, slots=True)
class WriteArtifacts:
    rows: list


@dataclass(frozen=True, slots=True)
class WriteCache:
    entry: dict


@dataclass(frozen=True, slots=True)
class ReleaseClaims:
    keys: list


@dataclass(frozen=True, slots=True)
class RecordMetrics:
    """Metrics of the run (``task_metric``: one metric of the run sent outside any task)."""

    metrics: dict
    of_run: bool = True
    task_metric: bool = False


@dataclass(frozen=True, slots=True)
class AddTasks:
    """Record tasks a run added while it went on (a dynamic map's items)."""

    rows: list


@dataclass(frozen=True, slots=True)
class Submit:
    positions: frozenset


Instruction = Union[WriteTask, WriteArtifacts, WriteCache, ReleaseClaims, RecordMetrics, AddTasks, Submit]


# ----------------------------------------------------------------- machine
class RunMachine:
    """The tasks of one run and the rules that move them. Not thread-safe: the caller holds
    the run's lock around each call."""

    def __init__(self, tasks: list[TaskState], by_id: dict[str, TaskState] | None = None,
                 by_key: dict[str, list[TaskState]] | None = None, *, waits: dict | None = None,
                 deferred: set[int] | None = None, expand: set[int] | None = None):
        self.tasks = tasks
        self.by_id = by_id if by_id is not None else {t.id: t for t in tasks}
        self.by_key = by_key if by_key is not None else {}  # Dask key -> its tasks, in chain order
        self.waits: dict[str, list[TaskState]] = dict(waits or {})  # key -> tasks waiting for another computation
        self.deferred: set[int] = set(deferred or ())  # tasks that need a value still being waited for
        self.expand: set[int] = set(expand or ())  # dynamic maps whose list is not known yet
        self.canceled = False

    # ------------------------------------------------------------ worker
    def on_worker(self, event: WorkerEvent, now: float) -> list[Instruction]:
        task = self.by_id.get(event.task) if event.task is not None else None
        if task is None:
            if isinstance(event, Metric):
                return [RecordMetrics({event.name: event.value}, task_metric=True)]
            return []
        if isinstance(event, Log):
            return self._log(task, event)
        if isinstance(event, Metric):
            task.metrics[event.name] = event.value
            return [WriteTask({"id": task.id, "metrics": dict(task.metrics)}, of_run=False),
                    RecordMetrics({event.name: event.value}, of_run=False)]
        if task.status.terminal and isinstance(event, Started):
            return []
        task.worker = event.facts.get("worker") or task.worker
        task.provenance.update(event.facts)
        update: dict[str, Any] = {"id": task.id}
        out: list[Instruction] = []
        if isinstance(event, Started):
            task.attempts += 1
            update["attempts"] = task.attempts
            if task.started is None:
                task.started = event.time or now
                update["started_at"] = dt(task.started)
            if TASK_PROGRESS.get(task.status, 99) < TASK_PROGRESS[TaskStatus.RUNNING]:
                task.status = TaskStatus.RUNNING
                update["status"] = TaskStatus.RUNNING.value
            if task.reason_before_wait is not None:  # a worker came: the reason is why it runs again
                task.reason, task.reason_before_wait = task.reason_before_wait, None
                update["reason"] = task.reason
            update["worker"] = task.worker
        elif self.canceled or task.status.terminal:
            # A canceled op (or one already given up on) ended anyway: what it produced is
            # not the run's result, so it enters neither the cache nor the artifact rows.
            return []
        elif isinstance(event, Finished):
            # Retries inside the wrapper count too (a start event may be lost with a dying worker).
            task.attempts = max(task.attempts, event.attempt)
            task.outputs = {name: meta["hash"] for name, meta in event.outputs.items()}
            task.output_meta = event.outputs
            task.stdout, task.stderr = event.stdout, event.stderr
            task.started = event.started or task.started
            task.ended = event.time or now
            task.status = TaskStatus.SUCCESS
            update.update(final_fields(task))
            out.append(WriteArtifacts([
                {"hash": m["hash"], "size": m["size"], "serializer": m["serializer"],
                 "serializer_version": m["serializer_version"], "type": m["type"], "uri": m["uri"]}
                for m in event.outputs.values()
            ]))
            if task.cacheable and task.key:
                signers = {m["signer"] for m in event.outputs.values() if m.get("signer")}
                out.append(WriteCache({
                    "key": task.key, "outputs": task.outputs, "components": task.components,
                    "op_name": task.name, "task_id": task.id, "replace": task.forced,
                    "metrics": dict(task.metrics) or None, "signer": min(signers) if signers else None,
                }))
        else:  # Failed
            task.attempts = max(task.attempts, event.attempt)
            task.error = event.error
            task.traceback = localize(event.traceback, task.node.op)
            task.stdout, task.stderr = event.stdout, event.stderr
            task.failure_kind = "timeout" if event.timeout else "exception"
            task.started = event.started or task.started
            task.ended = event.time or now
            task.status = TaskStatus.FAILED
            update.update(final_fields(task))
            if task.cacheable and task.key:
                out.append(ReleaseClaims([task.key]))  # runs waiting for this key compute it themselves now
        out.append(WriteTask(update))
        return out

    def _log(self, task: TaskState, event: Log) -> list[Instruction]:
        streams: dict[str, list[str]] = {"stdout": [], "stderr": []}
        for item in event.items:
            if item.get("output_type") == "stream" and item.get("name") in streams:
                streams[item["name"]].append(item.get("text") or "")
        if task.status.terminal or not (streams["stdout"] or streams["stderr"]):
            return []
        # The store (and the sidebar's logs) follow the op while it runs.
        task.stdout = (task.stdout + "".join(streams["stdout"]))[-LOG_TAIL:]
        task.stderr = (task.stderr + "".join(streams["stderr"]))[-LOG_TAIL:]
        return [WriteTask({"id": task.id, "stdout": task.stdout, "stderr": task.stderr}, of_run=False)]

    # ----------------------------------------------------------- futures
    def on_future(self, event: FutureEnded, now: float) -> list[Instruction]:
        """A fused chain is one future for several tasks, in chain order."""
        out: list[Instruction] = []
        for task in self.by_key.get(event.key, ()):
            out += self._future_of(task, event, now)
        return out

    def _future_of(self, task: TaskState, event: FutureEnded, now: float) -> list[Instruction]:
        if event.status == "finished":
            return []  # the Finished event carries the outputs
        if event.status == "cancelled" or self.canceled:
            return [] if task.status.terminal else self.mark(task, TaskStatus.CANCELED, now, failure_kind="canceled")
        if event.status != "error":
            return []
        if task.status == TaskStatus.FAILED:
            task.exception = event.exception  # the op's own exception, for result()
            return []
        if event.error == "KilledWorker" and event.error_task == task.dask_key:
            if task.status.terminal:
                return []  # an op of a fused chain that finished before the one that died
            chain = self.by_key.get(task.dask_key, [task])
            # The first op of the chain that did not finish is the one that died.
            victim = next(t for t in chain if t.status not in AVAILABLE)
            if task is victim:
                # Start events of a dying worker may never arrive: count what the scheduler allowed.
                attempts = max(task.attempts, event.allowed_failures + 1)
                return self.mark(task, TaskStatus.FAILED, now, failure_kind="worker", attempts=attempts,
                                 error=(f"WorkerLost: the worker running op {task.name!r} died on each of "
                                        f"{attempts} attempts (each on a different worker); the op probably "
                                        "crashes its process (memory, a segfault, os._exit)"))
            return self.mark(task, TaskStatus.SKIPPED, now, failure_kind="upstream", blame=victim.id,
                             error=f"skipped: upstream op {victim.name!r} failed (its worker died)")
        if task.attempts == 0:
            blame = self.blame(task)
            return self.mark(task, TaskStatus.SKIPPED, now, failure_kind="upstream", blame=blame,
                             error=f"skipped: upstream op {self.by_id[blame].name!r} failed" if blame
                             else skip_message(task, event), exception=event.exception)
        return []  # started but no Failed event yet: the run waits for it (or gives up on it)

    # ------------------------------------------------------ single flight
    def on_claims(self, event: ClaimsPolled, now: float) -> list[Instruction]:
        """Restore the tasks whose key was recorded meanwhile, take over keys whose claimer
        ended without a value (their tasks join ``deferred``, maps ``expand``), go on
        waiting for the others."""
        if event.status is None:
            self.waits.clear()
            return []
        out: list[Instruction] = []
        for key, state in event.status.items():
            tasks = self.waits.get(key)
            if not tasks:
                continue
            why = event.refused.get(key) if state["state"] == "cached" else None
            if why is not None:
                # The other run was another user's, whom this user does not trust: compute
                # it here (the cache entry stays theirs).
                for task in tasks:
                    task.reason = why
                    out.append(WriteTask({"id": task.id, "reason": task.reason}))
                    self._take_over(task)
                del self.waits[key]
            elif state["state"] == "cached":
                for task in tasks:
                    out += self._restored(task, state, now)
                del self.waits[key]
            elif state["state"] == "held":
                for task in tasks:
                    task.waiting_for = state["run_id"]
            elif state["state"] == "mine":
                first, *twins = tasks
                held_by = state.get("took_over_from") or first.waiting_for
                first.reason = (f"no cache entry (taken over from run {held_by}, which ended without "
                                "recording a value: lost, failed or canceled)")
                out.append(WriteTask({"id": first.id, "reason": first.reason}))
                self._take_over(first)
                if twins:
                    self.waits[key] = twins
                else:
                    del self.waits[key]
        return out

    def _take_over(self, task: TaskState) -> None:
        if isinstance(task.node.op, MapOp):
            self.expand.add(task.position)
        else:
            self.deferred.add(task.position)

    def _restored(self, task: TaskState, entry: dict, now: float) -> list[Instruction]:
        """A task that waited for another computation of its key: that result is its own."""
        restore(task, entry, note=MEANWHILE, by_id=self.by_id, ended=now)
        out: list[Instruction] = [RecordMetrics(dict(task.metrics))] if task.metrics else []
        out.append(WriteTask({
            "id": task.id, "status": TaskStatus.CACHED.value, "cached": True, "outputs": task.outputs,
            "reason": task.reason, "provenance": dict(task.provenance), "ended_at": dt(task.ended),
        }))
        return out

    # ---------------------------------------------------------------- maps
    def on_map_items(self, event: MapItemsKnown) -> list[Instruction]:
        """Add a dynamic map's item tasks (recorded with the metrics their hits restore);
        the gathering task now reads them and waits for them (``deferred``)."""
        gather, fresh = event.gather, event.plan.tasks
        rows = [task_row(s) for s in fresh]
        restored: dict = {}
        for s, row in zip(fresh, rows):
            s.provenance = dict(row["provenance"])  # live updates extend it, never replace it
            if s.cached and s.metrics:
                restored.update(s.metrics)
            self.tasks.append(s)
            self.by_id[s.id] = s
        for key, tasks in event.plan.waits.items():
            self.waits.setdefault(key, []).extend(tasks)
        self.expand |= event.plan.expand
        self.deferred |= event.plan.stage | event.plan.deferred | {gather.position}
        gather.node = event.collect
        gather.upstream = [s.position for s in fresh]
        out: list[Instruction] = [AddTasks(rows)]
        if restored:  # as for the run's first tasks: restored metrics come back to the run
            out.append(RecordMetrics(restored))
        return out

    # ------------------------------------------------------------- rules
    def blame(self, task: TaskState) -> str | None:
        """The task whose failure keeps ``task`` from running: the nearest upstream op that
        failed, or that started under a Dask key and did not succeed."""
        stack = list(task.upstream)
        seen = set()
        while stack:
            pos = stack.pop()
            if pos in seen:
                continue
            seen.add(pos)
            up = self.tasks[pos]
            if up.status == TaskStatus.FAILED or (up.dask_key and up.attempts and up.status != TaskStatus.SUCCESS):
                return up.id
            stack.extend(up.upstream)
        return None

    def mark(self, task: TaskState, status: TaskStatus, now: float, **fields) -> list[Instruction]:
        """Set ``task``'s status (and ``fields``); its end time is ``now`` unless it has one."""
        for name, value in fields.items():
            setattr(task, name, value)
        task.status = status
        if task.ended is None:
            task.ended = now
        return [WriteTask({"id": task.id, "status": status.value, "error": task.error,
                           "failure_kind": task.failure_kind, "ended_at": dt(task.ended),
                           "attempts": task.attempts})]

    def skip_if_broken(self, task: TaskState, now: float) -> list[Instruction] | None:
        """SKIPPED if an op ``task`` needs failed (or was skipped, canceled, lost); None if not."""
        failed = next((self.tasks[u] for u in task.upstream if self.tasks[u].status in BROKEN), None)
        if failed is None:
            return None
        blame = failed.blame or failed.id
        return self.mark(task, TaskStatus.SKIPPED, now, failure_kind="upstream", blame=blame,
                         error=f"skipped: upstream op {self.by_id[blame].name!r} failed")

    def ready(self, deferred: set[int], now: float) -> list[Instruction]:
        """Deferred tasks whose inputs are all available (finished, in flight, or starting
        with them) leave ``deferred`` in one ``Submit``; those behind a failure are SKIPPED."""
        stage: set[int] = set()
        out: list[Instruction] = []
        changed = True
        while changed:
            changed = False
            for pos in sorted(deferred):
                task = self.tasks[pos]
                skipped = self.skip_if_broken(task, now)
                if skipped is not None:
                    out += skipped
                    deferred.discard(pos)
                    changed = True
                elif all(u in stage or self.tasks[u].dask_key or self.tasks[u].status in AVAILABLE
                         for u in task.upstream):
                    deferred.discard(pos)
                    stage.add(pos)
                    changed = True
        if stage:
            out.append(Submit(frozenset(stage)))
        return out

    def on_no_worker(self, keys, reason_of) -> list[Instruction]:
        """The scheduler has no worker for the tasks of ``keys`` (their pool has none yet):
        PENDING ones are WAITING, with ``reason_of(pool, annotation)`` as their reason until
        a worker starts them."""
        out: list[Instruction] = []
        for key in keys:
            task = self.by_key[key][0]
            if task.status == TaskStatus.PENDING:
                task.status = TaskStatus.WAITING
                task.reason_before_wait = task.reason
                task.reason = reason_of(task.pool, task.annotation)
                out.append(WriteTask({"id": task.id, "status": "WAITING", "reason": task.reason}))
        return out

    def never_ready(self, now: float) -> list[Instruction]:
        """The run's futures are over and tasks are still deferred: their inputs never came."""
        out: list[Instruction] = []
        for pos in sorted(self.deferred):
            out += self.mark(self.tasks[pos], TaskStatus.FAILED, now, failure_kind="exception",
                             error="the task never became ready to run (its inputs did not arrive)")
        self.deferred.clear()
        return out

    def outcome(self, error: str | None) -> tuple[str, str | None]:
        """The run's status once it ended (``error``: what went wrong outside its tasks),
        and its error."""
        if self.canceled:
            return "CANCELED", error
        if error or any(t.status in (TaskStatus.FAILED, TaskStatus.SKIPPED, TaskStatus.CANCELED) for t in self.tasks):
            if not error:
                failed = [t.name for t in self.tasks if t.status == TaskStatus.FAILED]
                error = f"op(s) failed: {', '.join(dict.fromkeys(failed))}" if failed else "tasks did not finish"
            return "FAILED", error
        return "SUCCESS", error

    def cancel(self) -> None:
        self.canceled = True

    def cancel_unfinished(self, now: float) -> list[Instruction]:
        """Every task that did not end is CANCELED."""
        out: list[Instruction] = []
        for task in self.tasks:
            if not task.status.terminal:
                out += self.mark(task, TaskStatus.CANCELED, now, failure_kind="canceled")
        return out

    def give_up(self, missing: list[TaskState], now: float) -> list[Instruction]:
        """The run stopped waiting for the completion reports of ``missing`` (submitted, not
        ended): CANCELED if the run was canceled, else FAILED (the report was lost)."""
        out: list[Instruction] = []
        for task in missing:
            if self.canceled:
                out += self.mark(task, TaskStatus.CANCELED, now, failure_kind="canceled")
            else:
                out += self.mark(task, TaskStatus.FAILED, now, failure_kind="exception",
                                 error="the task ended but its completion report never arrived")
        return out


def final_fields(task: TaskState) -> dict:
    """The row fields of a task that ended (its provenance gains attempts and outputs)."""
    provenance = dict(task.provenance)
    provenance["attempts"] = task.attempts
    if task.output_meta:
        provenance["outputs"] = task.output_meta
    task.provenance = provenance
    return {
        "status": task.status.value, "attempts": task.attempts, "outputs": task.outputs,
        "stdout": task.stdout, "stderr": task.stderr, "error": task.error, "failure_kind": task.failure_kind,
        "traceback": task.traceback, "worker": task.worker, "started_at": dt(task.started), "ended_at": dt(task.ended),
        "duration": task.duration, "provenance": provenance,
    }


def skip_message(task: TaskState, event: FutureEnded) -> str:
    """Why a task never started, in our words rather than Dask's."""
    from ..core.errors import FlowError

    if isinstance(event.exception, FlowError):  # e.g. a cached input that could not be loaded on a worker
        return f"skipped: an input of op {task.name!r} could not be prepared: {event.exception}"
    if event.error == "KilledWorker":
        return (f"skipped: the workers preparing an input of op {task.name!r} died repeatedly; "
                "resume the run to retry it")
    what = event.error or "an unknown error"
    return f"skipped: an input of op {task.name!r} could not be prepared ({what}); resume the run to retry it"


def dt(epoch: float | None):
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=timezone.utc)
