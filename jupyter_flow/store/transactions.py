"""What every part of the ``Store`` shares: its engine, transactions, locks and change feed counter.

Each public method of the store is one short transaction. Write transactions follow one
lock order so that concurrent writers on PostgreSQL never deadlock: the owner row
(shared), then the run/task rows they change, then the ``seq`` counter row, then the
writes themselves. On SQLite every write transaction takes the database write lock up
front (``BEGIN IMMEDIATE``), so they simply queue behind one another.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from enum import Enum
from typing import Any, TypeVar

from sqlalchemy import Connection, Table, bindparam, select, type_coerce, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from jupyter_flow.core.errors import FencedWrite, StoreError, StoreFull
from jupyter_flow.core.settings import resolve_db_url
from jupyter_flow.core.status import RUN_TERMINAL, TASK_PROGRESS, TASK_TERMINAL, RunStatus, TaskStatus
from jupyter_flow.store.database import WRITE_OPTION, db_now, make_engine, normalize_url, sqlite_path
from jupyter_flow.store.errors import RunNotFound
from jupyter_flow.store.migration import ensure_schema
from jupyter_flow.store.migration import upgrade as upgrade_schema
from jupyter_flow.store.models import (
    Artifact,
    CacheEntry,
    Claim,
    Cluster,
    Counter,
    Lease,
    Owner,
    Pin,
    Run,
    Schedule,
    Signer,
    Task,
    UTCDateTime,
)

RUNS: Table = Run.__table__
TASKS: Table = Task.__table__
OWNERS: Table = Owner.__table__
CACHE: Table = CacheEntry.__table__
ARTIFACTS: Table = Artifact.__table__
PINS: Table = Pin.__table__
CLUSTERS: Table = Cluster.__table__
COUNTERS: Table = Counter.__table__
CLAIMS: Table = Claim.__table__
SIGNERS: Table = Signer.__table__
SCHEDULES: Table = Schedule.__table__
LEASES: Table = Lease.__table__

# SQLite allows 32766 bound variables per statement (999 before 3.32); stay far below.
CHUNK = 500

_RUN_TERMINAL = frozenset(s.value for s in RUN_TERMINAL)
_RUN_ACTIVE = (RunStatus.PENDING.value, RunStatus.RUNNING.value)
_RUN_STATUSES = frozenset(s.value for s in RunStatus)
_TASK_TERMINAL = frozenset(s.value for s in TASK_TERMINAL)
_TASK_PROGRESS = {s.value: rank for s, rank in TASK_PROGRESS.items()}
_TASK_UNFINISHED = tuple(_TASK_PROGRESS)
_TASK_STATUSES = frozenset(s.value for s in TaskStatus)

_Self = TypeVar("_Self", bound="StoreTransactions")


def _plain(value: Any) -> Any:
    """Enum members (statuses, kinds) as their string values; everything else as is."""
    return value.value if isinstance(value, Enum) else value


def _check_fields(what: str, fields: Iterable[str], allowed: frozenset[str]) -> None:
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise StoreError(
            f"{what}: unknown or read-only field(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def _chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _as_utc(value: Any) -> datetime:
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


class StoreTransactions:
    """The engine and the transactions of a store; each aggregate's methods are a subclass
    of this, and ``Store`` is all of them (``store/repository.py``)."""

    def __init__(self, url: str | None = None, *, migrate: bool = True):
        parsed = normalize_url(resolve_db_url(url))
        self.url: str = parsed.render_as_string(hide_password=False)
        self._url_text = parsed.render_as_string(hide_password=True)
        self.engine = make_engine(parsed)
        self.dialect: str = self.engine.dialect.name
        self._writer = self.engine.execution_options(**{WRITE_OPTION: True})
        self._signers_published: set[str] = set()
        try:
            ensure_schema(self.engine, self._url_text, migrate)
        except BaseException:
            self.engine.dispose()
            raise

    def __repr__(self) -> str:
        return f"Store({self._url_text!r})"

    @property
    def location(self) -> str:
        """Where the store lives, for messages: the SQLite file, else the URL (no password)."""
        path = sqlite_path(make_url(self.url))
        return str(path) if path is not None else self._url_text

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def upgrade(self) -> None:
        """Migrate the schema to this version's head (``jupyter flow db upgrade``)."""
        upgrade_schema(self.engine, self._url_text)

    # -- transactions -------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with Session(self.engine) as session:
            yield session.connection()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        try:
            with Session(self._writer) as session, session.begin():
                yield session.connection()
        except OperationalError as err:
            text = str(err.orig if err.orig is not None else err).lower()
            if "full" in text or "no space" in text:
                raise StoreFull(
                    f"the store at {self.location} cannot take more writes: the disk holding it is "
                    f"full ({err.orig}). Free space there (or point JUPYTER_FLOW_HOME/JUPYTER_FLOW_DB "
                    "elsewhere) and run again; nothing of this write was recorded."
                ) from err
            raise

    def _now(self, conn: Connection) -> datetime:
        return conn.execute(select(type_coerce(db_now(self.dialect), UTCDateTime()))).scalar_one()

    def now(self) -> datetime:
        """The database's current time (UTC): the clock every heartbeat is judged by."""
        with self._read() as conn:
            return self._now(conn)

    def _bump_seq(self, conn: Connection, run_ids: Iterable[str]) -> dict[str, int]:
        """Take the next change-feed numbers, one per run, from the counter row.

        Also stores each run's new ``seq``. Called after the transaction has locked the
        rows it changes and before it writes them. The counter row stays locked until commit,
        so transactions that bump it
        commit in seq order: once a reader sees seq N, no transaction can still commit a
        seq below N, and a feed cursor never skips a change.
        """
        run_ids = sorted(set(run_ids))
        if not run_ids:
            return {}
        last = conn.execute(
            update(COUNTERS)
            .where(COUNTERS.c.name == "seq")
            .values(value=COUNTERS.c.value + len(run_ids))
            .returning(COUNTERS.c.value)
        ).scalar_one()
        first = last - len(run_ids) + 1
        seqs = {run_id: first + offset for offset, run_id in enumerate(run_ids)}
        conn.execute(
            update(RUNS).where(RUNS.c.id == bindparam("b_id")).values(seq=bindparam("b_seq")),
            [{"b_id": run_id, "b_seq": seq} for run_id, seq in seqs.items()],
        )
        return seqs

    def _lock_owner(self, conn: Connection, owner_id: str | None) -> None:
        """Refuse the write if ``owner_id`` was fenced; hold a shared lock on it till commit."""
        if owner_id is None:
            return
        row = conn.execute(
            select(OWNERS.c.fenced).where(OWNERS.c.id == owner_id).with_for_update(read=True)
        ).first()
        if row is None:
            raise FencedWrite(f"owner {owner_id} is not registered in this store")
        if row.fenced:
            raise FencedWrite(
                f"owner {owner_id} was declared dead (no heartbeat) or has exited; its "
                "runs are LOST and it may not write. Resume them with jf.resume(run_id)"
            )

    def _lock_run(self, conn: Connection, run_id: str, missing: type = RunNotFound) -> Any:
        row = conn.execute(
            select(RUNS.c.id, RUNS.c.status, RUNS.c.owner_id, RUNS.c.started_at)
            .where(RUNS.c.id == run_id)
            .with_for_update()
        ).first()
        if row is None:
            raise missing(f"no run {run_id!r} in the store (never created, or deleted)")
        return row

    def _insert(self, table: Table):
        """An INSERT of this dialect (for its ``on_conflict_do_*``)."""
        dialect = sqlite if self.dialect == "sqlite" else postgresql
        return dialect.insert(table)
