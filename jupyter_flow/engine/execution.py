"""One run in flight: its tasks' live state, the Dask futures, events, cancel, the end."""

from __future__ import annotations

import logging
import threading
import time

from ..core.composites import parallel
from ..core.errors import ArtifactError, FencedWrite, FlowError, OpTimeout, RunCanceled, StoreError, WorkerLost
from ..core.ids import new_ids
from ..core.op import OutputRef
from ..core.status import RunStatus, TaskStatus
from .dask_graph import build_graph
from .machine import (AVAILABLE, AddTasks, ClaimsPolled, FutureEnded, Log, MapItemsKnown, Metric, RecordMetrics,
                      ReleaseClaims, RunMachine, Submit, WriteArtifacts, WriteCache, WriteTask, final_fields, parse)
from .plan import plan_map
from .state import TaskState, TaskView

log = logging.getLogger("jupyter_flow.engine")

META_GRACE_S = 10.0  # how long to wait for a finished task's completion event
CLAIM_POLL_S = 0.25  # how often a run waiting for another run's result looks again
CANCEL_POLL_S = 0.2  # how often a cancel looks whether the run's ops left their workers
VIEW_EVERY_S = 0.1  # how often a watched run publishes its tasks' view
RECORD_TIMEOUT_S = 120.0  # how long the end of a run waits for its records to be written


class RunNotRecorded(StoreError):
    """The run's records could not be written to the store (full disk, store gone)."""
EARLY_OUTPUTS_LIMIT = 8 * 2**20  # bytes of live outputs kept until someone listens


class RunExecution:
    """Tracks a submitted run until it ends and writes what happens to the store."""

    def __init__(self, engine, run_id: str, graph, tasks: list[TaskState], *, owner_id: str,
                 handle=None, stage: set[int] | None = None, waits: dict[str, list[TaskState]] | None = None,
                 deferred: set[int] | None = None, expand: set[int] | None = None,
                 forced: set | None = None, recorded_final: bool = False, flight=None):
        self.engine = engine
        self.run_id = run_id
        self.graph = graph
        self.tasks = tasks
        self.by_id = {t.id: t for t in tasks}
        self.by_key: dict[str, list[TaskState]] = {}  # Dask key -> its tasks (a fused chain: several)
        # The rules; this class executes what they answer. It holds the sets of what waits.
        self.machine = RunMachine(tasks, self.by_id, self.by_key, waits=waits, deferred=deferred, expand=expand)
        self.owner_id = owner_id
        self.handle = handle
        self.status = RunStatus.RUNNING
        self.error: str | None = None
        self.record_error: RunNotRecorded | None = None
        self.fenced = False  # the store declared this process dead while the run went on
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.done = threading.Event()
        self._stopped = False  # the run's work on the cluster was stopped (cancel)
        self.futures: list = []
        self._stage = set(stage or ())
        self._waits = self.machine.waits  # cache key -> tasks waiting for another computation of it
        self._deferred = self.machine.deferred  # tasks that need a value still being waited for
        self._expand = self.machine.expand  # dynamic maps whose list is not known yet
        self._forced = set(forced or ())  # ops and nodes to rerun despite the cache
        self.positions = dict(graph.position)  # node -> position, mapped tasks included
        self.flight = flight if flight is not None else engine.single_flight(run_id)  # this run's claims
        self._recorded_final = recorded_final  # created as SUCCESS: nothing was left to compute
        self._thread: threading.Thread | None = None
        self._ask_waiting = True
        self._output_listeners: list = []
        self._early_outputs: list[tuple[str, int, list]] = []  # live outputs before a listener came
        self._early_bytes = 0
        self.view: tuple[TaskView, ...] = ()  # what progress displays read (see snapshot)
        self._watched = False
        self._published_at = 0.0

    def add_output_listener(self, listener) -> None:
        """Call ``listener(task_id, seq, items)`` with the Jupyter outputs ops show as they run
        (``items`` are nbformat outputs; ``seq`` is the index of the first one in the task's
        record). Outputs that arrived before are handed over first."""
        with self.lock:
            early, self._early_outputs = self._early_outputs, []
            self._output_listeners.append(listener)
        for args in early:
            listener(*args)

    def snapshot(self) -> tuple[TaskView, ...]:
        """The tasks as a progress display shows them: an immutable tuple the run publishes
        (from its monitor, at most every ``VIEW_EVERY_S``, and when it ends), read without
        the run's lock. The first call starts the publishing."""
        if not self._watched:
            self._watched = True
            self._publish()
        return self.view

    def _publish(self) -> None:
        with self.lock:
            self.view = tuple(TaskView.of(task) for task in self.tasks)
        self._published_at = time.monotonic()

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
        layers, keys = build_graph(self.run_id, self.tasks, positions, self.positions,
                                   self.engine.artifacts_url, self.engine.keyring)
        with self.lock:
            for pos in sorted(positions):
                task = self.tasks[pos]
                self.by_key.setdefault(task.dask_key, []).append(task)
        futures = self.handle.client.get(layers, keys, sync=False)
        self.futures.extend(futures)
        return futures

    # ---------------------------------------------------------------- events
    def on_event(self, msg: dict) -> None:
        """A worker's message (worker/task.py): the machine applies it, this executes it."""
        event = parse(msg)
        if event is None:
            return
        now = time.time()
        if isinstance(event, Log):
            self._on_output(event, now)
            return
        with self.lock:
            instructions = self.machine.on_worker(event, now)
            self._do(instructions)
            if instructions and not isinstance(event, Metric):
                self.changed.notify_all()

    def _on_output(self, event: Log, now: float) -> None:
        if event.task not in self.by_id:
            return
        items = list(event.items)
        with self.lock:
            self._do(self.machine.on_worker(event, now))
            listeners = list(self._output_listeners)
            if not listeners:
                size = sum(len(str(item)) for item in items)
                if self._early_bytes + size <= EARLY_OUTPUTS_LIMIT:
                    self._early_bytes += size
                    self._early_outputs.append((event.task, event.seq, items))
        for listener in listeners:
            try:
                listener(event.task, event.seq, items)
            except Exception:  # a broken display must not stop the run's bookkeeping
                log.exception("jupyter_flow: an output listener failed")

    def _do(self, instructions: list) -> set[int]:
        """Execute the machine's instructions (writes, in order); returns the positions it
        asks to submit (the caller submits them, outside the lock)."""
        writer, store, run_id = self.engine.writer, self.engine.store, self.run_id
        submit: set[int] = set()
        for ins in instructions:
            if isinstance(ins, WriteTask):
                if ins.of_run:
                    writer.task_update(ins.update, run_id)
                else:
                    writer.task_update(ins.update)
            elif isinstance(ins, WriteArtifacts):
                writer.artifacts(ins.rows, run_id)
            elif isinstance(ins, WriteCache):
                writer.cache_entry(ins.entry, run_id)
            elif isinstance(ins, ReleaseClaims):
                writer.call(store.release_claims, run_id, ins.keys)
            elif isinstance(ins, RecordMetrics):
                if ins.task_metric:
                    for name, value in ins.metrics.items():
                        writer.call(store.record_metric, run_id, name, value, run_id=run_id)
                elif ins.of_run:
                    writer.call(store.record_metrics, run_id, ins.metrics, run_id=run_id)
                else:
                    writer.call(store.record_metrics, run_id, ins.metrics)
            elif isinstance(ins, AddTasks):
                writer.call(store.add_tasks, run_id, self.owner_id, ins.rows, run_id=run_id)
            elif isinstance(ins, Submit):
                submit |= ins.positions
        return submit

    def final_records(self) -> list[dict]:
        """Every task's final state as the store should hold it: written again when the
        run's own writes failed (a full disk) and the store accepts writes again."""
        with self.lock:
            return [{"id": task.id, "reason": task.reason, **final_fields(task)} for task in self.tasks]

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
                if self._watched and now - self._published_at >= VIEW_EVERY_S:
                    self._publish()
                if not ready:
                    if self._ask_waiting and now - last_waiting_check > 1.0:
                        last_waiting_check = now
                        self._check_waiting()
                    # Sleep until something completes (or a short tick for cancel/WAITING).
                    _wait_any(completed, 0.2 if not self._expand else 0.02)
            self._await_metas()
            with self.lock:
                if self._deferred:
                    self._do(self.machine.never_ready(time.time()))
                    self.changed.notify_all()
        except Exception as err:  # the run must end even if monitoring breaks
            log.exception("jupyter_flow: monitoring run %s failed", self.run_id)
            self.error = f"monitoring failed: {err}"
        finally:
            self._finish()

    def _advance(self, poll_claims: bool) -> list:
        """Start what can start now: keys taken over from dead claimers, maps whose list is
        known, and tasks whose inputs are all there. Returns the new futures."""
        if poll_claims and self._waits:
            self._poll_claims()
        self._expand_ready()
        with self.lock:
            stage = self._ready_stage() if self._deferred else set()
            self.changed.notify_all()
        return self._submit_stage(stage) if stage else []

    def _ready_stage(self) -> set[int]:
        """Deferred tasks whose inputs are all available; those behind a failure are SKIPPED."""
        stage = self._do(self.machine.ready(self._deferred, time.time()))
        self.changed.notify_all()
        return stage

    def _skipped_for_upstream(self, task: TaskState) -> bool:
        """Mark ``task`` SKIPPED if an op it needs failed (or was skipped, canceled, lost)."""
        instructions = self.machine.skip_if_broken(task, time.time())
        if instructions is None:
            return False
        self._do(instructions)
        self.changed.notify_all()
        return True

    def _expand_ready(self) -> None:
        for pos in sorted(self._expand):
            task = self.tasks[pos]
            with self.lock:
                if self._skipped_for_upstream(task):
                    self._expand.discard(pos)
                    continue
            if not all(self.tasks[u].status in AVAILABLE for u in task.upstream):
                continue
            self._expand.discard(pos)
            try:
                self._expand_map(task)
            except (FlowError, ArtifactError) as err:
                with self.lock:
                    self._mark(task, TaskStatus.FAILED, failure_kind="exception", error=str(err))

    def _expand_map(self, gather: TaskState) -> None:
        """Create the mapped tasks of a dynamic map now that its list is known (planned as
        the first plan is: engine/plan.py), record them, and defer the gathering task."""
        node = gather.node
        items_ref = node.args[0]
        items_node = items_ref.node if isinstance(items_ref, OutputRef) else items_ref
        source = self.tasks[self.positions[items_node]]
        output = items_ref.output if isinstance(items_ref, OutputRef) else "return"
        items = self.engine.artifacts.get(source.outputs[output])
        params_of = {n: self.tasks[self.positions[n]] for n in node.upstream() if n is not items_node}
        ids = new_ids(len(items)) if isinstance(items, (list, tuple)) else None
        p = plan_map(gather, items, source, params_of, self.engine.cache, self._forced,
                     first_position=len(self.tasks), task_ids=ids, pools=getattr(self.handle, "pools", None),
                     claim=self.flight.claim, by_id=self.by_id)
        collect = parallel([s.node for s in p.tasks])
        with self.lock:
            self._do(self.machine.on_map_items(MapItemsKnown(gather, p, collect)))
            for s in p.tasks:
                self.positions[s.node] = s.position
            self.positions[collect] = gather.position
            self.changed.notify_all()

    def _poll_claims(self) -> None:
        """Look again at the keys other computations hold: the machine restores, takes over
        (the tasks this run computes itself now join the deferred ones) or goes on waiting."""
        status = self.flight.poll(self._waits)
        refusal = self.engine.cache.refusal
        refused = {}
        for key, state in (status or {}).items():
            why = refusal(state) if state["state"] == "cached" else None
            if why is not None:
                refused[key] = why
        with self.lock:
            self._do(self.machine.on_claims(ClaimsPolled(status, refused), time.time()))
            self.changed.notify_all()

    def _on_future(self, future) -> None:
        """A future ended: its error (fetched once) goes to the machine with the future."""
        status = future.status
        exc = None
        if status == "error":
            try:
                exc = future.exception(timeout=5)
            except Exception:  # the exception could not be fetched; the task's text is kept
                exc = None
        event = FutureEnded(future.key, status, error=type(exc).__name__ if exc is not None else None,
                            error_task=getattr(exc, "task", None),
                            allowed_failures=int(getattr(exc, "allowed_failures", 0) or 0), exception=exc)
        with self.lock:
            instructions = self.machine.on_future(event, time.time())
            self._do(instructions)
            if instructions:
                self.changed.notify_all()

    def _mark(self, task: TaskState, status: TaskStatus, **fields) -> None:
        self._do(self.machine.mark(task, status, time.time(), **fields))
        self.changed.notify_all()

    def _check_waiting(self) -> None:
        from .placement import waiting_reason
        from ..worker.task import no_worker_keys

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
            instructions = self.machine.on_no_worker(waiting, waiting_reason)
            self._do(instructions)
            if instructions:
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
            if missing:
                self._do(self.machine.give_up(missing, time.time()))
                self.changed.notify_all()
            for task in self.tasks:
                if task.status == TaskStatus.FAILED and task.exception is None and task.dask_key:
                    future = next((f for f in self.futures if f.key == task.dask_key), None)
                    if future is not None and future.status == "error":
                        try:
                            task.exception = future.exception(timeout=5)
                        except Exception:
                            pass

    # ---------------------------------------------------------------- cancel
    @property
    def cancel_requested(self) -> bool:
        return self.machine.canceled

    def request_cancel(self) -> None:
        self.machine.cancel()

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
        from ..worker.task import cancel_run

        try:
            busy = {addr: n for addr, n in client.run(cancel_run, self.run_id, on_error="return").items()
                    if isinstance(n, int) and n}
        except Exception as err:  # best effort: the scheduler may be gone already
            log.debug("jupyter_flow: could not reach the workers to cancel run %s: %s", self.run_id, err)
            busy = {}
        with self.lock:
            self._do(self.machine.cancel_unfinished(time.time()))
            self.changed.notify_all()
        if busy:
            self._free_workers(list(busy))

    def _free_workers(self, addresses: list[str]) -> None:
        """Wait up to the cancel grace period for the run's ops on ``addresses`` to end (a
        thread cannot be interrupted), then restart the workers still running one."""
        from ..core.settings import DEFAULT_CANCEL_GRACE_S, cancel_grace
        from ..deploy import cluster as clusters
        from ..worker.task import executing

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
                self._do(self.machine.cancel_unfinished(time.time()))
                self.changed.notify_all()
            outcome, self.error = self.machine.outcome(self.error)
            status = RunStatus(outcome)
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
        if self._watched:
            self._publish()
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


def _is_killed_worker(exc) -> bool:
    return type(exc).__name__ == "KilledWorker"


def _wait_any(completed, timeout: float) -> None:
    """Block until ``completed`` has a finished future or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not completed.has_ready() and time.monotonic() < deadline:
        time.sleep(0.005)

