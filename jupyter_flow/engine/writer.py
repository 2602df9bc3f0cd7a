"""Batched store writes from one background thread, off the critical path.

Task updates, cache entries and artifact rows that arrive close together are written
in one transaction; run-level operations (finishing a run) keep their order relative to
the task updates enqueued before them.

Nothing is lost silently: a write that fails is remembered for the run it belongs to
(``failure(run_id)``), so the run is not reported SUCCESS when its records never reached
the store. A write refused because this process was declared dead (its owner fenced after
a stall) calls ``on_fenced``, which re-registers the process; cache entries are then
written again under the new owner (the first value recorded for a key always stays).
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable

from ..core.errors import FencedWrite
from ..store.records import CacheEntry, TaskRecord

log = logging.getLogger("jupyter_flow.engine")


class Writer:
    def __init__(self, store, owner_id: str, interval: float = 0.05,
                 on_fenced: Callable[[], None] | None = None):
        self.store = store
        self.owner_id = owner_id
        self.interval = interval
        self.on_fenced = on_fenced
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="jupyter-flow-writer", daemon=True)
        self._stopped = threading.Event()
        self._pending = 0  # items enqueued and not yet written (a flush of nothing is free)
        self._pending_lock = threading.Lock()
        self._failures: dict[str, BaseException] = {}
        self._thread.start()

    # --------------------------------------------------------------- enqueue
    def _put(self, kind: str, payload: Any, run_id: str | None) -> None:
        with self._pending_lock:
            self._pending += 1
        self._queue.put((kind, payload, run_id))

    def task_update(self, update: TaskRecord | dict, run_id: str | None = None) -> None:
        """Queue a change of one task (its ``id`` and the fields that change)."""
        self._put("task", update.changes() if isinstance(update, TaskRecord) else update, run_id)

    def cache_entry(self, entry: CacheEntry | dict, run_id: str | None = None) -> None:
        self._put("cache", entry, run_id)

    def artifacts(self, rows: list[dict], run_id: str | None = None) -> None:
        self._put("artifacts", rows, run_id)

    def call(self, func: Callable, *args: Any, run_id: str | None = None, **kwargs: Any) -> None:
        self._put("call", (func, args, kwargs), run_id)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything enqueued so far is written (this process reads its own writes)."""
        if threading.current_thread() is self._thread or self._pending == 0:
            return True
        done = threading.Event()
        self._queue.put(("marker", done, None))
        return done.wait(timeout)

    def failure(self, run_id: str) -> BaseException | None:
        """The first write of ``run_id`` that failed (and is forgotten now), if any."""
        return self._failures.pop(run_id, None)

    def stop(self) -> None:
        self.flush()
        self._stopped.set()
        self._queue.put(("stop", None, None))

    # ------------------------------------------------------------------ loop
    def _loop(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=1.0)
            except queue.Empty:
                if self._stopped.is_set():
                    return
                continue
            items = [first]
            # Let a burst accumulate so it becomes one transaction.
            if first[0] in ("task", "cache", "artifacts"):
                self._stopped.wait(self.interval)
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = self._process(items)
            with self._pending_lock:
                self._pending -= sum(1 for kind, _, _ in items if kind not in ("marker", "stop"))
            if stop:
                return

    def _process(self, items: list) -> bool:
        tasks: dict[str, dict] = {}
        cache: list[dict] = []
        artifacts: list[dict] = []
        runs: dict[str, set[str]] = {"task": set(), "cache": set(), "artifacts": set()}

        def write_batches():
            if artifacts:
                self._guard(runs["artifacts"], self.store.put_artifacts, list(artifacts))
                artifacts.clear()
            if tasks:
                self._guard(runs["task"], lambda updates: self.store.update_tasks(self.owner_id, updates),
                            list(tasks.values()))
                tasks.clear()
            if cache:
                self._guard(runs["cache"], self._put_cache, list(cache))
                cache.clear()
            for group in runs.values():
                group.clear()

        stop = False
        for kind, payload, run_id in items:
            if kind in runs and run_id is not None:
                runs[kind].add(run_id)
            if kind == "task":
                merged = tasks.setdefault(payload["id"], {})
                merged.update(payload)
            elif kind == "cache":
                cache.append(payload)
            elif kind == "artifacts":
                artifacts.extend(payload)
            else:
                write_batches()
                if kind == "call":
                    func, args, kwargs = payload
                    self._guard({run_id} if run_id else set(), func, *args, **kwargs)
                elif kind == "marker":
                    payload.set()
                elif kind == "stop":
                    stop = True
        write_batches()
        return stop

    def _put_cache(self, entries: list[dict]) -> None:
        try:
            self.store.put_cache(entries, owner_id=self.owner_id)
        except FencedWrite:
            # Declared dead after a stall: the values are still good. Register again and
            # record them under the new owner (a key that got a value meanwhile keeps it).
            if self.on_fenced is None:
                raise
            self.on_fenced()
            self.store.put_cache(entries, owner_id=self.owner_id)

    def _guard(self, run_ids: set[str], func: Callable, *args: Any, **kwargs: Any) -> None:
        try:
            func(*args, **kwargs)
        except FencedWrite as err:
            log.warning("jupyter_flow: a late write was rejected: %s", err)
            self._remember(run_ids, err)
            if self.on_fenced is not None:
                self.on_fenced()
        except Exception as err:  # the writer must survive a bad write; the run learns of it
            log.exception("jupyter_flow: writing to the store failed")
            self._remember(run_ids, err)

    def _remember(self, run_ids: set[str], err: BaseException) -> None:
        for run_id in run_ids:
            self._failures.setdefault(run_id, err)
