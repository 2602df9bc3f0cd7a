"""Batched store writes from one background thread, off the critical path.

Task updates, cache entries and artifact rows that arrive close together are written
in one transaction; run-level operations (finishing a run) keep their order relative to
the task updates enqueued before them.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable

from ..core.errors import FencedWrite

log = logging.getLogger("jupyter_flow.engine")


class Writer:
    def __init__(self, store, owner_id: str, interval: float = 0.05):
        self.store = store
        self.owner_id = owner_id
        self.interval = interval
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="jupyter-flow-writer", daemon=True)
        self._stopped = threading.Event()
        self._pending = 0  # items enqueued and not yet written (a flush of nothing is free)
        self._pending_lock = threading.Lock()
        self._thread.start()

    # --------------------------------------------------------------- enqueue
    def _put(self, kind: str, payload: Any) -> None:
        with self._pending_lock:
            self._pending += 1
        self._queue.put((kind, payload))

    def task_update(self, update: dict) -> None:
        self._put("task", update)

    def cache_entry(self, entry: dict) -> None:
        self._put("cache", entry)

    def artifacts(self, rows: list[dict]) -> None:
        self._put("artifacts", rows)

    def call(self, func: Callable, *args: Any, **kwargs: Any) -> None:
        self._put("call", (func, args, kwargs))

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything enqueued so far is written (this process reads its own writes)."""
        if threading.current_thread() is self._thread or self._pending == 0:
            return True
        done = threading.Event()
        self._queue.put(("marker", done))
        return done.wait(timeout)

    def stop(self) -> None:
        self.flush()
        self._stopped.set()
        self._queue.put(("stop", None))

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
                self._pending -= sum(1 for kind, _ in items if kind not in ("marker", "stop"))
            if stop:
                return

    def _process(self, items: list) -> bool:
        tasks: dict[str, dict] = {}
        cache: list[dict] = []
        artifacts: list[dict] = []

        def write_batches():
            if artifacts:
                self._guard(self.store.put_artifacts, list(artifacts))
                artifacts.clear()
            if tasks:
                self._guard(self.store.update_tasks, self.owner_id, list(tasks.values()))
                tasks.clear()
            if cache:
                self._guard(self.store.put_cache, list(cache))
                cache.clear()

        stop = False
        for kind, payload in items:
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
                    self._guard(func, *args, **kwargs)
                elif kind == "marker":
                    payload.set()
                elif kind == "stop":
                    stop = True
        write_batches()
        return stop

    def _guard(self, func: Callable, *args: Any, **kwargs: Any) -> None:
        try:
            func(*args, **kwargs)
        except FencedWrite as err:
            log.warning("jupyter_flow: a late write was rejected: %s", err)
        except Exception:  # the writer must survive a bad write; the error is logged in full
            log.exception("jupyter_flow: writing to the store failed")
