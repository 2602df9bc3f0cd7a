"""One run in flight: its tasks' live state, the Dask futures, events, cancel, the end."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..core import keys as keylib
from ..core.errors import ArtifactError, FencedWrite, FlowError, OpTimeout, RunCanceled, StoreError, WorkerLost
from ..core.op import MapOp, Node
from ..core.status import TASK_PROGRESS, RunStatus, TaskStatus
from .tracebacks import localize

log = logging.getLogger("jupyter_flow.engine")

META_GRACE_S = 10.0  # how long to wait for a finished task's completion event
_AVAILABLE = (TaskStatus.SUCCESS, TaskStatus.CACHED)
_BROKEN = (TaskStatus.FAILED, TaskStatus.SKIPPED, TaskStatus.CANCELED, TaskStatus.LOST)
CLAIM_POLL_S = 0.25  # how often a run waiting for another run's result looks again
CANCEL_POLL_S = 0.2  # how often a cancel looks whether the run's ops left their workers
RECORD_TIMEOUT_S = 120.0  # how long the end of a run waits for its records to be written


class RunNotRecorded(StoreError):
    """The run's records could not be written to the store (full disk, store gone)."""
EARLY_OUTPUTS_LIMIT = 8 * 2**20  # bytes of live outputs kept until someone listens
LOG_TAIL = 64 * 1024  # characters of live stdout/stderr written to the store while a task runs


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
    pool: str | None = None  # the worker pool it is placed in (engine/pools.py)
    annotation: dict | None = None  # the Dask resources its task asks for
    reason_before_wait: str | None = None  # why it runs, while `reason` says what it waits for

    @property
    def duration(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return max(0.0, self.ended - self.started)


class RunExecution:
    """Tracks a submitted run until it ends and writes what happens to the store."""

    def __init__(self, engine, run_id: str, graph, tasks: list[TaskState], *, owner_id: str,
                 handle=None, stage: set[int] | None = None, waits: dict[str, list[TaskState]] | None = None,
                 deferred: set[int] | None = None, expand: set[int] | None = None,
                 forced: set | None = None, recorded_final: bool = False):
        self.engine = engine
        self.run_id = run_id
        self.graph = graph
        self.tasks = tasks
        self.by_id = {t.id: t for t in tasks}
        self.by_key: dict[str, list[TaskState]] = {}
        self.owner_id = owner_id
        self.handle = handle
        self.status = RunStatus.RUNNING
        self.error: str | None = None
        self.record_error: RunNotRecorded | None = None
        self.fenced = False  # the store declared this process dead while the run went on
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.done = threading.Event()
        self.cancel_requested = False
        self._stopped = False  # the run's work on the cluster was stopped (cancel)
        self.futures: list = []
        self._stage = set(stage or ())
        self._waits = dict(waits or {})  # cache key -> tasks waiting for another computation of it
        self._deferred = set(deferred or ())  # tasks that need a value still being waited for
        self._expand = set(expand or ())  # dynamic maps whose list is not known yet
        self._forced = set(forced or ())  # ops and nodes to rerun despite the cache
        self.positions = dict(graph.position)  # node -> position, mapped tasks included
        self._last_reconcile = 0.0
        self._recorded_final = recorded_final  # created as SUCCESS: nothing was left to compute
        self._thread: threading.Thread | None = None
        self._ask_waiting = True
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
            self.engine.writer.call(self.engine.store.record_metrics, self.run_id, restored, run_id=self.run_id)
        if not self._stage and not self._waits and not self._expand:
            self._finish()
            return
        self.engine.subscribe(self.handle, self)
        if self._stage:
            stage, self._stage = self._stage, set()
            self._submit_stage(stage)
        # Maps over lists that are already known (cached) expand at once.
        self._advance(poll_claims=False)  # its futures join self.futures, which the monitor follows
        self._thread = threading.Thread(target=self._monitor, name=f"jupyter-flow-run-{self.run_id}", daemon=True)
        self._thread.start()

    def _submit_stage(self, positions: set[int]) -> list:
        """Send these tasks to the cluster as one graph; returns their futures."""
        layers, keys = self.engine._build_graph(self.run_id, self.tasks, positions, self.positions)
        with self.lock:
            for pos in sorted(positions):
                task = self.tasks[pos]
                self.by_key.setdefault(task.dask_key, []).append(task)
        futures = self.handle.client.get(layers, keys, sync=False)
        self.futures.extend(futures)
        return futures

    # ---------------------------------------------------------------- events
    def on_event(self, msg: dict) -> None:
        task = self.by_id.get(msg.get("task"))
        if task is None:
            if msg.get("t") == "metric":
                self.engine.writer.call(self.engine.store.record_metric, self.run_id, msg["name"], msg["value"],
                                        run_id=self.run_id)
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
            prov = {k: msg.get(k) for k in ("worker", "host", "pid", "slurm_job_id", "pool", "gpus") if msg.get(k)}
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
                if task.reason_before_wait is not None:  # a worker came: the reason is why it runs again
                    task.reason, task.reason_before_wait = task.reason_before_wait, None
                    update["reason"] = task.reason
                update["worker"] = task.worker
            elif kind in ("done", "failed") and (self.cancel_requested or task.status.terminal):
                # A canceled op (or one already given up on) ended anyway: what it produced is
                # not the run's result, so it enters neither the cache nor the artifact rows.
                return
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
                ], self.run_id)
                if task.cacheable and task.key:
                    signers = {m["signer"] for m in msg["outputs"].values() if m.get("signer")}
                    self.engine.writer.cache_entry({
                        "key": task.key, "outputs": task.outputs, "components": task.components,
                        "op_name": task.name, "task_id": task.id, "replace": task.forced,
                        "metrics": dict(task.metrics) or None, "signer": min(signers) if signers else None,
                    }, self.run_id)
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
                if task.cacheable and task.key:
                    # Runs waiting for this key compute it themselves now.
                    self.engine.writer.call(self.engine.store.release_claims, self.run_id, [task.key])
            else:
                return
            self.engine.writer.task_update(update, self.run_id)
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
            "failure_kind": task.failure_kind,
            "traceback": task.traceback,
            "worker": task.worker,
            "started_at": _dt(task.started),
            "ended_at": _dt(task.ended),
            "duration": task.duration,
            "provenance": provenance,
        }

    def final_records(self) -> list[dict]:
        """Every task's final state as the store should hold it: written again when the
        run's own writes failed (a full disk) and the store accepts writes again."""
        with self.lock:
            return [{"id": task.id, "reason": task.reason, **self._final_fields(task)} for task in self.tasks]

    # --------------------------------------------------------------- monitor
    def _monitor(self) -> None:
        from distributed import as_completed

        try:
            completed = as_completed(self.futures, loop=self.handle.client.loop, with_results=False)
            last_waiting_check = last_claim_poll = 0.0
            pending = set(self.futures)
            idle_since: float | None = None
            while True:
                ready = completed.next_batch(block=False) if completed.has_ready() else []
                for future in ready:
                    pending.discard(future)
                    self._on_future(future)
                if self.cancel_requested:
                    self._waits.clear()
                    self._deferred.clear()
                    self._expand.clear()
                    if pending:
                        self._cancel_futures()
                now = time.monotonic()
                poll = bool(self._waits) and now - last_claim_poll >= CLAIM_POLL_S
                if poll:
                    last_claim_poll = now
                if poll or self._expand or self._deferred:
                    started = self._advance(poll_claims=poll)
                    completed.update(started)
                    pending.update(started)
                if not pending and not self._waits and not self._expand:
                    break
                if not pending and not self._waits:
                    # Only maps wait, for their list's completion report: it comes with the
                    # upstream op's "done" event; give up on it as _await_metas does.
                    idle_since = idle_since or now
                    if now - idle_since > META_GRACE_S:
                        self._await_metas()
                else:
                    idle_since = None
                if not ready:
                    if self._ask_waiting and now - last_waiting_check > 1.0:
                        last_waiting_check = now
                        self._check_waiting()
                    # Sleep until something completes (or a short tick for cancel/WAITING).
                    _wait_any(completed, 0.2 if not self._expand else 0.02)
            self._await_metas()
            with self.lock:
                for pos in sorted(self._deferred):
                    self._mark(self.tasks[pos], TaskStatus.FAILED, failure_kind="exception",
                               error="the task never became ready to run (its inputs did not arrive)")
                self._deferred.clear()
        except Exception as err:  # the run must end even if monitoring breaks
            log.exception("jupyter_flow: monitoring run %s failed", self.run_id)
            self.error = f"monitoring failed: {err}"
        finally:
            self._finish()

    def _advance(self, poll_claims: bool) -> list:
        """Start what can start now: keys taken over from dead claimers, maps whose list is
        known, and tasks whose inputs are all there. Returns the new futures."""
        took_over = self._poll_claims() if poll_claims and self._waits else set()
        self._expand_ready()
        with self.lock:
            self._deferred |= took_over
            stage = self._ready_stage() if self._deferred else set()
            self.changed.notify_all()
        return self._submit_stage(stage) if stage else []

    def _ready_stage(self) -> set[int]:
        """Deferred tasks whose inputs are all available (finished, in flight, or starting
        with them); those behind a failure are SKIPPED."""
        stage: set[int] = set()
        changed = True
        while changed:
            changed = False
            for pos in sorted(self._deferred):
                task = self.tasks[pos]
                ups = [self.tasks[u] for u in task.upstream]
                if self._skipped_for_upstream(task):
                    self._deferred.discard(pos)
                    changed = True
                elif all(u.position in stage or u.dask_key or u.status in _AVAILABLE for u in ups):
                    self._deferred.discard(pos)
                    stage.add(pos)
                    changed = True
        return stage

    def _skipped_for_upstream(self, task: TaskState) -> bool:
        """Mark ``task`` SKIPPED if an op it needs failed (or was skipped, canceled, lost)."""
        failed = next((self.tasks[u] for u in task.upstream if self.tasks[u].status in _BROKEN), None)
        if failed is None:
            return False
        blame = failed.blame or failed.id
        self._mark(task, TaskStatus.SKIPPED, failure_kind="upstream", blame=blame,
                   error=f"skipped: upstream op {self.by_id[blame].name!r} failed")
        return True

    def _expand_ready(self) -> None:
        for pos in sorted(self._expand):
            task = self.tasks[pos]
            with self.lock:
                if self._skipped_for_upstream(task):
                    self._expand.discard(pos)
                    continue
            if not all(self.tasks[u].status in _AVAILABLE for u in task.upstream):
                continue
            self._expand.discard(pos)
            try:
                self._expand_map(task)
            except (FlowError, ArtifactError) as err:
                with self.lock:
                    self._mark(task, TaskStatus.FAILED, failure_kind="exception", error=str(err))

    def _expand_map(self, gather: TaskState) -> None:
        """Create the mapped tasks of a dynamic map now that its list is known.

        Each item's key is the key ``op(item, **params)`` has anywhere (a static jf.map of
        the same items shares the cache); an item without a deterministic token gets a key
        derived from the map's key (which covers the upstream key) and its position.
        """
        from ..core.composites import parallel
        from ..core.ids import new_id
        from ..core.op import OutputRef
        from . import runtime

        node = gather.node
        items_ref = node.args[0]
        items_node = items_ref.node if isinstance(items_ref, OutputRef) else items_ref
        source = self.tasks[self.positions[items_node]]
        output = items_ref.output if isinstance(items_ref, OutputRef) else "return"
        items = self.engine.artifacts.get(source.outputs[output])
        inner = node.op.inner
        if not isinstance(items, (list, tuple)):
            raise FlowError(
                f"jf.map({inner.name}): the items come from op {source.name!r}, which returned a "
                f"{type(items).__name__}; it must return a list (or tuple) of items"
            )
        param_nodes = {n: self.tasks[self.positions[n]] for n in node.upstream() if n is not items_node}
        upstream_keys = {n: t.key for n, t in param_nodes.items()}
        memo: dict = {}
        fresh: list[TaskState] = []
        for index, item in enumerate(items):
            item_node = inner(item, **node.kwargs)
            item_node.index = index
            tk = keylib.task_key(item_node, upstream_keys, memo=memo)
            key, cacheable, reason = tk.key, tk.disabled_reason is None, tk.disabled_reason
            if not cacheable and gather.cacheable:
                key = keylib.sha256_text(f"{gather.key}:{index}")
                cacheable, reason = True, None
            state = TaskState(
                id=new_id(), node=item_node, position=len(self.tasks), name=inner.name, index=index,
                key=key, cacheable=cacheable, components=tk.components, reason=reason,
                upstream=[source.position] + [t.position for t in param_nodes.values()],
                resources=dict(inner.resources),
            )
            self.tasks.append(state)
            self.by_id[state.id] = state
            self.positions[item_node] = state.position
            fresh.append(state)
        forced = {s.position for s in fresh if s.node.op in self._forced or inner in self._forced}
        from . import pools as pool_lib

        # The mapped tasks go to the pool their op's request fits (FlowError if none does).
        pool_lib.annotations(fresh, getattr(self.handle, "pools", None))
        store = self.engine.store
        hits = self.engine.usable_hits(
            fresh, store.lookup_cache([s.key for s in fresh if s.cacheable and s.position not in forced],
                                      components=False))
        misses = {s.position for s in fresh if s.position in forced or not s.cacheable or s.key not in hits}
        previous = store.last_components([inner.name], {inner.name: keylib.op_origin(inner)}) if misses else {}
        for s in fresh:
            if s.position in misses:
                s.forced = s.position in forced
                s.reason = "forced" if s.forced else s.reason or keylib.explain(s.components, previous.get(inner.name))
            else:
                runtime._restore(s, hits[s.key])
        waits = self.engine._claim(self.run_id, fresh, misses, lambda s: s.position in forced)
        for s in fresh:
            s.provenance = {**s.provenance, "op": s.name, "key": s.key, "map": gather.id, "index": s.index}
            if s.cached:
                s.provenance["cached_from"] = hits.get(s.key, {}).get("task_id")
        rows = [runtime._task_row(self.run_id, s, None) for s in fresh]
        self.engine.writer.call(store.add_tasks, self.run_id, self.owner_id, rows, run_id=self.run_id)
        collect = parallel([s.node for s in fresh])
        with self.lock:
            for key, tasks in waits.items():
                self._waits.setdefault(key, []).extend(tasks)
            waiting = {t.position for tasks in waits.values() for t in tasks}
            self._deferred |= (misses - waiting) | {gather.position}
            gather.node = collect
            gather.upstream = [s.position for s in fresh]
            self.positions[collect] = gather.position
            self.changed.notify_all()

    def _poll_claims(self) -> set[int]:
        """Look again at the keys other computations hold; restore, take over, or go on waiting.

        Returns the tasks that this run computes itself now.
        """
        from ..core.settings import heartbeat_timeout

        store = self.engine.store
        now = time.monotonic()
        timeout = heartbeat_timeout()
        if now - self._last_reconcile > max(1.0, timeout / 6):
            # A claimer that stopped heartbeating is declared dead here, which frees its keys.
            self._last_reconcile = now
            store.reconcile(timeout)
        status = store.claim_status(list(self._waits))
        free = {key: tasks[0].id for key, tasks in self._waits.items()
                if status[key]["state"] == "free" or (status[key]["state"] == "held" and status[key]["fenced"])}
        if free:
            try:
                status.update(store.claim_keys(self.engine.owner_id, self.run_id, free))
            except FencedWrite:
                self.engine._on_fenced()  # this run is LOST in the store; it ends as it is
                self._waits.clear()
                return set()
        took_over: set[int] = set()
        with self.lock:
            for key, state in status.items():
                tasks = self._waits.get(key)
                if not tasks:
                    continue
                if state["state"] == "cached" and not self.engine.usable_entry(state):
                    # The other run was another user's, whom this user does not trust: compute
                    # it here (the cache entry stays theirs).
                    for task in tasks:
                        task.reason = self.engine.untrusted_reason(state)
                        self.engine.writer.task_update({"id": task.id, "reason": task.reason}, self.run_id)
                        if isinstance(task.node.op, MapOp):
                            self._expand.add(task.position)
                        else:
                            took_over.add(task.position)
                    del self._waits[key]
                elif state["state"] == "cached":
                    for task in tasks:
                        self._restore(task, state)
                    del self._waits[key]
                elif state["state"] == "held":
                    for task in tasks:
                        task.waiting_for = state["run_id"]
                elif state["state"] == "mine":
                    first, *twins = tasks
                    held_by = state.get("took_over_from") or first.waiting_for
                    first.reason = (f"no cache entry (taken over from run {held_by}, which ended without "
                                    "recording a value: lost, failed or canceled)")
                    self.engine.writer.task_update({"id": first.id, "reason": first.reason}, self.run_id)
                    if isinstance(first.node.op, MapOp):
                        self._expand.add(first.position)
                    else:
                        took_over.add(first.position)
                    if twins:
                        self._waits[key] = twins
                    else:
                        del self._waits[key]
            self.changed.notify_all()
        return took_over

    def _restore(self, task: TaskState, entry: dict) -> None:
        """A task that waited for another computation of its key: restore that result."""
        task.status = TaskStatus.CACHED
        task.cached = True
        task.outputs = dict(entry["outputs"])
        task.metrics = dict(entry.get("metrics") or {})
        if task.metrics:
            self.engine.writer.call(self.engine.store.record_metrics, self.run_id, task.metrics,
                                    run_id=self.run_id)
        producer = entry.get("task_id")
        twin = self.by_id.get(producer) if producer else None
        if twin is not None:  # the same value twice in this run: computed once, by its twin
            label = twin.name if twin.index is None else f"{twin.name}[{twin.index}]"
            task.reason = f"cached (the same value as {label} of this run, computed once)"
        else:
            task.reason = "cached (computed meanwhile by another run)"
        task.provenance["cached_from"] = producer
        task.ended = time.time()
        self.engine.writer.task_update({
            "id": task.id, "status": TaskStatus.CACHED.value, "cached": True, "outputs": task.outputs,
            "reason": task.reason, "provenance": dict(task.provenance), "ended_at": _dt(task.ended),
        }, self.run_id)

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
                    if task.status.terminal:
                        return  # an op of a fused chain that finished before the one that died
                    chain = self.by_key.get(task.dask_key, [task])
                    # The first op of the chain that did not finish is the one that died.
                    victim = next(t for t in chain if t.status not in (TaskStatus.SUCCESS, TaskStatus.CACHED))
                    if task is victim:
                        # Start events of a dying worker may never arrive: count what the
                        # scheduler allowed.
                        attempts = max(task.attempts, int(getattr(exc, "allowed_failures", 0)) + 1)
                        self._mark(task, TaskStatus.FAILED, failure_kind="worker", attempts=attempts,
                                   error=(f"WorkerLost: the worker running op {task.name!r} died on each of "
                                          f"{attempts} attempts (each on a different worker); the op probably "
                                          "crashes its process (memory, a segfault, os._exit)"))
                    else:
                        self._mark(task, TaskStatus.SKIPPED, failure_kind="upstream", blame=victim.id,
                                   error=f"skipped: upstream op {victim.name!r} failed (its worker died)")
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
                  "failure_kind": task.failure_kind, "ended_at": _dt(task.ended), "attempts": task.attempts}
        self.engine.writer.task_update(update, self.run_id)
        self.changed.notify_all()

    def _check_waiting(self) -> None:
        from .pools import waiting_reason
        from .worker import no_worker_keys

        keys = [k for k, tasks in self.by_key.items() if tasks[0].annotation and not tasks[0].status.terminal]
        if not keys:
            return
        try:
            waiting = self.handle.client.run_on_scheduler(no_worker_keys, keys=keys)
        except Exception as err:  # the scheduler may refuse run_on_scheduler; WAITING is then unknown
            log.debug("jupyter_flow: cannot ask the scheduler for waiting tasks: %s", err)
            self._ask_waiting = False
            return
        with self.lock:
            for key in waiting:
                task = self.by_key[key][0]
                if task.status == TaskStatus.PENDING:
                    task.status = TaskStatus.WAITING
                    task.reason_before_wait = task.reason
                    task.reason = waiting_reason(task.pool, task.annotation)
                    self.engine.writer.task_update({"id": task.id, "status": "WAITING", "reason": task.reason},
                                                   self.run_id)
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
        """Stop the run's work on the cluster, once: forget its futures, tell the workers (an
        isolated op's process is killed, what a running op still produces is dropped), and
        restart a worker still running one of its ops after the grace period."""
        if self._stopped:
            return
        self._stopped = True
        client = self.handle.client
        unfinished = [f for f in self.futures if f.status == "pending"]
        if unfinished:
            client.cancel(unfinished, force=True)
        from .worker import cancel_run

        try:
            busy = {addr: n for addr, n in client.run(cancel_run, self.run_id, on_error="return").items()
                    if isinstance(n, int) and n}
        except Exception as err:  # best effort: the scheduler may be gone already
            log.debug("jupyter_flow: could not reach the workers to cancel run %s: %s", self.run_id, err)
            busy = {}
        with self.lock:
            for task in self.tasks:
                if not task.status.terminal:
                    self._mark(task, TaskStatus.CANCELED, failure_kind="canceled")
        if busy:
            self._free_workers(list(busy))

    def _free_workers(self, addresses: list[str]) -> None:
        """Wait up to the cancel grace period for the run's ops on ``addresses`` to end (a
        thread cannot be interrupted), then restart the workers still running one."""
        from ..core.settings import DEFAULT_CANCEL_GRACE_S, cancel_grace
        from . import cluster as clusters
        from .worker import executing

        client = self.handle.client
        try:
            grace = cancel_grace()
        except ValueError as err:  # a bad setting must not keep the canceled op on its worker
            log.warning("jupyter_flow: %s; using %g s", err, DEFAULT_CANCEL_GRACE_S)
            grace = DEFAULT_CANCEL_GRACE_S
        deadline = time.monotonic() + grace
        while addresses:
            try:
                counts = client.run(executing, self.run_id, workers=addresses, on_error="return")
            except Exception as err:  # the workers are gone: nothing of the run runs there
                log.debug("jupyter_flow: could not ask workers about run %s: %s", self.run_id, err)
                return
            addresses = [addr for addr, n in counts.items() if isinstance(n, int) and n]
            if not addresses or time.monotonic() >= deadline:
                break
            time.sleep(CANCEL_POLL_S)
        if addresses:
            names = ", ".join(dict.fromkeys(t.name for t in self.tasks if t.worker in addresses)) or "?"
            log.info("jupyter_flow: run %s canceled; restarting worker(s) %s, still running op(s) %s",
                     self.run_id, ", ".join(addresses), names)
            clusters.restart_workers(client, addresses, reason=f"run {self.run_id} canceled")

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
        # Written in order after the run's task updates. The run is reported ended only
        # once its records are in the store: a run reported SUCCESS is a recorded one.
        writer = self.engine.writer
        if not (self._recorded_final and status == RunStatus.SUCCESS):
            writer.call(self.engine.store.finish_run, self.run_id, self.owner_id, status.value,
                        error=self.error, run_id=self.run_id)
        written = writer.flush(RECORD_TIMEOUT_S)
        failure = writer.failure(self.run_id)
        with self.lock:
            if self.fenced or isinstance(failure, FencedWrite):
                status = RunStatus.LOST
                self.error = (f"this process stopped heartbeating for too long (suspended, asleep or "
                              f"overloaded) and the store declared run {self.run_id} LOST; the values "
                              f"it finished are in the cache: jf.resume({self.run_id!r}) restores them")
            elif failure is not None or not written:
                status = RunStatus.FAILED
                cause = failure if failure is not None else f"no answer from the store in {RECORD_TIMEOUT_S:g} s"
                self.record_error = RunNotRecorded(describe_store_failure(self.engine.store, self.run_id, cause))
                self.error = str(self.record_error)
            self.status = status
        if self.record_error is not None:
            # Not left RUNNING in the store for the life of the process: written again as
            # soon as the store accepts writes (engine heartbeat), FAILED with this error.
            self.engine.record_later(self)
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


def describe_store_failure(store, run_id: str, cause) -> str:
    """One message for a run whose records did not reach the store, naming the store."""
    where = getattr(store, "location", None) or repr(store)
    text = f"{type(cause).__name__}: {cause}" if isinstance(cause, BaseException) else str(cause)
    hint = "check that the store is reachable and writable"
    if "full" in text.lower() or "no space" in text.lower():
        hint = "the disk holding it is full: free space there (or move JUPYTER_FLOW_HOME/JUPYTER_FLOW_DB)"
    return (f"run {run_id} could not be recorded in the store at {where} ({text.splitlines()[0][:300]}); "
            f"{hint}, then run again. The run is not reported as a success because the store does not hold it.")


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
