"""``Reconciler``: marks LOST the runs whose owning process stopped heartbeating.

Runs at server start and then every ``interval`` seconds, each pass in a worker thread so
the server's event loop never waits on the database (``periodic.PeriodicJob``).
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor
from typing import Callable

from jupyter_flow.server.periodic import PeriodicJob

log = logging.getLogger("jupyter_flow.server")


class Reconciler(PeriodicJob):
    """Calls ``reconcile()`` now and periodically; never two passes at once.

    >>> reconciler = Reconciler(service.reconcile, executor, interval=5.0)  # doctest: +SKIP
    >>> reconciler.start()                                                  # doctest: +SKIP
    """

    def __init__(self, reconcile: Callable[[], list[str]], executor: Executor, interval: float):
        super().__init__("reconciling runs", reconcile, executor, interval)

    async def run_once(self) -> list[str]:
        """One pass; returns the ids of the runs it marked LOST."""
        lost = await super().run_once() or []
        if lost:
            log.info("jupyter_flow: %d run(s) lost their owner and are now LOST: %s",
                     len(lost), ", ".join(lost))
        return lost
