"""``Reconciler``: marks LOST the runs whose owning process stopped heartbeating.

Runs at server start and then every ``interval`` seconds, each pass in a worker thread so
the server's event loop never waits on the database.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor
from typing import Callable

from tornado.ioloop import IOLoop, PeriodicCallback

log = logging.getLogger("jupyter_flow.server")


class Reconciler:
    """Calls ``reconcile()`` now and periodically; never two passes at once.

    >>> reconciler = Reconciler(service.reconcile, executor, interval=5.0)  # doctest: +SKIP
    >>> reconciler.start()                                                  # doctest: +SKIP
    """

    def __init__(self, reconcile: Callable[[], list[str]], executor: Executor, interval: float):
        self._reconcile = reconcile
        self._executor = executor
        self._periodic = PeriodicCallback(self.run_once, interval * 1000)
        self._running = False

    def start(self) -> None:
        IOLoop.current().add_callback(self.run_once)
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()

    async def run_once(self) -> list[str]:
        """One pass; returns the ids of the runs it marked LOST."""
        if self._running:
            return []
        self._running = True
        try:
            lost = await IOLoop.current().run_in_executor(self._executor, self._reconcile)
        except Exception:  # a database hiccup must not stop later passes
            log.exception("jupyter_flow: reconciling runs failed; retrying at the next pass")
            return []
        finally:
            self._running = False
        if lost:
            log.info("jupyter_flow: %d run(s) lost their owner and are now LOST: %s",
                     len(lost), ", ".join(lost))
        return lost
