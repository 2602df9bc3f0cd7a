"""One run in flight: its tasks' live state, the Dask futures, events, cancel, the end."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import FlowError, OpTimeout, RunCanceled, WorkerLost
from ..core.op import Node
from ..core.status import TASK_PROGRESS, RunStatus, TaskStatus
from .tracebacks import localize

log = logging.getLogger("jupyter_flow.engine")

META_GRACE_S = 10.0  # how long to wait for a finished task's completion event
EARLY_OUTPUTS_LIMIT = 8 * 2**20  # bytes of live outputs kept until someone listens
LOG_TAIL = 64 * 1024  # characters of live stdout/stderr written to the store while a task runs


@dataclass
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
    failure_kind: str | None = None  # "exception" | "timeout" | "worker" | "canceled" | "upstream"
    blame: str | None = None  # task id whose failure skipped this one
    stdout: str = ""
    stderr: str = ""
    provenance: dict = field(default_factory=dict)
    dask_key: str | None = None
    metrics: dict = field(default_factory=dict)  # jf.record inside the op (or restored from the cache)

    @property
    def duration(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return max(0.0, self.ended - self.started)


class RunExecution:
    """Tracks a submitted run until it ends and writes what happens to the store."""

    def __init__(self, engine, run_id: str, graph, tasks: list[TaskState], *, owner_id: str,
                 handle=None, dsk=None, layers=None, submit_keys=None, targets=None):
        self.engine = engine
        self.run_id = run_id
        self.graph = graph
        self.tasks = tasks
        self.by_id = {t.id: t for t in tasks}
        self.by_key: dict[str, list[TaskState]] = {}
        for t in tasks:
            if t.dask_key:
                self.by_key.setdefault(t.dask_key, []).append(t)
        self.owner_id = owner_id
        self.handle = handle
        self.status = RunStatus.RUNNING
        self.error: str | None = None
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.done = threading.Event()
        self.cancel_requested = False
        self.futures: list = []
        self._hlg = layers
        self._submit_keys = submit_keys or []
        self._thread: threading.Thread | None = None
        self._waiting_keys = list(dict.fromkeys(t.dask_key for t in tasks if t.dask_key and t.resources))
        self._output_listeners: list = []
        self._early_outputs: list[tuple[str, int, list]] = []  # live outputs before a listener came
        self._early_bytes = 0

    def add_output_listener(self, listener) -> None:
        """Call ``listener(task_id, seq, items)`` with the Jupyter outputs ops show as they run
        (``items`` are nbformat outputs; ``seq`` is the index of the first one in the task's
        record). Outputs that arrived before are handed over first."""
        with self.lock:
            early, self._early_outputs = self._early_outputs, []
            self._output_listeners.append(listener)
        for args in early:
            listener(*args)

    # ----------------------------------------------------------------- start
    def start(self) -> None:
        restored: dict = {}
        for task in self.tasks:
            if task.cached and task.metrics:
                restored.update(task.metrics)
        if restored:  # metrics recorded inside ops come back with their cached outputs
            self.engine.writer.call(self.engine.store.record_metrics, self.run_id, restored)
        if not self._submit_keys:
            self._finish()
            return
        self.engine.subscribe(self.handle, self)
        self.futures = self.handle.client.get(self._hlg, self._submit_keys, sync=False)
        self._hlg = None
        self._thread = threading.Thread(target=self._monitor, name=f"jupyter-flow-run-{self.run_id}", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- events
    def on_event(self, msg: dict) -> None:
        task = self.by_id.get(msg.get("task"))
        if task is None:
            if msg.get("t") == "metric":
                self.engine.writer.call(self.engine.store.record_metric, self.run_id, msg["name"], msg["value"])
            return
        kind = msg.get("t")
        if kind == "output":
            self._on_output(task, msg)
            return
        if kind == "metric":
            self._on_metric(task, msg)
            return
        with self.lock:
            if task.status.terminal and kind == "start":
                return
            task.worker = msg.get("worker") or task.worker
            prov = {k: msg.get(k) for k in ("worker", "host", "pid", "slurm_job_id", "gpus") if msg.get(k)}
            task.provenance.update(prov)
            update: dict[str, Any] = {"id": task.id}
            if kind == "start":
                task.attempts += 1
                update["attempts"] = task.attempts
                if task.started is None:
                    task.started = msg.get("time") or time.time()
                    update["started_at"] = _dt(task.started)
                if TASK_PROGRESS.get(task.status, 99) < TASK_PROGRESS[TaskStatus.RUNNING]:
                    task.status = TaskStatus.RUNNING
                    update["status"] = TaskStatus.RUNNING.value
                update["worker"] = task.worker
            elif kind == "done":
                # Retries inside the wrapper count too (a start event may be lost with a dying worker).
                task.attempts = max(task.attempts, int(msg.get("attempt") or 1))
                task.outputs = {name: meta["hash"] for name, meta in msg["outputs"].items()}
                task.output_meta = msg["outputs"]
                task.stdout, task.stderr = msg.get("stdout", ""), msg.get("stderr", "")
                task.started = msg.get("started") or task.started
                task.ended = msg.get("time") or time.time()
                task.status = TaskStatus.SUCCESS
                update.update(self._final_fields(task))
                self.engine.writer.artifacts([
                    {"hash": m["hash"], "size": m["size"], "serializer": m["serializer"],
                     "serializer_version": m["serializer_version"], "type": m["type"], "uri": m["uri"]}
                    for m in msg["outputs"].values()
                ])
                if task.cacheable and task.key:
                    self.engine.writer.cache_entry({
                        "key": task.key, "outputs": task.outputs, "components": task.components,
                        "op_name": task.name, "task_id": task.id, "metrics": dict(task.metrics) or None,
                    })
            elif kind == "failed":
                task.attempts = max(task.attempts, int(msg.get("attempt") or 1))
                task.error = msg.get("error")
                task.traceback = localize(msg.get("traceback"), task.node.op)
                task.stdout, task.stderr = msg.get("stdout", ""), msg.get("stderr", "")
                task.failure_kind = "timeout" if msg.get("timeout") else "exception"
                task.started = msg.get("started") or task.started
                task.ended = msg.get("time") or time.time()
                task.status = TaskStatus.FAILED
                update.update(self._final_fields(task))
            else:
                return
            self.engine.writer.task_update(update)
            self.changed.notify_all()

    def _on_output(self, task: TaskState, msg: dict) -> None:
        items = msg.get("items") or []
        seq = int(msg.get("seq") or 0)
        streams = {"stdout": [], "stderr": []}
        for item in items:
            if item.get("output_type") == "stream" and item.get("name") in streams:
                streams[item["name"]].append(item.get("text") or "")
        with self.lock:
            if not task.status.terminal and (streams["stdout"] or streams["stderr"]):
                # The store (and the sidebar's logs) follow the op while it runs.
                task.stdout = (task.stdout + "".join(streams["stdout"]))[-LOG_TAIL:]
                task.stderr = (task.stderr + "".join(streams["stderr"]))[-LOG_TAIL:]
                self.engine.writer.task_update({"id": task.id, "stdout": task.stdout, "stderr": task.stderr})
            listeners = list(self._output_listeners)
            if not listeners:
                size = sum(len(str(item)) for item in items)
                if self._early_bytes + size <= EARLY_OUTPUTS_LIMIT:
                    self._early_bytes += size
                    self._early_outputs.append((task.id, seq, items))
        for listener in listeners:
            try:
                listener(task.id, seq, items)
            except Exception:  # a broken display must not stop the run's bookkeeping
                log.exception("jupyter_flow: an output listener failed")

    def _on_metric(self, task: TaskState, msg: dict) -> None:
        name, value = msg.get("name"), msg.get("value")
        with self.lock:
            task.metrics[name] = value
            metrics = dict(task.metrics)
        self.engine.writer.task_update({"id": task.id, "metrics": metrics})
        self.engine.writer.call(self.engine.store.record_metrics, self.run_id, {name: value})

    def _final_fields(self, task: TaskState) -> dict:
        provenance = dict(task.provenance)
        provenance["attempts"] = task.attempts
        if task.output_meta:
            provenance["outputs"] = task.output_meta
        task.provenance = provenance
        return {
            "status": task.status.value,
            "attempts": task.attempts,
            "outputs": task.outputs,
            "stdout": task.stdout,
            "stderr": task.stderr,
            "error": task.error,
            "traceback": task.traceback,
            "worker": task.worker,
            "started_at": _dt(task.started),
            "ended_at": _dt(task.ended),
            "duration": task.duration,
            "provenance": provenance,
        }

    # --------------------------------------------------------------- monitor
    def _monitor(self) -> None:
        from distributed import as_completed

        try:
            completed = as_completed(self.futures, loop=self.handle.client.loop, with_results=False)
            last_waiting_check = 0.0
            pending = set(self.futures)
            while pending:
                batch_done = False
                for future in completed.next_batch(block=False) if completed.has_ready() else []:
                    pending.discard(future)
                    self._on_future(future)
                    batch_done = True
                if not pending:
                    break
                if not batch_done:
                    now = time.monotonic()
                    if self._waiting_keys and now - last_waiting_check > 1.0:
                        last_waiting_check = now
                        self._check_waiting()
                    if self.cancel_requested:
                        self._cancel_futures()
                    # Sleep until something completes (or a short tick for cancel/WAITING).
                    _wait_any(completed, 0.2)
            self._await_metas()
        except Exception as err:  # the run must end even if monitoring breaks
            log.exception("jupyter_flow: monitoring run %s failed", self.run_id)
            self.error = f"monitoring failed: {err}"
        finally:
            self._finish()

    def _on_future(self, future) -> None:
        # A fused chain is one future for several tasks, in chain order.
        for task in self.by_key.get(future.key, ()):
            self._on_task_future(future, task)

    def _on_task_future(self, future, task: TaskState) -> None:
        status = future.status
        with self.lock:
            if status == "finished":
                return  # the "done" event carries outputs; awaited in _await_metas
            if status == "cancelled" or self.cancel_requested:
                if not task.status.terminal:
                    self._mark(task, TaskStatus.CANCELED, failure_kind="canceled")
                return
            if status == "error":
                if task.status == TaskStatus.FAILED:
                    try:
                        task.exception = future.exception(timeout=5)
                    except Exception:  # the exception could not be fetched; the text is kept
                        task.exception = None
                    return
                exc = None
                try:
                    exc = future.exception(timeout=5)
                except Exception:
                    pass
                name = type(exc).__name__ if exc is not None else "Error"
                if name == "KilledWorker" and getattr(exc, "task", None) == task.dask_key:
                    self._mark(task, TaskStatus.FAILED, failure_kind="worker",
                               error=f"WorkerLost: the workers running op {task.name!r} died {task.attempts} times")
                    return
                if task.attempts == 0:
                    blame = self._blame(task)
                    self._mark(task, TaskStatus.SKIPPED, failure_kind="upstream", blame=blame,
                               error=f"skipped: upstream op {self.by_id[blame].name!r} failed" if blame
                               else _skip_message(task, exc), exception=exc)
                    return
                # Started but no "failed" event yet: wait for it in _await_metas.

    def _blame(self, task: TaskState) -> str | None:
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

    def _mark(self, task: TaskState, status: TaskStatus, **fields) -> None:
        for name, value in fields.items():
            setattr(task, name, value)
        task.status = status
        if task.ended is None:
            task.ended = time.time()
        update = {"id": task.id, "status": status.value, "error": task.error,
                  "ended_at": _dt(task.ended), "attempts": task.attempts}
        self.engine.writer.task_update(update)
        self.changed.notify_all()

    def _check_waiting(self) -> None:
        from .worker import no_worker_keys

        keys = [k for k in self._waiting_keys if not self.by_key[k][0].status.terminal]
        if not keys:
            self._waiting_keys = []
            return
        try:
            waiting = self.handle.client.run_on_scheduler(no_worker_keys, keys=keys)
        except Exception as err:  # the scheduler may refuse run_on_scheduler; WAITING is then unknown
            log.debug("jupyter_flow: cannot ask the scheduler for waiting tasks: %s", err)
            self._waiting_keys = []
            return
        with self.lock:
            for key in waiting:
                task = self.by_key[key][0]
                if task.status == TaskStatus.PENDING:
                    wanted = ", ".join(f"{k}={v:g}" for k, v in task.resources.items())
                    task.status = TaskStatus.WAITING
                    task.reason = f"waiting for a worker that declares {wanted}"
                    self.engine.writer.task_update({"id": task.id, "status": "WAITING", "reason": task.reason})
                    self.changed.notify_all()

    def _await_metas(self) -> None:
        deadline = time.monotonic() + META_GRACE_S
        with self.lock:
            while True:
                missing = [t for t in self.tasks if t.dask_key and not t.status.terminal
                           and (self.cancel_requested is False)]
                if not missing or time.monotonic() > deadline:
                    break
                self.changed.wait(0.1)
            for task in missing:
                if self.cancel_requested:
                    self._mark(task, TaskStatus.CANCELED, failure_kind="canceled")
                else:
                    self._mark(task, TaskStatus.FAILED, failure_kind="exception",
                               error="the task ended but its completion report never arrived")
            for task in self.tasks:
                if task.status == TaskStatus.FAILED and task.exception is None and task.dask_key:
                    future = next((f for f in self.futures if f.key == task.dask_key), None)
                    if future is not None and future.status == "error":
                        try:
                            task.exception = future.exception(timeout=5)
                        except Exception:
                            pass

    # ---------------------------------------------------------------- cancel
    def request_cancel(self) -> None:
        self.cancel_requested = True

    def _cancel_futures(self) -> None:
        client = self.handle.client
        unfinished = [f for f in self.futures if f.status == "pending"]
        if unfinished:
            client.cancel(unfinished, force=True)
        try:
            from .worker import kill_isolated

            client.run(kill_isolated, self.run_id)
        except Exception as err:  # best effort: a worker may be gone already
            log.debug("jupyter_flow: could not kill isolated processes: %s", err)
        with self.lock:
            for task in self.tasks:
                if not task.status.terminal:
                    self._mark(task, TaskStatus.CANCELED, failure_kind="canceled")

    # ------------------------------------------------------------------- end
    def _finish(self) -> None:
        with self.lock:
            if self.cancel_requested:
                for task in self.tasks:
                    if not task.status.terminal:
                        self._mark(task, TaskStatus.CANCELED, failure_kind="canceled")
                status = RunStatus.CANCELED
            elif self.error or any(t.status in (TaskStatus.FAILED, TaskStatus.SKIPPED, TaskStatus.CANCELED) for t in self.tasks):
                status = RunStatus.FAILED
                if not self.error:
                    failed = [t.name for t in self.tasks if t.status == TaskStatus.FAILED]
                    self.error = f"op(s) failed: {', '.join(dict.fromkeys(failed))}" if failed else "tasks did not finish"
            else:
                status = RunStatus.SUCCESS
            self.status = status
        # Written in order after the run's task updates; this process flushes the writer
        # before it reads the store, other processes see it within milliseconds.
        self.engine.writer.call(self.engine.store.finish_run, self.run_id, self.owner_id, status.value, error=self.error)
        self.engine.run_ended(self)
        # Release the cluster's copies: values are loaded from artifacts from now on.
        futures, self.futures = self.futures, []
        if futures and self.handle is not None:
            try:
                self.handle.client.cancel(futures)
            except Exception:  # the client may be closing; the scheduler forgets them anyway
                pass
        self.done.set()
        with self.lock:
            self.changed.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    def failure_for(self, task: TaskState) -> BaseException:
        """The exception ``result()`` raises for a target that did not succeed."""
        if task.status == TaskStatus.SKIPPED and task.blame:
            task = self.by_id[task.blame]
        return build_failure(task.name, self.run_id, task.status, task.failure_kind, task.error,
                             task.traceback, task.exception)


def build_failure(name, run_id, status, failure_kind, error, tb, exception) -> BaseException:
    status = TaskStatus(status) if not isinstance(status, TaskStatus) else status
    note = f"op {name!r} failed in run {run_id}"
    if status == TaskStatus.CANCELED:
        return RunCanceled(f"run {run_id} was canceled before op {name!r} finished")
    if status == TaskStatus.LOST:
        from ..core.errors import RunLost

        return RunLost(f"run {run_id} was lost before op {name!r} finished; resume it with jf.resume({run_id!r})")
    if failure_kind == "timeout":
        exc: BaseException = OpTimeout(f"op {name!r} {error.split(': ', 1)[-1] if error else 'timed out'} (run {run_id})")
    elif failure_kind == "worker":
        exc = WorkerLost(f"{error} (run {run_id}); the run can be resumed with jf.resume({run_id!r})")
    elif exception is not None and not _is_killed_worker(exception):
        exc = exception
    else:
        exc = FlowError(f"op {name!r} failed in run {run_id}: {error or status.value}")
    if tb:
        note += "\nremote traceback:\n" + tb.rstrip()
    if not any(note == n for n in getattr(exc, "__notes__", [])):
        exc.add_note(note)
    return exc


def _skip_message(task: TaskState, exc: BaseException | None) -> str:
    """Why a task never started, in our words rather than Dask's."""
    if isinstance(exc, FlowError):  # e.g. a cached input that could not be loaded on a worker
        return f"skipped: an input of op {task.name!r} could not be prepared: {exc}"
    if _is_killed_worker(exc):
        return (f"skipped: the workers preparing an input of op {task.name!r} died repeatedly; "
                "resume the run to retry it")
    what = type(exc).__name__ if exc is not None else "an unknown error"
    return f"skipped: an input of op {task.name!r} could not be prepared ({what}); resume the run to retry it"


def _is_killed_worker(exc) -> bool:
    return type(exc).__name__ == "KilledWorker"


def _wait_any(completed, timeout: float) -> None:
    """Block until ``completed`` has a finished future or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not completed.has_ready() and time.monotonic() < deadline:
        time.sleep(0.005)


def _dt(epoch: float | None):
    if epoch is None:
        return None
    from datetime import datetime, timezone

    return datetime.fromtimestamp(epoch, tz=timezone.utc)
