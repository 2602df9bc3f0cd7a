"""``ScheduleFirer``: the server's side of ``batch.scheduler.Scheduler``.

The scheduler itself knows nothing of Jupyter; this adapts it to a server whose store may
not be open yet (or may be dropped and reopened after a database failure): each tick
finds the store through ``StoreAccess``, builds the scheduler on first use, and turns a
database that went away into the one-line 503 reason instead of a traceback per tick.
"""

from __future__ import annotations

import logging
import os
import socket
from types import SimpleNamespace

from jupyter_flow.server.errors import StoreUnavailable
from jupyter_flow.server.store_access import StoreAccess

log = logging.getLogger("jupyter_flow.server")


class ScheduleFirer:
    """Ticks a ``Scheduler`` on the server's store; ``close()`` releases its lease.

    >>> firer = ScheduleFirer(access, artifacts_url=artifacts)  # doctest: +SKIP
    >>> firer.tick()        # ids of the batch runs fired                   # doctest: +SKIP
    []
    """

    def __init__(
        self,
        access: StoreAccess,
        *,
        artifacts_url: str,
        interval: float = 1.0,
        grace: float = 60.0,
        lease_ttl: float = 15.0,
    ):
        self._access = access
        self._artifacts_url = artifacts_url
        self._options = {"interval": interval, "grace": grace, "lease_ttl": lease_ttl}
        # Several servers on one host share a store: the pid tells them apart.
        self.holder = f"jupyter-server@{socket.gethostname()}:{os.getpid()}"
        self._scheduler = None
        self._store = None

    def tick(self) -> list[str]:
        """Fire what is due (if this server holds the lease); the ids of the batch runs."""
        try:
            store = self._access.get()
        except StoreUnavailable:
            return []  # logged once by StoreAccess
        if self._scheduler is None or self._store is not store:
            from jupyter_flow.batch.scheduler import Scheduler

            # Given as an engine-like pair, the scheduler's batches write their artifacts
            # where the server's configuration says (FlowApp.artifacts_url), not the default.
            target = SimpleNamespace(store=store, artifacts_url=self._artifacts_url)
            self._scheduler = Scheduler(target, holder=self.holder, **self._options)
            self._store = store
        try:
            fired = self._scheduler.tick()
        except Exception as err:
            if self._access.unavailable(err, store) is None:
                raise
            return []  # the store is dropped and reopened at the next tick
        if fired:
            log.info("jupyter_flow: schedules fired %d batch run(s): %s", len(fired), ", ".join(fired))
        return fired

    def close(self) -> None:
        """Release the lease, so another server or scheduler takes over at once."""
        if self._scheduler is not None:
            self._scheduler.close()
