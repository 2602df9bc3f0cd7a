"""``Store``: every read and write of runs, tasks, owners, cache index, artifacts, clusters.

Each public method is one short transaction. Write transactions follow one lock order so
that concurrent writers on PostgreSQL never deadlock: the owner row (shared), then the
run/task rows they change, then the ``seq`` counter row, then the writes themselves. On
SQLite every write transaction takes the database write lock up front (``BEGIN
IMMEDIATE``), so they simply queue behind one another.

Records come back as plain dicts: timestamps are timezone-aware UTC datetimes, JSON
columns are Python objects, statuses and kinds are plain strings.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

from sqlalchemy import (
    Connection,
    Table,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.types import JSON, Text

from jupyter_flow.core.errors import FencedWrite, StoreError, StoreFull
from jupyter_flow.core.ids import new_id
from jupyter_flow.core.secrets import redact
from jupyter_flow.core.settings import resolve_db_url
from jupyter_flow.core.status import (
    RUN_TERMINAL,
    TASK_PROGRESS,
    TASK_TERMINAL,
    RunStatus,
    TaskStatus,
)
from jupyter_flow.store.database import (
    WRITE_OPTION,
    db_now,
    db_now_minus,
    make_engine,
    normalize_url,
    sqlite_path,
)
from jupyter_flow.store.errors import (
    CancelConflict,
    RunActive,
    RunNotFound,
    ScheduleExists,
    ScheduleNotFound,
)
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

_RUN_CREATE_FIELDS = frozenset(RUNS.c.keys()) - {"seq", "cancel_requested_at", "cancel_requested_by"}
_RUN_UPDATE_FIELDS = frozenset(RUNS.c.keys()) - {"id", "owner_id", "seq", "created_at"}
_TASK_CREATE_FIELDS = frozenset(TASKS.c.keys()) - {"run_id", "seq"}
_TASK_UPDATE_FIELDS = frozenset(TASKS.c.keys()) - {"id", "run_id", "seq", "created_at"}
_TASK_INSERT_COLUMNS = tuple(TASKS.c.keys())  # every column: executemany rows are alike
_TASK_JSON_COLUMNS = tuple(c.name for c in TASKS.c if isinstance(c.type, JSON)
                           or isinstance(getattr(c.type, "impl", None), JSON))
_CACHE_FIELDS = frozenset(CACHE.c.keys()) - {"created_at"}
_CACHE_ENTRY_FIELDS = _CACHE_FIELDS | {"replace"}
_ARTIFACT_FIELDS = frozenset(ARTIFACTS.c.keys())
_SCHEDULE_CREATE_FIELDS = frozenset(SCHEDULES.c.keys()) - {"created_at", "updated_at"}
_SCHEDULE_UPDATE_FIELDS = frozenset(SCHEDULES.c.keys()) - {"id", "created_at", "updated_at"}
_SCHEDULE_DEFAULTS = {"timezone": "UTC", "parallel": 1, "misfire": "once", "paused": False}
_HEX = re.compile(r"[0-9a-fA-F]{8,128}")


def _sqlite_converter(column) -> Any:
    """How one column's Python value is written by SQLAlchemy on SQLite, done directly."""
    from sqlalchemy import JSON, Boolean

    kind = column.type
    if isinstance(kind, UTCDateTime):
        def convert(value, _bind=kind.process_bind_param):
            value = _bind(value, _SQLITE_DIALECT)
            return None if value is None else value.strftime("%Y-%m-%d %H:%M:%S.%f")
        return convert
    if isinstance(kind, JSON) or isinstance(getattr(kind, "impl", None), JSON):
        return lambda value: None if value is None else json.dumps(value)
    if isinstance(kind, Boolean):
        return lambda value: None if value is None else int(bool(value))
    return None


_SQLITE_DIALECT = sqlite.dialect()
_bulk_sql: dict[tuple, tuple[str, list]] = {}


def _bulk_statement(table: Table, names: tuple[str, ...]) -> tuple[str, list]:
    """An INSERT for executemany straight to the driver, and how each column's value is
    written (what SQLAlchemy's per-row type processing would do, which costs more than
    SQLite's insert itself for the thousands of task rows of a big run)."""
    cached = _bulk_sql.get((table.name, names))
    if cached is None:
        columns = [table.c[name] for name in names]
        quoted = ", ".join(f'"{c.name}"' for c in columns)  # "index" is an SQL keyword
        sql = f'INSERT INTO "{table.name}" ({quoted}) VALUES ({", ".join("?" for _ in columns)})'
        cached = _bulk_sql[(table.name, names)] = (sql, [_sqlite_converter(c) for c in columns])
    return cached


def _insert_tasks_sqlite(conn: Connection, tasks: list[dict], run_id: str, seq: int, now: datetime) -> None:
    """The new task rows of a run in one executemany, each row made in one pass.

    What ``_new_task`` and SQLAlchemy's type processing do, specialised: the
    10,000 rows of a fully cached rerun are written while ``jf.run`` waits for them, and
    the per-row Python work (not SQLite's) was most of that time. Values shared by every
    row (the run, its seq and creation time) are converted once, empty JSON is not encoded.
    """
    names = _TASK_INSERT_COLUMNS
    sql, converters = _bulk_statement(TASKS, names)
    at = {name: i for i, name in enumerate(names)}
    json_at = [at[name] for name in _TASK_JSON_COLUMNS]
    time_of = converters[at["created_at"]]
    created = time_of(now)
    i_status, i_name, i_node, i_cached, i_attempts = (at[n] for n in ("status", "name", "node", "cached", "attempts"))
    i_created, i_run, i_seq = at["created_at"], at["run_id"], at["seq"]
    # Other columns with a conversion (timestamps): applied to the values given.
    others = [(i, conv) for i, conv in enumerate(converters)
              if conv is not None and i not in json_at and i not in (i_created, i_cached)]
    dumps = json.dumps
    values = []
    for task in tasks:
        row = list(map(task.get, names))
        status = _plain(row[i_status]) or TaskStatus.PENDING.value
        if status not in _TASK_STATUSES:
            raise StoreError(f"unknown task status {status!r}; one of {sorted(_TASK_STATUSES)}")
        row[i_status] = status
        row[i_name] = row[i_name] or row[i_node]
        row[i_cached] = 1 if row[i_cached] else 0
        row[i_attempts] = row[i_attempts] or 0
        row[i_created] = created if row[i_created] is None else time_of(row[i_created])
        row[i_run], row[i_seq] = run_id, seq
        for i in json_at:
            value = row[i]
            if value is not None:
                row[i] = ("[]" if type(value) is list else "{}") if not value and type(value) in (list, dict) \
                    else dumps(value)
        for i, conv in others:
            if row[i] is not None:
                row[i] = conv(row[i])
        values.append(tuple(row))
    conn.exec_driver_sql(sql, values)


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


def _run_status(status: Any) -> str:
    status = _plain(status)
    if status not in _RUN_STATUSES:
        raise StoreError(f"unknown run status {status!r}; one of {sorted(_RUN_STATUSES)}")
    return status


def _task_status(status: Any) -> str:
    status = _plain(status)
    if status not in _TASK_STATUSES:
        raise StoreError(f"unknown task status {status!r}; one of {sorted(_TASK_STATUSES)}")
    return status


def _task_move_allowed(current: str, new: str | None) -> bool:
    """Terminal states are entered once; PENDING < WAITING < RUNNING never goes back."""
    if current in _TASK_TERMINAL:
        return False
    if new is None or new in _TASK_TERMINAL:
        return True
    return _TASK_PROGRESS[new] >= _TASK_PROGRESS[current]


def _seconds(start: Any, end: Any) -> float | None:
    """Seconds between two timestamps (datetimes, naive meaning UTC, or epoch floats)."""
    if start is None or end is None:
        return None
    return (_as_utc(end) - _as_utc(start)).total_seconds()


def _cached_states(conn: Connection, keys: list[str]) -> dict[str, dict]:
    """``{"state": "cached", outputs, task_id, metrics, signer}`` for those of ``keys`` with an entry."""
    return {
        key: {"state": "cached", "outputs": outputs, "task_id": task_id, "metrics": metrics, "signer": signer}
        for key, outputs, task_id, metrics, signer in conn.execute(
            select(CACHE.c.key, CACHE.c.outputs, CACHE.c.task_id, CACHE.c.metrics, CACHE.c.signer)
            .where(CACHE.c.key.in_(keys))
        )
    }


def _as_utc(value: Any) -> datetime:
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


_HISTORY_LOOKED_AT = 20  # newest cache entries of an op name searched for the same op's own


class Store:
    """The jupyter_flow metadata store (SQLite file or PostgreSQL database).

    >>> store = Store("sqlite://")          # in-memory; usually Store() or Store(url)
    >>> owner = store.register_owner()
    >>> store.create_run({"id": "R1", "kind": "api", "status": "RUNNING", "owner_id": owner},
    ...                  [{"id": "T1", "node": "n1", "name": "clean"}])
    >>> store.update_tasks(owner, [{"id": "T1", "status": "SUCCESS"}])
    []
    >>> store.get_run("R1")["task_counts"]
    {'SUCCESS': 1}
    >>> store.close()
    """

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

    def __enter__(self) -> Store:
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
        rows it changes and before it writes them. The counter row stays locked until commit, so transactions that bump it
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

    # -- keys ---------------------------------------------------------------------------

    def publish_signer(self, user: str, key_id: str, public_key: str) -> None:
        """Publish the public half of ``user``'s artifact-signing key (``signers``), so that
        teammates can choose to trust it. Publishing grants nothing; a key id already
        listed keeps its first row. Once per key per Store object."""
        if key_id in self._signers_published:
            return
        with self._write() as conn:
            conn.execute(
                self._insert(SIGNERS).on_conflict_do_nothing(index_elements=[SIGNERS.c.key_id]),
                {"key_id": key_id, "user": user, "public_key": public_key, "created_at": self._now(conn)},
            )
        self._signers_published.add(key_id)

    def signers(self, user: str | None = None) -> list[dict]:
        """Published signing keys ({key_id, user, public_key, created_at}), of ``user`` or all,
        oldest first. Anyone who can write the store can add a row: check a key's id with
        its owner before trusting it."""
        query = select(SIGNERS).order_by(SIGNERS.c.created_at, SIGNERS.c.key_id)
        if user is not None:
            query = query.where(SIGNERS.c.user == user)
        with self._read() as conn:
            return [row._asdict() for row in conn.execute(query)]

    # -- owners and liveness --------------------------------------------------------------

    def register_owner(
        self,
        user: str | None = None,
        host: str | None = None,
        pid: int | None = None,
        kind: str = "process",
    ) -> str:
        """Register the calling process as a writer; heartbeat it with ``heartbeat``."""
        owner_id = new_id()
        with self._write() as conn:
            now = self._now(conn)
            conn.execute(
                insert(OWNERS).values(
                    id=owner_id,
                    user=user or getpass.getuser(),
                    host=host or socket.gethostname(),
                    pid=os.getpid() if pid is None else pid,
                    kind=kind,
                    started_at=now,
                    heartbeat_at=now,
                    fenced=False,
                )
            )
        return owner_id

    def heartbeat(self, owner_id: str) -> None:
        """Prove ``owner_id`` is alive (database time); FencedWrite if it was declared dead."""
        with self._write() as conn:
            result = conn.execute(
                update(OWNERS)
                .where(OWNERS.c.id == owner_id, OWNERS.c.fenced.is_(False))
                .values(heartbeat_at=db_now(self.dialect))
            )
            if result.rowcount == 0:
                self._lock_owner(conn, owner_id)  # raises with the right message

    def get_owner(self, owner_id: str) -> dict | None:
        with self._read() as conn:
            row = conn.execute(select(OWNERS).where(OWNERS.c.id == owner_id)).first()
        return None if row is None else row._asdict()

    def release_owner(self, owner_id: str) -> list[str]:
        """Clean exit of ``owner_id``: its unfinished runs become LOST; returns their ids."""
        with self._write() as conn:
            now = self._now(conn)
            result = conn.execute(
                update(OWNERS)
                .where(OWNERS.c.id == owner_id, OWNERS.c.fenced.is_(False))
                .values(fenced=True, ended_at=now)
            )
            if result.rowcount == 0:
                return []
            return self._lose_owned_runs(
                conn, [owner_id], now, f"owner {owner_id} exited while the run was unfinished"
            )

    def reconcile(self, timeout: float = 30.0) -> list[str]:
        """Fence owners silent for ``timeout`` seconds; their unfinished runs become LOST.

        Returns the ids of the runs marked LOST. When every owner is alive this is a
        single indexed query, cheap enough to run before every listing.
        """
        stale_query = select(OWNERS.c.id).where(
            OWNERS.c.fenced.is_(False),
            OWNERS.c.heartbeat_at < db_now_minus(self.dialect, timeout),
        )
        with self._read() as conn:
            if conn.execute(stale_query.limit(1)).first() is None:
                return []
        with self._write() as conn:
            stale = list(conn.execute(stale_query.with_for_update()).scalars())
            if not stale:
                return []
            now = self._now(conn)
            conn.execute(
                update(OWNERS).where(OWNERS.c.id.in_(stale)).values(fenced=True, ended_at=now)
            )
            return self._lose_owned_runs(
                conn,
                stale,
                now,
                f"the process that owned this run stopped heartbeating for over {timeout:g} s; "
                "resume it with jf.resume(run_id)",
            )

    def _lose_owned_runs(
        self, conn: Connection, owner_ids: list[str], now: datetime, error: str
    ) -> list[str]:
        # A dead owner computes nothing any more: waiters take its keys over.
        conn.execute(delete(CLAIMS).where(CLAIMS.c.owner_id.in_(owner_ids)))
        conn.execute(
            update(CLUSTERS)
            .where(CLUSTERS.c.owner_id.in_(owner_ids), CLUSTERS.c.closed_at.is_(None))
            .values(closed_at=now)
        )
        run_ids = list(
            conn.execute(
                select(RUNS.c.id)
                .where(RUNS.c.owner_id.in_(owner_ids), RUNS.c.status.in_(_RUN_ACTIVE))
                .with_for_update()
            ).scalars()
        )
        if not run_ids:
            return []
        for chunk in _chunks(run_ids):
            conn.execute(
                select(TASKS.c.id)
                .where(TASKS.c.run_id.in_(chunk), TASKS.c.status.in_(_TASK_UNFINISHED))
                .with_for_update()
            ).all()
        seqs = self._bump_seq(conn, run_ids)
        conn.execute(
            update(RUNS)
            .where(RUNS.c.id == bindparam("b_id"))
            .values(
                status=RunStatus.LOST.value,
                ended_at=bindparam("b_now", type_=UTCDateTime()),
                error=func.coalesce(RUNS.c.error, bindparam("b_error", type_=Text())),
                seq=bindparam("b_seq"),
            ),
            [{"b_id": r, "b_now": now, "b_error": error, "b_seq": seqs[r]} for r in run_ids],
        )
        conn.execute(
            update(TASKS)
            .where(
                TASKS.c.run_id == bindparam("b_id"),
                # executemany cannot expand IN lists.
                or_(*(TASKS.c.status == status for status in _TASK_UNFINISHED)),
            )
            .values(
                status=TaskStatus.LOST.value,
                ended_at=bindparam("b_now", type_=UTCDateTime()),
                seq=bindparam("b_seq"),
            ),
            [{"b_id": r, "b_now": now, "b_seq": seqs[r]} for r in run_ids],
        )
        return run_ids

    # -- runs and tasks -------------------------------------------------------------------

    def create_run(self, run: dict, tasks: list[dict] = ()) -> None:
        """Insert a run and its tasks in one transaction.

        ``run`` needs ``id`` and ``kind``; ``status`` defaults to PENDING, ``user`` and
        ``host`` to the owner's. Each task needs ``id``, ``node`` and ``name``; ``status``
        defaults to PENDING. ``params`` are stored with secret-looking names' values
        replaced by ``"***"`` (``core.secrets.redact``), here as in every params write.
        """
        _check_fields("create_run", run, _RUN_CREATE_FIELDS)
        if "id" not in run or "kind" not in run:
            raise StoreError("create_run: the run needs at least 'id' and 'kind'")
        row = {key: _plain(value) for key, value in run.items()}
        if row.get("params"):
            row["params"] = redact(row["params"])
        row["status"] = _run_status(row.get("status", RunStatus.PENDING))
        task_rows = self._checked_tasks("create_run", tasks)
        with self._write() as conn:
            now = self._now(conn)
            owner_id = row.get("owner_id")
            self._lock_owner(conn, owner_id)
            if owner_id is not None and not (row.get("user") and row.get("host")):
                owner = conn.execute(
                    select(OWNERS.c.user, OWNERS.c.host).where(OWNERS.c.id == owner_id)
                ).one()
                row.setdefault("user", owner.user)
                row.setdefault("host", owner.host)
            row.setdefault("created_at", now)
            if row["status"] == RunStatus.RUNNING.value:
                row.setdefault("started_at", now)
            if row["status"] in _RUN_TERMINAL:
                row.setdefault("ended_at", now)
            seq = self._bump_seq(conn, [row["id"]])[row["id"]]
            conn.execute(insert(RUNS).values(**row, seq=seq))
            if task_rows:
                self._insert_tasks(conn, task_rows, row["id"], seq, now)

    def _checked_tasks(self, what: str, tasks: Iterable[dict]) -> list[dict]:
        """``tasks`` as given, after checking their fields (once per distinct set of names:
        the rows of one run are alike)."""
        rows = list(tasks)
        checked: set[frozenset] = set()
        for task in rows:
            names = frozenset(task)
            if names not in checked:
                _check_fields(f"{what} task", names, _TASK_CREATE_FIELDS)
                if "id" not in names or "node" not in names:
                    raise StoreError(f"{what}: every task needs at least 'id' and 'node'")
                checked.add(names)
        return rows

    def _insert_tasks(self, conn: Connection, tasks: list[dict], run_id: str, seq: int, now: datetime) -> None:
        if self.dialect == "sqlite":
            _insert_tasks_sqlite(conn, tasks, run_id, seq, now)
            return
        plain = [{key: _plain(value) for key, value in task.items()} for task in tasks]
        conn.execute(insert(TASKS), [self._new_task(t, run_id, seq, now) for t in plain])

    def add_tasks(self, run_id: str, owner_id: str | None, tasks: list[dict]) -> None:
        """Add tasks to a run its owner is still running (a dynamic map's mapped tasks).

        FencedWrite when the run ended, belongs to another owner, or the owner was fenced.
        """
        task_rows = self._checked_tasks("add_tasks", tasks)
        if not task_rows:
            return
        with self._write() as conn:
            now = self._now(conn)
            self._lock_owner(conn, owner_id)
            current = self._lock_run(conn, run_id, missing=FencedWrite)
            if current.owner_id != owner_id:
                raise FencedWrite(f"run {run_id} belongs to owner {current.owner_id}, not {owner_id}")
            if current.status in _RUN_TERMINAL:
                raise FencedWrite(f"run {run_id} is already {current.status}; it takes no new tasks")
            seq = self._bump_seq(conn, [run_id])[run_id]
            self._insert_tasks(conn, task_rows, run_id, seq, now)

    @staticmethod
    def _new_task(task: dict, run_id: str, seq: int, now: datetime) -> dict:
        # executemany needs every row to carry the same keys.
        full = dict.fromkeys(_TASK_CREATE_FIELDS)
        full.update(task)
        full["status"] = _task_status(full["status"] or TaskStatus.PENDING)
        full["name"] = full["name"] or full["node"]
        full["cached"] = bool(full["cached"])
        full["attempts"] = full["attempts"] or 0
        full["created_at"] = full["created_at"] or now
        full["run_id"] = run_id
        full["seq"] = seq
        return full

    def update_run(self, run_id: str, owner_id: str | None, **fields: Any) -> None:
        """Change fields of a run its owner is still running.

        FencedWrite when the run already ended, belongs to another owner, or the owner
        was fenced. Moving to a terminal status sets ``ended_at`` (see ``finish_run``).
        """
        _check_fields("update_run", fields, _RUN_UPDATE_FIELDS)
        values = {key: _plain(value) for key, value in fields.items()}
        if values.get("params"):
            values["params"] = redact(values["params"])
        if "status" in values:
            values["status"] = _run_status(values["status"])
        with self._write() as conn:
            now = self._now(conn)
            self._lock_owner(conn, owner_id)
            # An owner writing to a deleted run is a late write like any other.
            current = self._lock_run(conn, run_id, missing=FencedWrite)
            if current.owner_id != owner_id:
                raise FencedWrite(
                    f"run {run_id} belongs to owner {current.owner_id}, not {owner_id}"
                )
            if current.status in _RUN_TERMINAL:
                raise FencedWrite(
                    f"run {run_id} is already {current.status}; a finished run cannot change"
                )
            status = values.get("status")
            if status == RunStatus.RUNNING.value and current.started_at is None:
                values.setdefault("started_at", now)
            if status in _RUN_TERMINAL:
                values.setdefault("ended_at", now)
            seq = self._bump_seq(conn, [run_id])[run_id]
            conn.execute(update(RUNS).where(RUNS.c.id == run_id).values(**values, seq=seq))
            if status in _RUN_TERMINAL:
                # Whatever the run did not finish, waiters may now compute themselves.
                conn.execute(delete(CLAIMS).where(CLAIMS.c.run_id == run_id))

    def finish_run(
        self, run_id: str, owner_id: str | None, status: Any, *, error: str | None = None
    ) -> None:
        """End a run with a terminal ``status`` (SUCCESS, FAILED, CANCELED, LOST)."""
        status = _run_status(status)
        if status not in _RUN_TERMINAL:
            raise StoreError(
                f"finish_run({run_id!r}): {status} is not a final status; "
                f"use one of {sorted(_RUN_TERMINAL)}"
            )
        fields: dict[str, Any] = {"status": status}
        if error is not None:
            fields["error"] = error
        self.update_run(run_id, owner_id, **fields)

    def update_tasks(self, owner_id: str | None, updates: list[dict]) -> list[str]:
        """Apply a batch of task changes in one transaction; return the ids skipped.

        Each dict has ``id`` plus the fields to set. A change is skipped (and its id
        returned) when the task is unknown, already terminal, belongs to a run of another
        owner, or would move its status backwards. Several changes to one task apply in
        order. A fenced owner gets FencedWrite and nothing is written.
        """
        if not updates:
            return []
        for change in updates:
            if "id" not in change:
                raise StoreError("update_tasks: every change needs the task 'id'")
            _check_fields("update_tasks", (k for k in change if k != "id"), _TASK_UPDATE_FIELDS)
        ids = list(dict.fromkeys(change["id"] for change in updates))
        skipped: dict[str, None] = {}
        with self._write() as conn:
            now = self._now(conn)
            self._lock_owner(conn, owner_id)
            current: dict[str, dict] = {}
            for chunk in _chunks(ids):
                rows = conn.execute(
                    select(
                        TASKS.c.id,
                        TASKS.c.run_id,
                        TASKS.c.status,
                        TASKS.c.started_at,
                        RUNS.c.owner_id,
                    )
                    .join(RUNS, RUNS.c.id == TASKS.c.run_id)
                    .where(TASKS.c.id.in_(chunk))
                    .with_for_update(of=TASKS)
                )
                for row in rows:
                    if row.owner_id == owner_id:
                        current[row.id] = {
                            "run_id": row.run_id,
                            "status": row.status,
                            "started_at": row.started_at,
                        }
            merged: dict[str, dict] = {}
            for change in updates:
                task_id = change["id"]
                state = current.get(task_id)
                values = {k: _plain(v) for k, v in change.items() if k != "id"}
                new_status = values.get("status")
                if new_status is not None:
                    new_status = values["status"] = _task_status(new_status)
                if state is None or not _task_move_allowed(state["status"], new_status):
                    skipped[task_id] = None
                    continue
                self._complete_task_values(values, state, now)
                if new_status is not None:
                    state["status"] = new_status
                if "started_at" in values:
                    state["started_at"] = values["started_at"]
                merged.setdefault(task_id, {}).update(values)
            if merged:
                seqs = self._bump_seq(conn, {current[t]["run_id"] for t in merged})
                self._write_task_rows(conn, merged, current, seqs)
        return list(skipped)

    @staticmethod
    def _complete_task_values(values: dict, state: dict, now: datetime) -> None:
        """Fill in what a status change implies: start/end times, duration, cached."""
        status = values.get("status")
        if status == TaskStatus.RUNNING.value and state["started_at"] is None:
            values.setdefault("started_at", now)
        if status in _TASK_TERMINAL:
            values.setdefault("ended_at", now)
            if "duration" not in values:
                start = values.get("started_at", state["started_at"])
                duration = _seconds(start, values["ended_at"])
                if duration is not None:
                    values["duration"] = duration
        if status == TaskStatus.CACHED.value:
            values.setdefault("cached", True)

    @staticmethod
    def _write_task_rows(
        conn: Connection, merged: dict[str, dict], current: dict, seqs: dict[str, int]
    ) -> None:
        # One executemany per distinct set of fields (usually one or two per batch).
        groups: dict[tuple[str, ...], list[dict]] = {}
        for task_id, values in merged.items():
            params = {f"v_{k}": v for k, v in values.items()}
            params["b_id"] = task_id
            params["v_seq"] = seqs[current[task_id]["run_id"]]
            groups.setdefault(tuple(sorted(values)), []).append(params)
        for columns, params in groups.items():
            statement = (
                update(TASKS)
                .where(TASKS.c.id == bindparam("b_id"))
                .values(
                    {
                        name: bindparam(f"v_{name}", type_=TASKS.c[name].type)
                        for name in (*columns, "seq")
                    }
                )
            )
            conn.execute(statement, params)

    def _run_dicts(self, conn: Connection, rows: list) -> list[dict]:
        runs = [row._asdict() for row in rows]
        if not runs:
            return runs
        ids = [run["id"] for run in runs]
        counts: dict[str, dict[str, int]] = {run_id: {} for run_id in ids}
        pinned: set[str] = set()
        for chunk in _chunks(ids):
            for run_id, status, count in conn.execute(
                select(TASKS.c.run_id, TASKS.c.status, func.count())
                .where(TASKS.c.run_id.in_(chunk))
                .group_by(TASKS.c.run_id, TASKS.c.status)
            ):
                counts[run_id][status] = count
            pinned.update(conn.execute(select(PINS.c.run_id).where(PINS.c.run_id.in_(chunk))).scalars())
        self._roll_up(conn, counts)
        for run in runs:
            run["task_counts"] = counts[run["id"]]
            run["pinned"] = run["id"] in pinned
        return runs

    def _roll_up(self, conn: Connection, counts: dict[str, dict[str, int]]) -> None:
        """Add every descendant run's task counts to its ancestors' in ``counts``.

        A batch's notebook runs and a notebook run's cell runs hold the tasks; the parent
        row shows what ran under it (``task_counts`` of a run = its tasks and its
        descendants').
        """
        parent_of: dict[str, str] = {}
        frontier = list(counts)
        seen = set(frontier)
        while frontier:
            found: list[str] = []
            for chunk in _chunks(frontier):
                for child, parent in conn.execute(
                    select(RUNS.c.id, RUNS.c.parent_id).where(RUNS.c.parent_id.in_(chunk))
                ):
                    parent_of[child] = parent  # also for a child on this page itself
                    if child not in seen:
                        seen.add(child)
                        found.append(child)
            frontier = found
        if not parent_of:
            return
        descendants = list(parent_of)
        for chunk in _chunks(descendants):
            for run_id, status, count in conn.execute(
                select(TASKS.c.run_id, TASKS.c.status, func.count())
                .where(TASKS.c.run_id.in_(chunk))
                .group_by(TASKS.c.run_id, TASKS.c.status)
            ):
                ancestor = parent_of.get(run_id)
                while ancestor is not None:
                    if ancestor in counts:
                        counts[ancestor][status] = counts[ancestor].get(status, 0) + count
                    ancestor = parent_of.get(ancestor)

    def get_run(self, run_id: str) -> dict | None:
        """The run's record plus ``task_counts`` ({status: n}) and ``pinned``."""
        with self._read() as conn:
            rows = conn.execute(select(RUNS).where(RUNS.c.id == run_id)).all()
            runs = self._run_dicts(conn, rows)
        return runs[0] if runs else None

    def get_tasks(self, run_id: str, *, changed_since: int | None = None) -> list[dict]:
        """Tasks of a run in creation order; only those changed after a feed cursor if given."""
        query = select(TASKS).where(TASKS.c.run_id == run_id)
        if changed_since is not None:
            query = query.where(TASKS.c.seq > changed_since)
        with self._read() as conn:
            return [row._asdict() for row in conn.execute(query.order_by(TASKS.c.id))]

    def get_task(self, task_id: str) -> dict | None:
        with self._read() as conn:
            row = conn.execute(select(TASKS).where(TASKS.c.id == task_id)).first()
        return None if row is None else row._asdict()

    def list_runs(
        self,
        limit: int = 20,
        before: str | None = None,
        name: str | None = None,
        status: Any = None,
        kind: Any = None,
        notebook: str | None = None,
        started_after: datetime | None = None,
        parent_id: str | None = None,
        user: str | None = None,
    ) -> list[dict]:
        """Runs newest first; page on with ``before=<id of the last run of a page>``.

        ``name`` matches a substring (case-insensitive); ``status`` and ``kind`` take one
        value or a list; ``started_after`` compares with the run's ``created_at``; ``user``
        keeps the runs that OS user started.
        """
        query = select(RUNS)
        if user is not None:
            query = query.where(RUNS.c.user == user)
        if before is not None:
            query = query.where(RUNS.c.id < before)
        if name:
            query = query.where(RUNS.c.name.icontains(name, autoescape=True))
        for column, value in ((RUNS.c.status, status), (RUNS.c.kind, kind)):
            if value is None:
                continue
            values = [value] if isinstance(value, (str, Enum)) else list(value)
            query = query.where(column.in_([_plain(v) for v in values]))
        if notebook is not None:
            query = query.where(RUNS.c.notebook == notebook)
        if started_after is not None:
            query = query.where(
                RUNS.c.created_at >= type_coerce(started_after, UTCDateTime())
            )
        if parent_id is not None:
            query = query.where(RUNS.c.parent_id == parent_id)
        query = query.order_by(RUNS.c.id.desc()).limit(limit)
        with self._read() as conn:
            return self._run_dicts(conn, conn.execute(query).all())

    def changes_since(self, cursor: int, limit: int = 500, user: str | None = None) -> tuple[list[dict], int]:
        """Runs changed after ``cursor`` in change order, and the cursor to ask with next.

        Start with cursor 0. Every write touching a run or its tasks gives the run a new,
        larger ``seq``, so polling with the returned cursor sees each change once. ``user``
        keeps the runs that OS user started; the cursor still moves past the others' changes.
        """
        query = select(RUNS).where(RUNS.c.seq > cursor)
        with self._read() as conn:
            upto = None
            if user is not None:
                # Read the counter first: every seq up to it is committed (commits take seqs
                # in order), so the cursor may move past others' changes up to there, and no
                # later commit (a statement on PostgreSQL has its own snapshot) is skipped.
                upto = conn.execute(select(COUNTERS.c.value).where(COUNTERS.c.name == "seq")).scalar_one()
                query = query.where(RUNS.c.user == user, RUNS.c.seq <= upto)
            runs = self._run_dicts(conn, conn.execute(query.order_by(RUNS.c.seq).limit(limit)).all())
        if len(runs) == limit or upto is None:
            return runs, (runs[-1]["seq"] if runs else cursor)
        return runs, max(cursor, upto)

    def feed_cursor(self) -> int:
        """The change-feed position now: ``changes_since(feed_cursor())`` sees only later changes."""
        with self._read() as conn:
            return conn.execute(
                select(COUNTERS.c.value).where(COUNTERS.c.name == "seq")
            ).scalar_one()

    def request_cancel(self, run_id: str, by: str | None = None) -> dict:
        """Ask the owner of ``run_id`` (and of its unfinished child runs) to cancel.

        The owner polls ``cancel_requested``; the request is data, not a call. A second
        request keeps the first one's time and author. CancelConflict if the run ended.
        """
        with self._write() as conn:
            now = self._now(conn)
            current = self._lock_run(conn, run_id)
            if current.status in _RUN_TERMINAL:
                raise CancelConflict(
                    f"run {run_id} is already {current.status}; there is nothing to cancel"
                )
            targets, frontier = [run_id], [run_id]
            while frontier:
                children = []
                for chunk in _chunks(frontier):
                    children += conn.execute(
                        select(RUNS.c.id)
                        .where(RUNS.c.parent_id.in_(chunk), RUNS.c.status.in_(_RUN_ACTIVE))
                        .with_for_update()
                    ).scalars()
                children = [c for c in children if c not in targets]
                targets += children
                frontier = children
            seqs = self._bump_seq(conn, targets)
            conn.execute(
                update(RUNS)
                .where(RUNS.c.id == bindparam("b_id"))
                .values(
                    cancel_requested_at=func.coalesce(
                        RUNS.c.cancel_requested_at, bindparam("b_now", type_=UTCDateTime())
                    ),
                    cancel_requested_by=func.coalesce(
                        RUNS.c.cancel_requested_by, bindparam("b_by", type_=Text())
                    ),
                    seq=bindparam("b_seq"),
                ),
                [{"b_id": t, "b_now": now, "b_by": by, "b_seq": seqs[t]} for t in targets],
            )
        return self.get_run(run_id)

    def cancel_requested(self, run_ids: Iterable[str]) -> set[str]:
        """Those of ``run_ids`` that someone asked to cancel."""
        run_ids = list(dict.fromkeys(run_ids))
        found: set[str] = set()
        with self._read() as conn:
            for chunk in _chunks(run_ids):
                found.update(
                    conn.execute(
                        select(RUNS.c.id).where(
                            RUNS.c.id.in_(chunk), RUNS.c.cancel_requested_at.is_not(None)
                        )
                    ).scalars()
                )
        return found

    def delete_run(self, run_id: str, *, force: bool = False) -> None:
        """Delete a finished run with its tasks and pin.

        Child runs are kept, with ``parent_id`` set to NULL: deleting a batch's parent
        never deletes the notebook runs a user may still want. RunActive for a PENDING or
        RUNNING run unless ``force`` (its owner's later writes then get FencedWrite).
        """
        with self._write() as conn:
            current = self._lock_run(conn, run_id)
            if current.status not in _RUN_TERMINAL and not force:
                raise RunActive(
                    f"run {run_id} is {current.status}; cancel it first, or delete with force=True"
                )
            conn.execute(delete(RUNS).where(RUNS.c.id == run_id))

    def pin(self, run_id: str, pinned: bool = True) -> None:
        """Pin (or unpin) a run so cache garbage collection keeps its artifacts."""
        with self._write() as conn:
            now = self._now(conn)
            self._lock_run(conn, run_id)
            seq = self._bump_seq(conn, [run_id])[run_id]
            if pinned:
                conn.execute(
                    self._insert(PINS).values(run_id=run_id, created_at=now).on_conflict_do_nothing()
                )
            else:
                conn.execute(delete(PINS).where(PINS.c.run_id == run_id))
            conn.execute(update(RUNS).where(RUNS.c.id == run_id).values(seq=seq))

    def pinned_runs(self) -> set[str]:
        with self._read() as conn:
            return set(conn.execute(select(PINS.c.run_id)).scalars())

    def _merge_json(self, run_id: str, column: str, values: dict) -> None:
        with self._write() as conn:
            self._lock_run(conn, run_id)
            existing = conn.execute(select(RUNS.c[column]).where(RUNS.c.id == run_id)).scalar()
            merged = {**(existing or {}), **values}
            seq = self._bump_seq(conn, [run_id])[run_id]
            conn.execute(update(RUNS).where(RUNS.c.id == run_id).values({column: merged, "seq": seq}))

    def record_metric(self, run_id: str, name: str, value: Any) -> None:
        """Set metric ``name`` of a run (also after it finished: metrics may come later)."""
        self._merge_json(run_id, "metrics", {name: value})

    def record_metrics(self, run_id: str, metrics: dict) -> None:
        """Merge ``metrics`` into a run's, and into its notebook run's when the run is one of a
        notebook's cell runs (so ``jupyter flow compare`` sees what ops recorded)."""
        if not metrics:
            return
        with self._write() as conn:
            self._lock_run(conn, run_id)
            targets = [run_id]
            parent = conn.execute(select(RUNS.c.parent_id).where(RUNS.c.id == run_id)).scalar()
            if parent is not None:
                kind = conn.execute(select(RUNS.c.kind).where(RUNS.c.id == parent).with_for_update()).scalar()
                if kind == "notebook":
                    targets.append(parent)
            seqs = self._bump_seq(conn, targets)
            for target in targets:
                existing = conn.execute(select(RUNS.c.metrics).where(RUNS.c.id == target)).scalar()
                merged = {**(existing or {}), **{name: _plain(value) for name, value in metrics.items()}}
                conn.execute(update(RUNS).where(RUNS.c.id == target).values(metrics=merged, seq=seqs[target]))

    def set_params(self, run_id: str, params: dict) -> None:
        """Merge ``params`` into the run's parameters (secret-looking names' values redacted)."""
        self._merge_json(run_id, "params", redact(dict(params)))

    def set_snapshot(self, run_id: str, digest: str) -> None:
        """Record the artifact holding a run's pickled graph (allowed after the run ended:
        the snapshot is written off the critical path, and resume needs it later)."""
        with self._write() as conn:
            self._lock_run(conn, run_id)
            conn.execute(update(RUNS).where(RUNS.c.id == run_id).values(snapshot=digest))

    # -- cache index ----------------------------------------------------------------------

    def _insert(self, table: Table):
        dialect = sqlite if self.dialect == "sqlite" else postgresql
        return dialect.insert(table)

    def lookup_cache(self, keys: Iterable[str], *, components: bool = True) -> dict[str, dict]:
        """Cache entries for those of ``keys`` that have one: key -> outputs, components,
        task_id, op_name, signer (the key that signed its pickled outputs, or None), and
        metrics when the op recorded some. One query per 500 keys. ``components=False`` skips the largest
        column when only the outputs are wanted (the engine's hot path)."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, dict] = {}
        columns = (CACHE.c.key, CACHE.c.outputs, CACHE.c.task_id, CACHE.c.op_name, CACHE.c.metrics, CACHE.c.signer)
        if components:
            columns += (CACHE.c.components,)
        with self._read() as conn:
            for chunk in _chunks(keys):
                if self.dialect == "sqlite" and not components:
                    # The engine's hot path: one plain query, no per-row type processing.
                    marks = ", ".join("?" for _ in chunk)
                    rows = conn.exec_driver_sql(
                        f'SELECT "key", outputs, task_id, op_name, metrics, signer FROM "{CACHE.name}" '
                        f'WHERE "key" IN ({marks})',
                        tuple(chunk),
                    ).fetchall()
                    for key, outputs, task_id, op_name, metrics, signer in rows:
                        found[key] = {"outputs": json.loads(outputs), "task_id": task_id, "op_name": op_name,
                                      "signer": signer}
                        if metrics is not None and metrics != "null":
                            found[key]["metrics"] = json.loads(metrics)
                    continue
                for row in conn.execute(select(*columns).where(CACHE.c.key.in_(chunk))):
                    entry = row._asdict()
                    if entry.get("metrics") is None:
                        entry.pop("metrics")  # only entries of ops that recorded metrics carry them
                    found[entry.pop("key")] = entry
        return found

    def put_cache(self, entries: list[dict], owner_id: str | None = None) -> list[str]:
        """Record cache entries ({key, outputs, components, op_name, task_id, metrics, signer}).

        A key keeps the first value recorded for it: an entry for a key that already has
        one is ignored (and its key returned), so concurrent computations can never make
        one key map to two values. ``"replace": True`` (a forced rerun) overwrites. Claims
        on the keys are released in the same transaction. With ``owner_id``, a fenced
        owner (declared dead) gets FencedWrite and nothing is written.
        """
        rows: dict[str, dict] = {}
        replace: set[str] = set()
        for entry in entries:
            _check_fields("put_cache", entry, _CACHE_ENTRY_FIELDS)
            if "key" not in entry or "outputs" not in entry:
                raise StoreError("put_cache: every entry needs 'key' and 'outputs'")
            entry = dict(entry)
            if entry.pop("replace", False):
                replace.add(entry["key"])
            rows[entry["key"]] = {**dict.fromkeys(_CACHE_FIELDS), **entry}
        if not rows:
            return []
        kept: list[str] = []
        with self._write() as conn:
            now = self._now(conn)
            self._lock_owner(conn, owner_id)
            keys = sorted(rows)
            existing: set[str] = set()
            for chunk in _chunks(keys):
                existing.update(conn.execute(select(CACHE.c.key).where(CACHE.c.key.in_(chunk))).scalars())
            fresh = [{**rows[k], "created_at": now} for k in keys if k not in existing]
            if fresh:
                # Another writer may have inserted a key since the check (PostgreSQL):
                # its value stays.
                conn.execute(self._insert(CACHE).on_conflict_do_nothing(index_elements=[CACHE.c.key]), fresh)
            overwrite = [{**rows[k], "created_at": now} for k in keys if k in existing and k in replace]
            if overwrite:
                statement = self._insert(CACHE)
                statement = statement.on_conflict_do_update(
                    index_elements=[CACHE.c.key],
                    set_={
                        name: statement.excluded[name]
                        for name in ("outputs", "components", "op_name", "task_id", "metrics", "signer",
                                     "created_at")
                    },
                )
                conn.execute(statement, overwrite)
            kept = [k for k in keys if k in existing and k not in replace]
            for chunk in _chunks(keys):
                conn.execute(delete(CLAIMS).where(CLAIMS.c.key.in_(chunk)))
        return kept

    # -- single flight --------------------------------------------------------------------

    def claim_keys(self, owner_id: str, run_id: str, wanted: dict[str, str | None]) -> dict[str, dict]:
        """Claim cache keys for ``run_id`` so that concurrent runs compute each key once.

        ``wanted`` maps each key to the task id that would compute it. Returns, per key:
        ``{"state": "mine"}`` (this run computes it), ``{"state": "cached", "outputs",
        "task_id", "metrics"}`` (an entry appeared since the caller looked), or
        ``{"state": "held", "run_id", "owner_id"}`` (a live owner's run computes it now:
        wait for its cache entry). A claim whose owner was fenced (declared dead) is
        taken over. FencedWrite if ``owner_id`` itself was fenced.
        """
        keys = sorted(wanted)
        result: dict[str, dict] = {}
        if not keys:
            return result
        with self._write() as conn:
            now = self._now(conn)
            self._lock_owner(conn, owner_id)
            for chunk in _chunks(keys):
                result.update(_cached_states(conn, chunk))
            open_keys = [k for k in keys if k not in result]
            if open_keys:
                conn.execute(
                    self._insert(CLAIMS).on_conflict_do_nothing(index_elements=[CLAIMS.c.key]),
                    [{"key": k, "owner_id": owner_id, "run_id": run_id, "task_id": wanted[k],
                      "claimed_at": now} for k in open_keys],
                )
            takeover = []
            for chunk in _chunks(open_keys):
                rows = conn.execute(
                    select(CLAIMS.c.key, CLAIMS.c.owner_id, CLAIMS.c.run_id, OWNERS.c.fenced)
                    .outerjoin(OWNERS, OWNERS.c.id == CLAIMS.c.owner_id)
                    .where(CLAIMS.c.key.in_(chunk))
                    .with_for_update(of=CLAIMS)
                )
                for key, holder, holder_run, fenced in rows:
                    if holder_run == run_id:
                        result[key] = {"state": "mine"}
                    elif fenced or fenced is None:
                        takeover.append(key)
                        result[key] = {"state": "mine", "took_over_from": holder_run}
                    else:
                        result[key] = {"state": "held", "run_id": holder_run, "owner_id": holder}
            if takeover:
                conn.execute(
                    update(CLAIMS)
                    .where(CLAIMS.c.key == bindparam("b_key"))
                    .values(owner_id=owner_id, run_id=run_id, task_id=bindparam("b_task"),
                            claimed_at=bindparam("b_now", type_=UTCDateTime())),
                    [{"b_key": k, "b_task": wanted[k], "b_now": now} for k in takeover],
                )
        return result

    def claim_status(self, keys: Iterable[str]) -> dict[str, dict]:
        """What waiters poll: per key, ``{"state": "cached", …}`` once an entry exists,
        ``{"state": "held", "run_id", "owner_id", "fenced"}`` while claimed, else
        ``{"state": "free"}`` (the claimer gave up or failed: claim it to compute)."""
        keys = list(dict.fromkeys(keys))
        result: dict[str, dict] = {}
        with self._read() as conn:
            for chunk in _chunks(keys):
                result.update(_cached_states(conn, chunk))
                for key, holder, holder_run, fenced in conn.execute(
                    select(CLAIMS.c.key, CLAIMS.c.owner_id, CLAIMS.c.run_id, OWNERS.c.fenced)
                    .outerjoin(OWNERS, OWNERS.c.id == CLAIMS.c.owner_id)
                    .where(CLAIMS.c.key.in_(chunk))
                ):
                    if key not in result:
                        result[key] = {"state": "held", "run_id": holder_run, "owner_id": holder,
                                       "fenced": bool(fenced) or fenced is None}
        for key in keys:
            result.setdefault(key, {"state": "free"})
        return result

    def release_claims(self, run_id: str, keys: Iterable[str] | None = None) -> None:
        """Drop the claims of ``run_id`` (all of them, or those on ``keys``)."""
        with self._write() as conn:
            if keys is None:
                conn.execute(delete(CLAIMS).where(CLAIMS.c.run_id == run_id))
                return
            for chunk in _chunks(list(dict.fromkeys(keys))):
                conn.execute(delete(CLAIMS).where(CLAIMS.c.run_id == run_id, CLAIMS.c.key.in_(chunk)))

    def claims(self) -> list[dict]:
        """Every current claim (key, owner_id, run_id, task_id, claimed_at)."""
        with self._read() as conn:
            return [row._asdict() for row in conn.execute(select(CLAIMS).order_by(CLAIMS.c.claimed_at))]

    def drop_cache(self, keys: Iterable[str]) -> None:
        keys = list(dict.fromkeys(keys))
        with self._write() as conn:
            for chunk in _chunks(keys):
                conn.execute(delete(CACHE).where(CACHE.c.key.in_(chunk)))

    def last_components(self, op_names: Iterable[str], origins: Mapping[str, str | None] | None = None,
                        ) -> dict[str, dict]:
        """Components of the newest cache entry of each op name (to explain a rerun).

        ``origins`` (op name -> where the op is defined, ``core.keys.op_origin``) keeps, of
        the newest few entries of that name, the newest of the same op: another notebook's
        or script's op of the same name is not this op's history. Entries written before
        origins were recorded match any origin.
        """
        op_names = list(dict.fromkeys(op_names))
        origins = origins or {}
        result: dict[str, dict] = {}
        with self._read() as conn:
            for chunk in _chunks(op_names):
                newest = (
                    select(
                        CACHE.c.op_name,
                        CACHE.c.components,
                        func.row_number()
                        .over(
                            partition_by=CACHE.c.op_name,
                            order_by=(CACHE.c.created_at.desc(), CACHE.c.key.desc()),
                        )
                        .label("rank"),
                    )
                    .where(CACHE.c.op_name.in_(chunk))
                    .subquery()
                )
                rows = conn.execute(
                    select(newest.c.op_name, newest.c.components, newest.c.rank)
                    .where(newest.c.rank <= _HISTORY_LOOKED_AT).order_by(newest.c.op_name, newest.c.rank)
                ).all()
                for op_name, components, _ in rows:
                    if op_name in result:
                        continue
                    wanted = origins.get(op_name)
                    found = (components or {}).get("origin")
                    if wanted is None or found is None or found == wanted:
                        result[op_name] = components
        return result

    # -- artifacts ------------------------------------------------------------------------

    def put_artifacts(self, rows: list[dict]) -> None:
        """Register artifacts ({hash, size, serializer, serializer_version, type, uri});
        hashes already known are left as they are."""
        cleaned: dict[str, dict] = {}
        for row in rows:
            _check_fields("put_artifacts", row, _ARTIFACT_FIELDS)
            if "hash" not in row:
                raise StoreError("put_artifacts: every row needs 'hash'")
            cleaned.setdefault(row["hash"], {**dict.fromkeys(_ARTIFACT_FIELDS), **row})
        if not cleaned:
            return
        with self._write() as conn:
            now = self._now(conn)
            conn.execute(
                self._insert(ARTIFACTS).on_conflict_do_nothing(index_elements=[ARTIFACTS.c.hash]),
                [{**row, "created_at": row["created_at"] or now} for row in cleaned.values()],
            )

    def get_artifact(self, digest: str) -> dict | None:
        with self._read() as conn:
            row = conn.execute(select(ARTIFACTS).where(ARTIFACTS.c.hash == digest)).first()
        return None if row is None else row._asdict()

    def artifact_sizes(self, digests: Iterable[str]) -> dict[str, int | None]:
        """Stored size in bytes of each known artifact among ``digests``."""
        digests = list(dict.fromkeys(digests))
        sizes: dict[str, int | None] = {}
        with self._read() as conn:
            for chunk in _chunks(digests):
                for digest, size in conn.execute(
                    select(ARTIFACTS.c.hash, ARTIFACTS.c.size).where(ARTIFACTS.c.hash.in_(chunk))
                ):
                    sizes[digest] = size
        return sizes

    def artifact_runs(self, digest: str) -> list[dict]:
        """Tasks that output the artifact ``digest`` (its producers, for lineage)."""
        if not _HEX.fullmatch(digest):
            raise StoreError(f"{digest!r} is not an artifact hash (hex digits)")
        # A text search narrows the scan; the exact test is done on the decoded JSON.
        query = (
            select(TASKS)
            .where(cast(TASKS.c.outputs, Text).contains(digest))
            .order_by(TASKS.c.id)
        )
        with self._read() as conn:
            rows = [row._asdict() for row in conn.execute(query)]
        return [row for row in rows if digest in (row["outputs"] or {}).values()]

    def list_cache(self, limit: int | None = None, op_name: str | None = None) -> list[dict]:
        """Cache entries, newest first: key, op_name, outputs, task_id, created_at."""
        query = select(CACHE.c.key, CACHE.c.op_name, CACHE.c.outputs, CACHE.c.task_id,
                       CACHE.c.created_at).order_by(CACHE.c.created_at.desc(), CACHE.c.key)
        if op_name is not None:
            query = query.where(CACHE.c.op_name == op_name)
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            return [row._asdict() for row in conn.execute(query)]

    def list_artifacts(self) -> list[dict]:
        """Registered artifacts, oldest first (hash, size, serializer, type, uri, created_at)."""
        with self._read() as conn:
            return [row._asdict() for row in conn.execute(
                select(ARTIFACTS).order_by(ARTIFACTS.c.created_at, ARTIFACTS.c.hash))]

    def pinned_artifacts(self) -> set[str]:
        """Artifacts a pinned run needs: its tasks' outputs and its graph snapshot."""
        with self._read() as conn:
            pinned = select(PINS.c.run_id)
            digests: set[str] = set()
            for (outputs,) in conn.execute(select(TASKS.c.outputs).where(TASKS.c.run_id.in_(pinned))):
                digests.update((outputs or {}).values())
            for (snapshot,) in conn.execute(select(RUNS.c.snapshot).where(RUNS.c.id.in_(pinned))):
                if snapshot:
                    digests.add(snapshot)
        return digests

    def resumable_snapshots(self, since: datetime) -> set[str]:
        """Graph snapshots a resume may still need: those of runs not finished (PENDING,
        RUNNING), LOST at any age, or created since ``since``."""
        query = select(RUNS.c.snapshot).where(
            RUNS.c.snapshot.is_not(None),
            or_(RUNS.c.status.in_((*_RUN_ACTIVE, RunStatus.LOST.value)),
                RUNS.c.created_at >= type_coerce(since, UTCDateTime())),
        )
        with self._read() as conn:
            return set(conn.execute(query).scalars())

    def forget_artifacts(self, digests: Iterable[str]) -> int:
        """Drop artifact rows and every cache entry whose outputs use one of them
        (the files themselves are the artifact store's business). Returns entries dropped."""
        digests = set(digests)
        if not digests:
            return 0
        dropped = 0
        with self._write() as conn:
            for chunk in _chunks(sorted(digests)):
                conn.execute(delete(ARTIFACTS).where(ARTIFACTS.c.hash.in_(chunk)))
            stale = [key for key, outputs in conn.execute(select(CACHE.c.key, CACHE.c.outputs))
                     if digests & set((outputs or {}).values())]
            for chunk in _chunks(stale):
                conn.execute(delete(CACHE).where(CACHE.c.key.in_(chunk)))
                dropped += len(chunk)
        return dropped

    # -- schedules ------------------------------------------------------------------------

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
            raise ScheduleExists(f"a schedule named {values.get('name')!r} already exists; choose another name") from None
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
        >>> store.advance_schedule(s["id"], s["next_fire_at"], later), store.advance_schedule(s["id"], s["next_fire_at"], later)
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

    # -- leases ---------------------------------------------------------------------------

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

    # -- clusters -------------------------------------------------------------------------

    def register_cluster(
        self, owner_id: str | None, profile: str | None, address: str, dashboard: str | None = None
    ) -> str:
        """Record a Dask cluster started (or joined) by ``owner_id``; returns its id."""
        cluster_id = new_id()
        with self._write() as conn:
            now = self._now(conn)
            self._lock_owner(conn, owner_id)
            conn.execute(
                insert(CLUSTERS).values(
                    id=cluster_id,
                    owner_id=owner_id,
                    profile=profile,
                    address=address,
                    dashboard=dashboard,
                    created_at=now,
                )
            )
        return cluster_id

    def close_cluster(self, cluster_id: str) -> None:
        with self._write() as conn:
            now = self._now(conn)
            conn.execute(
                update(CLUSTERS)
                .where(CLUSTERS.c.id == cluster_id, CLUSTERS.c.closed_at.is_(None))
                .values(closed_at=now)
            )

    def list_clusters(self, active_only: bool = True) -> list[dict]:
        """Clusters newest first; active ones are open and have a live (unfenced) owner."""
        query = select(CLUSTERS).order_by(CLUSTERS.c.id.desc())
        if active_only:
            query = query.outerjoin(OWNERS, OWNERS.c.id == CLUSTERS.c.owner_id).where(
                CLUSTERS.c.closed_at.is_(None),
                or_(CLUSTERS.c.owner_id.is_(None), OWNERS.c.fenced.is_(False)),
            )
        with self._read() as conn:
            return [row._asdict() for row in conn.execute(query)]
