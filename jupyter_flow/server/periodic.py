"""``PeriodicJob``: a blocking function the server calls now and every few seconds.

The reconciler, the scheduler and the notifications each need the same thing: call a
function that talks to the database, in a worker thread (the event loop never waits on
the database), never two calls of it at once, a failing call logged and retried at the
next pass, and a way to stop that lets a call in progress finish without holding up the
server's exit.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from typing import Any, Callable

from tornado.ioloop import IOLoop, PeriodicCallback

log = logging.getLogger("jupyter_flow.server")


class PeriodicJob:
    """Calls ``work()`` in ``executor`` now and every ``interval`` seconds.

    >>> job = PeriodicJob("reconciling runs", service.reconcile, executor, 5.0)  # doctest: +SKIP
    >>> job.start()                                                              # doctest: +SKIP
    >>> await job.stop(timeout=5)                                                # doctest: +SKIP
    """

    def __init__(self, what: str, work: Callable[[], Any], executor: Executor, interval: float):
        self.what = what
        self._work = work
        self._executor = executor
        self._periodic = PeriodicCallback(self.run_once, interval * 1000)
        self._running: asyncio.Future | None = None
        self._stopped = False

    def start(self) -> None:
        IOLoop.current().add_callback(self.run_once)
        self._periodic.start()

    async def run_once(self) -> Any:
        """One pass; its result, or None if a pass was still running or it failed."""
        if self._running is not None or self._stopped:
            return None
        try:
            self._running = asyncio.ensure_future(
                IOLoop.current().run_in_executor(self._executor, self._work)
            )
        except RuntimeError:  # the executor was shut down under us: the server is stopping
            return None
        try:
            return await self._running
        except Exception:  # a database hiccup must not stop later passes
            log.exception("jupyter_flow: %s failed; retrying at the next pass", self.what)
            return None
        finally:
            self._running = None

    async def stop(self, timeout: float = 0.0) -> bool:
        """No more passes; waits up to ``timeout`` seconds for one in progress. True when
        none is running any more (a pass that outlives the wait finishes on its own)."""
        self._stopped = True
        self._periodic.stop()
        running = self._running
        if running is None:
            return True
        if timeout <= 0:
            return False
        try:
            await asyncio.wait_for(asyncio.shield(running), timeout)
        except asyncio.TimeoutError:
            return False
        except Exception:  # the pass failed; run_once logs it
            return True
        return True
