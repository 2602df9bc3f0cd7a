"""What a run shows in its notebook cell: op outputs as they happen, and cached ones again.

Ops record what they show on their workers (worker/capture.py) and send it while they
run; :class:`CellOutputs` publishes it in the cell through IPython's display publisher,
in order and exactly once, whether it arrives live or only with the stored record. A cache
hit publishes the record the first run stored, under a short "restored from cache" mark,
so a rerun notebook looks like the first run.

``run`` is ``jf.run`` with this feedback (and the progress display) in notebooks.
"""

from __future__ import annotations

import html
import queue
import sys
import uuid
from typing import Any, Iterable

from ..core.status import RunKind
from ..core.outputs import DISPLAYS
from .session import kernel_shell, notebook_run_id


class CellOutputs:
    """Publishes the outputs of one run's ops in the current cell."""

    def __init__(self, execution, engine):
        self.engine = engine
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.shown: dict[str, int] = {}  # task id -> how many of its outputs are in the cell
        self.early: dict[str, dict[int, list]] = {}  # outputs that arrived ahead of a gap
        self.execution = execution
        # With several ops running, each block of output says which op it comes from.
        self.headers = sum(1 for t in execution.snapshot() if not t.cached) > 1
        self.last_task: str | None = None
        self.display_ids: dict[str, str] = {}
        self.held: list[tuple[str, int, list]] = []  # map elements' outputs waiting for their turn
        execution.add_output_listener(self._arrived)

    def _arrived(self, task_id: str, seq: int, items: list) -> None:
        self.queue.put((task_id, seq, items))  # any thread; published by pump() on the kernel's

    def pump(self) -> None:
        """Publish what arrived (call from the thread running the cell)."""
        arrived = self.held
        while True:
            try:
                arrived.append(self.queue.get_nowait())
            except queue.Empty:
                break
        self.held = []
        for task_id, seq, items in sorted(arrived, key=lambda parcel: self._index(parcel[0])):
            if self._in_turn(task_id):
                self._take(task_id, seq, items)
            else:
                self.held.append((task_id, seq, items))

    def _index(self, task_id: str) -> int:
        task = self.execution.by_id.get(task_id)
        return -1 if task is None or task.index is None else task.index

    def _in_turn(self, task_id: str) -> bool:
        """A map element shows its outputs once the elements before it have ended, so a map
        cell reads in element order as the loop it replaces would (not in completion order)."""
        task = self.execution.by_id.get(task_id)
        if task is None or task.index is None:
            return True
        view = self.execution.snapshot()
        if not any(other.id == task_id for other in view):
            return False  # a map's element the published view does not list yet: held until it does
        return all(other.terminal for other in view
                   if other.name == task.name and other.index is not None and other.index < task.index)

    def _take(self, task_id: str, seq: int, items: list) -> None:
        shown = self.shown.get(task_id, 0)
        if seq > shown:
            self.early.setdefault(task_id, {})[seq] = items
            return
        fresh = items[shown - seq:]
        if fresh:
            self._publish(task_id, fresh)
            self.shown[task_id] = shown + len(fresh)
        waiting = self.early.get(task_id, {}).pop(self.shown.get(task_id, 0), None)
        if waiting is not None:
            self._take(task_id, self.shown[task_id], waiting)

    def finish(self, tasks: Iterable) -> None:
        """After the run: what executed ops showed that did not arrive live, from their records."""
        self.pump()
        self.held = []  # every element has ended: the records below hold what was waiting
        for task in element_order(tasks):
            if task.cached or task.status != "SUCCESS":
                continue
            record = self._record(task)
            items = (record or {}).get("outputs") or []
            shown = self.shown.get(task.id, 0)
            if len(items) > shown:
                self._publish(task.id, items[shown:])
                self.shown[task.id] = len(items)
        sys.stdout.flush()
        sys.stderr.flush()

    def replay(self, task) -> None:
        """A cached op's outputs as its first run showed them, under a short mark."""
        record = self._record(task)
        items = (record or {}).get("outputs") or []
        if not items:
            return
        source = (task.provenance or {}).get("cached_from")
        run_id = None
        if source:
            try:
                row = self.engine.store.get_task(source)
                run_id = row.run_id if row else None
            except Exception:  # the mark is a courtesy; the outputs still show
                run_id = None
        elif task.run_id != self.execution.run_id:  # an element of an earlier run's map
            run_id = task.run_id
        label = task.name if task.index is None else f"{task.name}[{task.index}]"
        _publish_one(_mark(self._name(task.id, label), run_id), self.display_ids)
        self._publish(task.id, items, header=False)

    def _name(self, task_id: str, default: str) -> str:
        # Looked up when shown: a dynamic map adds its tasks while the run goes on.
        task = self.execution.by_id.get(task_id)
        if task is None:
            return default
        return task.name if task.index is None else f"{task.name}[{task.index}]"

    def _record(self, task) -> dict | None:
        digest = (task.outputs or {}).get(DISPLAYS)
        if not digest:
            return None
        try:
            return self.engine.artifacts.get(digest)
        except Exception as err:  # a missing record only loses the replay, never the run
            print(f"[jupyter_flow] the recorded outputs of op {task.name!r} could not be read: {err}",
                  file=sys.stderr)
            return None

    def _publish(self, task_id: str, items: list, header: bool = True) -> None:
        if header and self.headers and task_id != self.last_task:
            sys.stdout.write(f"[{self._name(task_id, task_id)}]\n")
        self.last_task = task_id
        for item in items:
            _publish_one(item, self.display_ids)


def element_order(tasks: Iterable) -> list:
    """``tasks`` with each map's elements by index, where its first element stood."""
    tasks = list(tasks)
    first: dict[str, int] = {}
    for position, task in enumerate(tasks):
        first.setdefault(task.name, position)
    return sorted(tasks, key=lambda t: (first[t.name], -1 if t.index is None else t.index))


def _publish_one(item: dict, display_ids: dict[str, str]) -> None:
    """One nbformat output, published in the current cell as the kernel would."""
    from IPython.display import display

    kind = item.get("output_type")
    if kind == "stream":
        stream = sys.stderr if item.get("name") == "stderr" else sys.stdout
        stream.write(item.get("text") or "")
        return
    if kind not in ("display_data", "execute_result", "update_display_data"):
        return
    data, metadata = item.get("data") or {}, item.get("metadata") or {}
    remote_id = (item.get("transient") or {}).get("display_id")
    if remote_id is None:
        display(data, raw=True, metadata=metadata)
        return
    # Display ids are per replay: updating this cell's display must not touch an earlier cell's.
    local_id = display_ids.setdefault(remote_id, uuid.uuid4().hex)
    display(data, raw=True, metadata=metadata, display_id=local_id, update=kind == "update_display_data")


def _mark(name: str, run_id: str | None) -> dict:
    where = f", computed in run {run_id}" if run_id else ""
    text = f"↻ restored from cache: op {name}{where}"
    styled = ("<span style='color: var(--jp-ui-font-color2, #777); font-size: smaller'>↻ restored from cache: "
              f"op <code>{html.escape(name)}</code>{html.escape(where)}</span>")
    return {"output_type": "display_data", "data": {"text/plain": text, "text/html": styled}, "metadata": {}}


CANCEL_WAIT_S = 120.0  # how long an interrupted cell waits for its run to end canceled


def follow(execution, outputs: CellOutputs, display) -> None:
    """Publish a run's outputs and progress until it ends.

    Ctrl-C (interrupting the kernel) cancels the run: the cell waits for it to end (its
    ops stopped, see RunExecution._cancel_futures), then raises a KeyboardInterrupt that
    shows as one line, so a loop of ``jf.run`` calls stops as Python code does.
    """
    try:
        while not execution.done.wait(0.1):
            outputs.pump()  # op stdout/stderr and displays, as they happen
            display.refresh()
    except KeyboardInterrupt:
        execution.request_cancel()
        ended = _wait_uninterrupted(execution, outputs, display)
        display.finish()
        outputs.pump()
        raise interrupted(execution.run_id, ended) from None
    display.finish()


def _wait_uninterrupted(execution, outputs: CellOutputs, display) -> bool:
    """Wait for a canceled run to end; a second interrupt does not stop the wait (the
    cancel is under way, and ends within seconds)."""
    import time

    deadline = time.monotonic() + CANCEL_WAIT_S
    while time.monotonic() < deadline:
        try:
            if execution.done.wait(0.1):
                return True
            outputs.pump()
            display.refresh()
        except KeyboardInterrupt:
            continue
    return False


def interrupted(run_id: str, ended: bool = True) -> KeyboardInterrupt:
    """The error an interrupted cell shows: one line saying what happened to its run."""
    if ended:
        text = f"run {run_id} canceled (the kernel was interrupted); the next cell can run at once"
    else:
        text = (f"run {run_id} is being canceled (the kernel was interrupted); "
                f"see jf.get_run({run_id!r}).status")
    err = KeyboardInterrupt(text)
    err._render_traceback_ = lambda: [f"KeyboardInterrupt: {text}"]
    return err


def watch(execution, engine, title: str, *, replay_cached: bool) -> None:
    """Show a run in the current cell until it ends: progress, outputs, cached outputs.

    Ctrl-C (interrupting the kernel) cancels the run.
    """
    from ..engine.records import Run
    from .progress import RunDisplay

    outputs = CellOutputs(execution, engine)
    follow(execution, outputs, RunDisplay(execution, title, live=not execution.done.is_set()))
    tasks = Run(engine, execution.run_id, execution=execution).tasks
    outputs.finish(tasks)
    if replay_cached:
        for task in element_order(tasks):
            if task.cached:
                outputs.replay(task)


def run(targets: Any, *, name: str | None = None, cluster: str | None = None, force: Any = None,
        wait: bool = True, kind: str = RunKind.API.value, parent_id: str | None = None,
        params: dict | None = None):
    """``jf.run``; in a notebook it also shows the run's progress and its ops' outputs.

    >>> run = jf.run(train(load(1000), lr=0.01), name="demo")   # doctest: +SKIP
    """
    from ..engine import api

    if kernel_shell() is None or not wait:
        return api.run(targets, name=name, cluster=cluster, force=force, wait=wait, kind=kind,
                       parent_id=parent_id, params=params)
    from ..core.errors import FlowError
    from .session import submitted

    engine = api._engine()
    made_now = parent_id is None and notebook_run_id(engine, create=False) is None
    parent_id = parent_id or notebook_run_id(engine, create=True)
    try:
        record = api.run(targets, name=name, cluster=cluster, force=force, wait=False, kind=kind,
                         parent_id=parent_id, params=params)
    except FlowError:
        submitted(engine, parent_id, made_now=made_now, failed=True)
        raise
    watch(record._execution, engine, name or "jf.run", replay_cached=True)
    return record
