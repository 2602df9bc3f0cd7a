"""Writing a run's new task rows: the hot path of a big (or fully cached) run's creation.

On SQLite the rows go to the driver in one executemany, converted here rather than by
SQLAlchemy's per-row type processing; on PostgreSQL through an SQLAlchemy insert.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, insert
from sqlalchemy.dialects import sqlite
from sqlalchemy.types import JSON

from jupyter_flow.core.errors import StoreError
from jupyter_flow.core.status import FailureKind, TaskStatus
from jupyter_flow.store.models import UTCDateTime
from jupyter_flow.store.transactions import _TASK_STATUSES, TASKS, _plain

TASK_CREATE_FIELDS = frozenset(TASKS.c.keys()) - {"run_id", "seq"}
_INSERT_COLUMNS = tuple(TASKS.c.keys())  # every column: executemany rows are alike
_JSON_COLUMNS = tuple(c.name for c in TASKS.c if isinstance(c.type, JSON)
                      or isinstance(getattr(c.type, "impl", None), JSON))


def insert_tasks(conn: Connection, dialect: str, tasks: list[dict], run_id: str, seq: int, now: datetime) -> None:
    """Insert the new ``tasks`` (checked dicts) of ``run_id`` with the run's ``seq``."""
    if dialect == "sqlite":
        _insert_sqlite(conn, tasks, run_id, seq, now)
        return
    plain = [{key: _plain(value) for key, value in task.items()} for task in tasks]
    conn.execute(insert(TASKS), [_new_row(t, run_id, seq, now) for t in plain])


_FAILURE_KINDS = frozenset(k.value for k in FailureKind)


def _task_status(status: Any) -> str:
    status = _plain(status)
    if status not in _TASK_STATUSES:
        raise StoreError(f"unknown task status {status!r}; one of {sorted(_TASK_STATUSES)}")
    return status


def _failure_kind(kind: Any) -> str | None:
    kind = _plain(kind)
    if kind is not None and kind not in _FAILURE_KINDS:
        raise StoreError(f"unknown failure kind {kind!r}; one of {sorted(_FAILURE_KINDS)}")
    return kind


def _new_row(task: dict, run_id: str, seq: int, now: datetime) -> dict:
    # executemany needs every row to carry the same keys.
    full = dict.fromkeys(TASK_CREATE_FIELDS)
    full.update(task)
    full["status"] = _task_status(full["status"] or TaskStatus.PENDING)
    full["failure_kind"] = _failure_kind(full["failure_kind"])
    full["name"] = full["name"] or full["node"]
    full["cached"] = bool(full["cached"])
    full["attempts"] = full["attempts"] or 0
    full["created_at"] = full["created_at"] or now
    full["run_id"] = run_id
    full["seq"] = seq
    return full


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


def _insert_sqlite(conn: Connection, tasks: list[dict], run_id: str, seq: int, now: datetime) -> None:
    """The new task rows of a run in one executemany, each row made in one pass.

    What ``_new_row`` and SQLAlchemy's type processing do, specialised: the
    10,000 rows of a fully cached rerun are written while ``jf.run`` waits for them, and
    the per-row Python work (not SQLite's) was most of that time. Values shared by every
    row (the run, its seq and creation time) are converted once, empty JSON is not encoded.
    """
    names = _INSERT_COLUMNS
    sql, converters = _bulk_statement(TASKS, names)
    at = {name: i for i, name in enumerate(names)}
    json_at = [at[name] for name in _JSON_COLUMNS]
    time_of = converters[at["created_at"]]
    created = time_of(now)
    i_status, i_name, i_node, i_cached, i_attempts = (at[n] for n in ("status", "name", "node", "cached", "attempts"))
    i_created, i_run, i_seq = at["created_at"], at["run_id"], at["seq"]
    i_failure = at["failure_kind"]
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
        if row[i_failure] is not None:
            row[i_failure] = _failure_kind(row[i_failure])
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
