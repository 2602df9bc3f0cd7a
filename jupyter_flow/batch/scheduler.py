"""The scheduler: fires due schedules as batch runs, one process per store at a time.

Every process that may fire (each Jupyter server with jupyter_flow, each
``jupyter flow scheduler``) ticks; a tick first takes or renews the store's
``scheduler`` lease, and only the holder fires. If the holder dies its lease expires
after ``lease_ttl`` seconds and another process takes over. Each firing first advances
the schedule's ``next_fire_at`` with a compare-and-set, so even two processes that both
believe they hold the lease cannot fire one cron time twice. A firing is then a normal
batch (``jf.batch(..., wait=False)``: same cache, same records) that records its schedule
and the cron time it was for; the tick does not wait for it.

Firings more than ``grace`` seconds late (no scheduler ran: a stopped server) are
misfires; the schedule's policy decides: "skip" drops them, "once" fires once for all of
them, "catchup" fires each (oldest first, at most 100). The decision is recorded on the
schedule as ``last_misfire``.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from ..core.errors import FlowError
from ..core.ids import new_id
from ..core.status import RunKind, RunStatus
from ..store.records import RunRecord
from .schedules import fire_times, previous_fire_time

log = logging.getLogger("jupyter_flow.scheduler")

#: The lease every scheduler of a store competes for.
LEASE = "scheduler"
#: Catch-up fires at most this many missed times; the rest are skipped.
MAX_CATCHUP = 100
#: Batches a scheduler remembers (to cancel them when it stops) before it forgets ended ones.
MAX_TRACKED = 200
#: Cron times counted one by one after a long downtime (croniter takes ~0.1 ms per time,
#: so at most about a second); beyond this the count is a lower bound (``at_least``) and
#: counting jumps to the recent past.
MAX_SCAN = 10_000


class Scheduler:
    """Fires the due schedules of one store while it holds the store's scheduler lease.

    ``store_or_engine`` is a ``Store``, an engine (its store and artifact store are used),
    a database URL, or None (the configured store). The batches it fires use that store
    and ``artifacts_url`` (default: the engine's, else the configured artifact store).

    >>> scheduler = Scheduler(None, interval=1, grace=60, lease_ttl=15)   # doctest: +SKIP
    >>> scheduler.tick()                 # run ids of the batches fired now   # doctest: +SKIP
    []
    >>> stop = threading.Event(); scheduler.run_forever(stop)                  # doctest: +SKIP
    """

    def __init__(self, store_or_engine: Any = None, *, holder: str | None = None, interval: float = 1.0,
                 grace: float = 60.0, lease_ttl: float = 15.0, artifacts_url: str | None = None):
        # Import what a firing needs (Dask, nbformat) now: the first firing must not stall
        # a tick for seconds, past the lease.
        import nbformat  # noqa: F401

        from ..core.settings import resolve_db_url
        from ..deploy import cluster  # noqa: F401
        from ..engine import records, runtime  # noqa: F401
        from ..store import Store

        if not interval > 0:
            raise FlowError(f"scheduler: interval must be > 0 seconds, got {interval!r}")
        if not grace >= 0:
            raise FlowError(f"scheduler: grace must be >= 0 seconds, got {grace!r}")
        if not lease_ttl > interval:
            raise FlowError(
                f"scheduler: lease_ttl ({lease_ttl!r} s) must be longer than interval ({interval!r} s), "
                "or the lease runs out between two ticks"
            )
        self._own_store = False
        self.artifacts_url: str | None = artifacts_url
        if isinstance(store_or_engine, Store):
            self.store = store_or_engine
            self.db_url = self.store.url
        elif hasattr(store_or_engine, "store") and hasattr(store_or_engine, "artifacts_url"):
            # The engine's own URL strings, so firings reuse that engine instead of opening another.
            self.store = store_or_engine.store
            self.db_url = store_or_engine.db_url
            self.artifacts_url = artifacts_url or store_or_engine.artifacts_url
        else:
            self.db_url = resolve_db_url(store_or_engine)
            self.store = Store(self.db_url)
            self._own_store = True
        self.holder = (holder or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}")[:200]
        self.interval = float(interval)
        self.grace = float(grace)
        self.lease_ttl = float(lease_ttl)
        self.holding = False
        self.started: list[str] = []   # batch runs this scheduler fired
        self._renewed = 0.0

    def __repr__(self) -> str:
        return f"Scheduler({self.store!r}, holder={self.holder!r})"

    # ------------------------------------------------------------------ lease

    def _renew(self) -> bool:
        self.holding = self.store.acquire_lease(LEASE, self.holder, self.lease_ttl)
        self._renewed = time.monotonic()
        return self.holding

    def _still_holding(self) -> bool:
        """Renew during a long tick, well before the lease could run out."""
        if time.monotonic() - self._renewed > self.lease_ttl / 3:
            return self._renew()
        return self.holding

    # ------------------------------------------------------------------- tick

    def tick(self, now: datetime | None = None) -> list[str]:
        """Take or renew the lease; if held, fire every due, unpaused schedule.

        ``now`` (UTC) replaces the database clock for the due and misfire arithmetic (tests).
        Returns the ids of the batch runs fired.
        """
        if not self._renew():
            return []
        now = now or self.store.now()
        fired: list[str] = []
        for schedule in self.store.due_schedules(now):
            if not self._still_holding():
                break
            try:
                fired += self._fire_due(schedule, now)
            except Exception:  # one broken schedule must not stop the others
                log.exception("jupyter_flow: schedule %r could not be fired", schedule["name"])
        return fired

    def _plan(self, schedule: dict, now: datetime) -> tuple[list[datetime], dict | None, datetime]:
        """(cron times to fire now, the misfire note or None, the next fire time after now)."""
        cron, zone, first = schedule["cron"], schedule["timezone"], schedule["next_fire_at"]
        late = now - timedelta(seconds=self.grace)
        missed: list[datetime] = []    # the oldest missed times, at most MAX_CATCHUP
        n_missed, latest_missed, at_least = 0, None, False
        times = fire_times(cron, zone, first - timedelta(microseconds=1))
        t = next(times)
        while t < late:
            n_missed += 1
            latest_missed = t
            if len(missed) < MAX_CATCHUP:
                missed.append(t)
            if n_missed >= MAX_SCAN:
                at_least = True
                latest_missed = max(t, previous_fire_time(cron, zone, late))
                times = fire_times(cron, zone, late - timedelta(microseconds=1))
                t = next(times)
                break
            t = next(times)
        on_time: list[datetime] = []   # due, but late by no more than grace
        while t <= now:
            if len(on_time) < MAX_CATCHUP:
                on_time.append(t)
            t = next(times)
        if not n_missed:
            return on_time, None, t
        policy = schedule["misfire"]
        if policy == "skip":
            chosen, fired_for_missed = on_time, 0
        elif policy == "catchup":
            chosen, fired_for_missed = missed + on_time, len(missed)
        else:   # "once": one firing stands for everything due
            chosen, fired_for_missed = [(on_time or [latest_missed])[-1]], 1
        note = {"at": now.isoformat(), "missed": n_missed, "policy": policy, "fired": fired_for_missed}
        if at_least:
            note["at_least"] = True
        return chosen, note, t

    def _fire_due(self, schedule: dict, now: datetime) -> list[str]:
        chosen, note, following = self._plan(schedule, now)
        # Claim the due times first: whoever moves next_fire_at fires them, nobody else.
        if not self.store.advance_schedule(schedule["id"], schedule["next_fire_at"], following,
                                           fired_at=now if chosen else None, misfire=note):
            return []
        if note is not None:
            log.warning("jupyter_flow: schedule %r missed %d firing(s) (policy %s): firing %d now",
                        schedule["name"], note["missed"], note["policy"], len(chosen))
        fired = []
        for when in chosen:
            fired.append(self._start(schedule, when))
        if fired:
            from ..store import ScheduleNotFound

            try:
                self.store.update_schedule(schedule["id"], last_run_id=fired[-1])
            except ScheduleNotFound:   # removed while it fired; its runs stay
                pass
        return fired

    def _start(self, schedule: dict, when: datetime) -> str:
        """Start the batch for one cron time; a firing that cannot start is recorded as a
        FAILED batch run, so the schedule's last result shows why."""
        from .runner import batch

        try:
            run = batch(
                schedule["notebook"], params=schedule["params"] or None, grid=schedule["grid"] or None,
                parallel=schedule["parallel"], cluster=schedule["cluster"], name=schedule["name"], wait=False,
                db_url=self.db_url, artifacts_url=self.artifacts_url, schedule_id=schedule["id"],
                scheduled_for=when, keep_cluster=False, owner=schedule.get("created_by") or None,
            )
        except Exception as err:  # any reason it cannot start (FlowError, a cluster that will not come up)
            if not isinstance(err, FlowError):
                log.exception("jupyter_flow: schedule %r could not fire", schedule["name"])
            return self._record_failure(schedule, when, err)
        self.started.append(run.id)
        if len(self.started) > MAX_TRACKED:   # a long-lived scheduler forgets the batches that ended
            self.started = [r for r in self.started if self._active(r)]
        log.info("jupyter_flow: schedule %r fired for %s: batch run %s", schedule["name"], when.isoformat(), run.id)
        return run.id

    def _record_failure(self, schedule: dict, when: datetime, err: BaseException) -> str:
        from ..core.provenance import current_user

        run_id = new_id()
        self.store.create_run(RunRecord(
            id=run_id, kind=RunKind.BATCH.value, status=RunStatus.FAILED.value, name=schedule["name"],
            owner=schedule.get("created_by") or None, user=current_user(), host=socket.gethostname(),
            notebook=schedule["notebook"],
            cluster=schedule["cluster"],
            params={"grid": schedule["grid"] or {}, "params": schedule["params"] or {},
                    "parallel": schedule["parallel"]},
            error=f"schedule {schedule['name']!r} could not start its batch: {err}",
            schedule_id=schedule["id"], scheduled_for=when,
        ))
        log.error("jupyter_flow: schedule %r could not fire for %s: %s", schedule["name"], when.isoformat(), err)
        return run_id

    # ------------------------------------------------------------- lifetime

    def run_forever(self, stop_event: threading.Event) -> None:
        """Tick every ``interval`` seconds until ``stop_event`` is set; a failing tick (the
        store unreachable for a moment) is logged and retried."""
        while not stop_event.is_set():
            began = time.monotonic()
            try:
                self.tick()
            except Exception:
                log.exception("jupyter_flow: scheduler tick failed; trying again in %g s", self.interval)
            stop_event.wait(max(0.0, self.interval - (time.monotonic() - began)))

    def _active(self, run_id: str) -> bool:
        run = self.store.get_run(run_id)
        return run is not None and run.status in (RunStatus.PENDING.value, RunStatus.RUNNING.value)

    def cancel_started(self, timeout: float = 30.0) -> list[str]:
        """Ask the batches this scheduler fired that still run to cancel, and wait up to
        ``timeout`` seconds for them to end; returns those that did not end in time."""
        active = []
        for run_id in self.started:
            if self._active(run_id):
                try:
                    self.store.request_cancel(run_id, by=f"scheduler {self.holder} stopping")
                except FlowError:   # it ended meanwhile
                    continue
                active.append(run_id)
        deadline = time.monotonic() + timeout
        while active and time.monotonic() < deadline:
            active = [r for r in active if self._active(r)]
            if active:
                time.sleep(0.2)
        return active

    def close(self, cancel_timeout: float | None = None) -> list[str]:
        """Release the lease (another scheduler may take over at once); with
        ``cancel_timeout``, also cancel the batches this scheduler fired that still run
        (``cancel_started``). Returns the batches that did not end in time."""
        left: list[str] = []
        try:
            self.store.release_lease(LEASE, self.holder)
            self.holding = False
            if cancel_timeout is not None:
                left = self.cancel_started(cancel_timeout)
        finally:
            if self._own_store:
                self.store.close()
        return left
