"""Schedules (cron notebooks) and the leases that let one scheduler fire them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, delete, insert, or_, select, type_coerce, update
from sqlalchemy.exc import IntegrityError

from jupyter_flow.core.errors import StoreError
from jupyter_flow.core.ids import new_id
from jupyter_flow.core.secrets import redact
from jupyter_flow.store.errors import ScheduleExists, ScheduleNotFound
from jupyter_flow.store.models import UTCDateTime
from jupyter_flow.store.transactions import LEASES, RUNS, SCHEDULES, StoreTransactions, _check_fields

_SCHEDULE_CREATE_FIELDS = frozenset(SCHEDULES.c.keys()) - {"created_at", "updated_at"}
_SCHEDULE_UPDATE_FIELDS = frozenset(SCHEDULES.c.keys()) - {"id", "created_at", "updated_at"}
_SCHEDULE_DEFAULTS = {"timezone": "UTC", "parallel": 1, "misfire": "once", "paused": False}


class Schedules(StoreTransactions):
    """Schedules and leases."""

    def _schedule_dicts(self, conn: Connection, query) -> list[dict]:
        """Schedule rows with ``last_run`` ({id, status, ended_at}, or None) joined from runs."""
        last = RUNS.alias("last_run")
        rows = conn.execute(
            query.add_columns(last.c.id.label("_run_id"), last.c.status.label("_run_status"),
                              last.c.ended_at.label("_run_ended_at"))
            .outerjoin(last, last.c.id == SCHEDULES.c.last_run_id)
        )
        schedules = []
        for row in rows:
            record = row._asdict()
            run_id, status, ended_at = (record.pop(k) for k in ("_run_id", "_run_status", "_run_ended_at"))
            record["last_run"] = None if run_id is None else {"id": run_id, "status": status, "ended_at": ended_at}
            schedules.append(record)
        return schedules

    def create_schedule(self, record: dict) -> dict:
        """Insert a schedule; returns it as ``get_schedule`` does.

        ``record`` needs ``name``, ``notebook`` and ``cron``; ``id`` defaults to a new id,
        ``timezone`` to UTC, ``parallel`` to 1, ``misfire`` to "once". Secret-looking
        parameter names have their values stored as ``"***"``, as for runs. ScheduleExists
        if the name is taken.

        >>> store = Store("sqlite://")
        >>> store.create_schedule({"name": "nightly", "notebook": "/nb/train.ipynb", "cron": "0 3 * * *"})["misfire"]
        'once'
        """
        _check_fields("create_schedule", record, _SCHEDULE_CREATE_FIELDS)
        missing = [name for name in ("name", "notebook", "cron") if not record.get(name)]
        if missing:
            raise StoreError(f"create_schedule: the schedule needs {', '.join(missing)}")
        row = {**dict.fromkeys(_SCHEDULE_CREATE_FIELDS), **_SCHEDULE_DEFAULTS}
        row.update({key: value for key, value in record.items() if value is not None or key not in _SCHEDULE_DEFAULTS})
        row["id"] = row["id"] or new_id()
        for column in ("params", "grid"):
            if row[column]:
                row[column] = redact(row[column])
        try:
            with self._write() as conn:
                now = self._now(conn)
                conn.execute(insert(SCHEDULES).values(**row, created_at=now, updated_at=now))
        except IntegrityError:
            if self.get_schedule(row["name"]) is not None:
                raise ScheduleExists(f"a schedule named {row['name']!r} already exists; choose another name") from None
            raise
        return self.get_schedule(row["id"])

    def get_schedule(self, id_or_name: str) -> dict | None:
        """The schedule with that id, else with that name; None if there is none."""
        with self._read() as conn:
            for column in (SCHEDULES.c.id, SCHEDULES.c.name):
                found = self._schedule_dicts(conn, select(SCHEDULES).where(column == id_or_name))
                if found:
                    return found[0]
        return None

    def list_schedules(self) -> list[dict]:
        """Every schedule, by name."""
        with self._read() as conn:
            return self._schedule_dicts(conn, select(SCHEDULES).order_by(SCHEDULES.c.name))

    def due_schedules(self, now: datetime) -> list[dict]:
        """Unpaused schedules whose ``next_fire_at`` is at or before ``now``, soonest first."""
        query = (
            select(SCHEDULES)
            .where(SCHEDULES.c.paused.is_(False), SCHEDULES.c.next_fire_at <= type_coerce(now, UTCDateTime()))
            .order_by(SCHEDULES.c.next_fire_at, SCHEDULES.c.id)
        )
        with self._read() as conn:
            return self._schedule_dicts(conn, query)

    def update_schedule(self, schedule_id: str, **fields: Any) -> dict:
        """Change fields of a schedule (``paused``, ``next_fire_at``, ``cron`` …); returns it.

        ScheduleNotFound if there is no such schedule, ScheduleExists if a new name is taken.
        """
        _check_fields("update_schedule", fields, _SCHEDULE_UPDATE_FIELDS)
        values = dict(fields)
        for column in ("params", "grid"):
            if values.get(column):
                values[column] = redact(values[column])
        try:
            with self._write() as conn:
                values["updated_at"] = self._now(conn)
                result = conn.execute(update(SCHEDULES).where(SCHEDULES.c.id == schedule_id).values(**values))
                if result.rowcount == 0:
                    raise ScheduleNotFound(f"no schedule {schedule_id!r} in the store (never created, or removed)")
        except IntegrityError:
            raise ScheduleExists(f"a schedule named {values.get('name')!r} already exists; "
                                 "choose another name") from None
        return self.get_schedule(schedule_id)

    def delete_schedule(self, schedule_id: str) -> bool:
        """Remove a schedule (the runs it fired stay); False if there was none."""
        with self._write() as conn:
            return conn.execute(delete(SCHEDULES).where(SCHEDULES.c.id == schedule_id)).rowcount > 0

    def advance_schedule(
        self,
        schedule_id: str,
        expected_next: datetime | None,
        new_next: datetime | None,
        *,
        fired_at: datetime | None = None,
        run_id: str | None = None,
        misfire: dict | None = None,
    ) -> bool:
        """Move ``next_fire_at`` from ``expected_next`` to ``new_next``, if nobody did first.

        A compare-and-set: of several schedulers that saw the same due time, exactly one
        gets True and fires it. ``fired_at``, ``run_id`` and ``misfire`` (None: keep the
        previous value) are recorded in the same write.

        >>> store = Store("sqlite://")
        >>> s = store.create_schedule({"name": "n", "notebook": "/n.ipynb", "cron": "* * * * *",
        ...                            "next_fire_at": datetime(2030, 1, 1, tzinfo=timezone.utc)})
        >>> later = datetime(2030, 1, 1, 0, 1, tzinfo=timezone.utc)
        >>> first = store.advance_schedule(s["id"], s["next_fire_at"], later)
        >>> first, store.advance_schedule(s["id"], s["next_fire_at"], later)
        (True, False)
        """
        column = SCHEDULES.c.next_fire_at
        expected = column.is_(None) if expected_next is None else column == type_coerce(expected_next, UTCDateTime())
        values: dict[str, Any] = {"next_fire_at": new_next}
        if fired_at is not None:
            values["last_fire_at"] = fired_at
        if run_id is not None:
            values["last_run_id"] = run_id
        if misfire is not None:
            values["last_misfire"] = misfire
        with self._write() as conn:
            values["updated_at"] = self._now(conn)
            result = conn.execute(update(SCHEDULES).where(SCHEDULES.c.id == schedule_id, expected).values(**values))
            return result.rowcount == 1

    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take, renew or keep trying for the lease ``name``; True while ``holder`` has it.

        Free (or expired) → ``holder`` takes it; held by ``holder`` → renewed for ``ttl_s``
        seconds from now; held by someone else and not expired → False. One upsert whose
        conflict branch only overwrites an expired lease or our own, so two processes can
        never both get True (database time decides expiry, not the callers' clocks).

        >>> store = Store("sqlite://")
        >>> store.acquire_lease("scheduler", "a", 15), store.acquire_lease("scheduler", "b", 15)
        (True, False)
        """
        with self._write() as conn:
            now = self._now(conn)
            statement = self._insert(LEASES).values(
                name=name, holder=holder, acquired_at=now, expires_at=now + timedelta(seconds=float(ttl_s))
            )
            ours = LEASES.c.holder == statement.excluded.holder
            statement = statement.on_conflict_do_update(
                index_elements=[LEASES.c.name],
                set_={
                    "holder": statement.excluded.holder,
                    "expires_at": statement.excluded.expires_at,
                    # A renewal keeps the time the holder first took the lease.
                    "acquired_at": case((ours, LEASES.c.acquired_at), else_=statement.excluded.acquired_at),
                },
                where=or_(ours, LEASES.c.expires_at < statement.excluded.acquired_at),
            )
            conn.execute(statement)
            current = conn.execute(select(LEASES.c.holder).where(LEASES.c.name == name)).scalar_one()
        return current == holder

    def release_lease(self, name: str, holder: str) -> bool:
        """Give the lease up so another process can take it at once; False if not ours."""
        with self._write() as conn:
            return conn.execute(delete(LEASES).where(LEASES.c.name == name, LEASES.c.holder == holder)).rowcount > 0

    def lease(self, name: str) -> dict | None:
        """The lease ``name`` as stored ({name, holder, acquired_at, expires_at}), expired or not."""
        with self._read() as conn:
            row = conn.execute(select(LEASES).where(LEASES.c.name == name)).first()
        return None if row is None else row._asdict()
