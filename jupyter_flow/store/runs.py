"""Runs and their tasks, and the change feed over them (``seq``, ``changes_since``).

Runs come back as ``RunRecord``, tasks as ``TaskRecord`` (``store/records.py``); both are
accepted as records or dicts.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, select, type_coerce, update
from sqlalchemy.types import Text

from jupyter_flow.core.errors import FencedWrite, StoreError
from jupyter_flow.core.provenance import flow_user
from jupyter_flow.core.secrets import redact
from jupyter_flow.core.status import RunStatus, TaskStatus
from jupyter_flow.store.errors import CancelConflict, RunActive
from jupyter_flow.store.models import UTCDateTime
from jupyter_flow.store.records import RunRecord, TaskRecord
from jupyter_flow.store.task_inserts import TASK_CREATE_FIELDS, _failure_kind, _task_status, insert_tasks
from jupyter_flow.store.transactions import (
    _RUN_ACTIVE,
    _RUN_STATUSES,
    _RUN_TERMINAL,
    _TASK_PROGRESS,
    _TASK_TERMINAL,
    CLAIMS,
    COUNTERS,
    OWNERS,
    PINS,
    RUNS,
    TASKS,
    StoreTransactions,
    _as_utc,
    _check_fields,
    _chunks,
    _plain,
)

_RUN_CREATE_FIELDS = frozenset(RUNS.c.keys()) - {"seq", "cancel_requested_at", "cancel_requested_by"}
_RUN_UPDATE_FIELDS = frozenset(RUNS.c.keys()) - {"id", "owner_id", "seq", "created_at"}
_TASK_UPDATE_FIELDS = frozenset(TASKS.c.keys()) - {"id", "run_id", "seq", "created_at"}
_TASK_COLUMNS = tuple(TASKS.c[name] for name in TaskRecord.FIELDS)  # a read task's columns, in field order


def _run_status(status: Any) -> str:
    status = _plain(status)
    if status not in _RUN_STATUSES:
        raise StoreError(f"unknown run status {status!r}; one of {sorted(_RUN_STATUSES)}")
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


class Runs(StoreTransactions):
    """Runs, tasks, cancel requests, pins, run metrics and params, the change feed."""

    def create_run(self, run: RunRecord | dict, tasks: Iterable[TaskRecord | dict] = ()) -> None:
        """Insert a run and its tasks in one transaction.

        ``run`` needs ``id`` and ``kind``; ``status`` defaults to PENDING, ``user`` and
        ``host`` to the owner process's, ``owner`` (the Jupyter user) to ``user`` when given,
        else to this process's ``flow_user()``. Each task needs ``id``, ``node`` and ``name``; ``status``
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
        if not row.get("owner"):
            # Whoever this process works for (its Jupyter user), unless the row names the OS
            # user it ran as (an older writer, a test's other user): then that user's.
            row["owner"] = row.get("user") or flow_user()
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
                insert_tasks(conn, self.dialect, task_rows, row["id"], seq, now)

    def _checked_tasks(self, what: str, tasks: Iterable[TaskRecord | dict]) -> list[TaskRecord | dict]:
        """``tasks`` as given, after checking their fields (once per distinct set of names:
        the rows of one run are alike)."""
        rows = list(tasks)
        checked: set[frozenset] = set()
        for task in rows:
            names = frozenset(task)
            if names not in checked:
                _check_fields(f"{what} task", names, TASK_CREATE_FIELDS)
                if "id" not in names or "node" not in names:
                    raise StoreError(f"{what}: every task needs at least 'id' and 'node'")
                checked.add(names)
        return rows

    def add_tasks(self, run_id: str, owner_id: str | None, tasks: Iterable[TaskRecord | dict]) -> None:
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
            insert_tasks(conn, self.dialect, task_rows, run_id, seq, now)

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

    def update_tasks(self, owner_id: str | None, updates: list[TaskRecord | dict]) -> list[str]:
        """Apply a batch of task changes in one transaction; return the ids skipped.

        Each change (a ``TaskRecord`` or a dict) has ``id`` plus the fields to set. A change is skipped (and its id
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
                if "failure_kind" in values:
                    values["failure_kind"] = _failure_kind(values["failure_kind"])
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

    def _run_records(self, conn: Connection, rows: list) -> list[RunRecord]:
        runs = [row._asdict() for row in rows]
        if not runs:
            return []
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
        return [RunRecord(**run, task_counts=counts[run["id"]], pinned=run["id"] in pinned) for run in runs]

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

    def get_run(self, run_id: str) -> RunRecord | None:
        """The run's record plus ``task_counts`` ({status: n}) and ``pinned``."""
        with self._read() as conn:
            rows = conn.execute(select(RUNS).where(RUNS.c.id == run_id)).all()
            runs = self._run_records(conn, rows)
        return runs[0] if runs else None

    def get_tasks(self, run_id: str, *, changed_since: int | None = None) -> list[TaskRecord]:
        """Tasks of a run in creation order; only those changed after a feed cursor if given."""
        query = select(*_TASK_COLUMNS).where(TASKS.c.run_id == run_id)
        if changed_since is not None:
            query = query.where(TASKS.c.seq > changed_since)
        with self._read() as conn:
            # Columns in the record's field order: one positional call per row.
            return [TaskRecord(*row) for row in conn.execute(query.order_by(TASKS.c.id))]

    def get_task(self, task_id: str) -> TaskRecord | None:
        with self._read() as conn:
            row = conn.execute(select(*_TASK_COLUMNS).where(TASKS.c.id == task_id)).first()
        return None if row is None else TaskRecord(*row)

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
        owner: str | None = None,
    ) -> list[RunRecord]:
        """Runs newest first; page on with ``before=<id of the last run of a page>``.

        ``name`` matches a substring (case-insensitive); ``status`` and ``kind`` take one
        value or a list; ``started_after`` compares with the run's ``created_at``; ``user``
        keeps the runs that OS user started, ``owner`` those that belong to that (Jupyter) user.
        """
        query = select(RUNS)
        if user is not None:
            query = query.where(RUNS.c.user == user)
        if owner is not None:
            query = query.where(RUNS.c.owner == owner)
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
            return self._run_records(conn, conn.execute(query).all())

    def changes_since(self, cursor: int, limit: int = 500, user: str | None = None,
                      owner: str | None = None) -> tuple[list[RunRecord], int]:
        """Runs changed after ``cursor`` in change order, and the cursor to ask with next.

        Start with cursor 0. Every write touching a run or its tasks gives the run a new,
        larger ``seq``, so polling with the returned cursor sees each change once. ``user``
        keeps the runs that OS user started, ``owner`` those of that (Jupyter) user; the cursor
        still moves past the others' changes.
        """
        query = select(RUNS).where(RUNS.c.seq > cursor)
        with self._read() as conn:
            upto = None
            if user is not None or owner is not None:
                # Read the counter first: every seq up to it is committed (commits take seqs
                # in order), so the cursor may move past others' changes up to there, and no
                # later commit (a statement on PostgreSQL has its own snapshot) is skipped.
                upto = conn.execute(select(COUNTERS.c.value).where(COUNTERS.c.name == "seq")).scalar_one()
                query = query.where(RUNS.c.seq <= upto)
                if user is not None:
                    query = query.where(RUNS.c.user == user)
                if owner is not None:
                    query = query.where(RUNS.c.owner == owner)
            runs = self._run_records(conn, conn.execute(query.order_by(RUNS.c.seq).limit(limit)).all())
        if len(runs) == limit or upto is None:
            return runs, (runs[-1]["seq"] if runs else cursor)
        return runs, max(cursor, upto)

    def feed_cursor(self) -> int:
        """The change-feed position now: ``changes_since(feed_cursor())`` sees only later changes."""
        with self._read() as conn:
            return conn.execute(
                select(COUNTERS.c.value).where(COUNTERS.c.name == "seq")
            ).scalar_one()

    def request_cancel(self, run_id: str, by: str | None = None) -> RunRecord:
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
