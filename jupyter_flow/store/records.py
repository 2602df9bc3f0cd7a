"""Typed records of runs, tasks and cache entries: what the store returns and accepts.

Read from the store, every field is set: timestamps are timezone-aware UTC datetimes,
JSON columns Python objects, statuses, kinds and failure kinds plain strings. Given to
the store, a field left at ``UNSET`` is not written: ``TaskRecord(id=t, status="FAILED",
error=msg)`` is a partial update, and a new row gets the store's defaults for it.

>>> task = TaskRecord(id="T1", status="SUCCESS")
>>> task.changes()
{'id': 'T1', 'status': 'SUCCESS'}
>>> task.error is UNSET, "error" in task
(True, False)

Records also answer ``record["status"]`` and ``record.get("status")`` as the dicts they
replace did, so callers not yet converted (and user code) keep working; new code reads
attributes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, ClassVar


class _Unset:
    """The value of a field a record does not set (a partial update, a default to apply)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "UNSET"  # one object, also across processes


UNSET: Any = _Unset()


class Record:
    """Base of the records: dict-style reads and ``changes()`` (the fields set)."""

    __slots__ = ()
    FIELDS: ClassVar[tuple[str, ...]] = ()

    def changes(self) -> dict[str, Any]:
        """The fields set, as a dict (what the store writes)."""
        values = {}
        for name in self.FIELDS:
            value = getattr(self, name)
            if value is not UNSET:
                values[name] = value
        return values

    def to_dict(self) -> dict[str, Any]:
        """Every field set, as a plain dict (for JSON answers)."""
        return self.changes()

    # -- reads as the dicts these records replace -------------------------------------

    def __getitem__(self, name: str) -> Any:
        value = getattr(self, name, UNSET) if name in self.FIELDS else UNSET
        if value is UNSET:
            raise KeyError(name)
        return value

    def get(self, name: str, default: Any = None) -> Any:
        value = getattr(self, name, UNSET) if name in self.FIELDS else UNSET
        return default if value is UNSET else value

    def __contains__(self, name: object) -> bool:
        return name in self.FIELDS and getattr(self, name) is not UNSET  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self.changes().items())
        return f"{type(self).__name__}({shown})"

    def keys(self) -> list[str]:
        return [name for name in self.FIELDS if getattr(self, name) is not UNSET]

    def items(self) -> Iterator[tuple[str, Any]]:
        return iter(self.changes().items())

    def values(self) -> Iterator[Any]:
        return iter(self.changes().values())


def _fields(cls):
    cls.FIELDS = tuple(f.name for f in fields(cls))
    return cls


@_fields
@dataclass(slots=True, repr=False)
class RunRecord(Record):
    """A run (``runs`` row), with ``task_counts`` ({status: n}, its descendants' included)
    and ``pinned`` when read from the store."""

    id: str
    name: str | None = UNSET
    kind: str = UNSET
    status: str = UNSET
    parent_id: str | None = UNSET
    resumed_from: str | None = UNSET
    owner_id: str | None = UNSET
    owner: str | None = UNSET  # the Jupyter (hub) user the run belongs to
    user: str | None = UNSET  # the OS user that ran it (provenance)
    host: str | None = UNSET
    params: dict[str, Any] | None = UNSET
    metrics: dict[str, Any] | None = UNSET
    graph: dict[str, Any] | None = UNSET
    snapshot: str | None = UNSET
    cluster: str | None = UNSET
    environment: dict[str, Any] | None = UNSET
    outputs: dict[str, Any] | None = UNSET
    notebook: str | None = UNSET
    error: str | None = UNSET
    created_at: datetime = UNSET
    started_at: datetime | None = UNSET
    ended_at: datetime | None = UNSET
    cancel_requested_at: datetime | None = UNSET
    cancel_requested_by: str | None = UNSET
    seq: int = UNSET
    schedule_id: str | None = UNSET
    scheduled_for: datetime | None = UNSET
    task_counts: dict[str, int] = UNSET  # read only
    pinned: bool = UNSET  # read only


@_fields
@dataclass(slots=True, repr=False)
class TaskRecord(Record):
    """A task (``tasks`` row): a new task, a partial update (``id`` and what changes), or
    a task as stored."""

    id: str
    run_id: str = UNSET
    node: str = UNSET
    name: str = UNSET
    index: int | None = UNSET
    status: str = UNSET
    cached: bool = UNSET
    reason: str | None = UNSET
    key: str | None = UNSET
    components: dict[str, Any] | None = UNSET
    attempts: int = UNSET
    provenance: dict[str, Any] | None = UNSET
    outputs: dict[str, str] | None = UNSET
    upstream: list[str] | None = UNSET
    resources: dict[str, float] | None = UNSET
    stdout: str | None = UNSET
    stderr: str | None = UNSET
    error: str | None = UNSET
    failure_kind: str | None = UNSET
    traceback: str | None = UNSET
    worker: str | None = UNSET
    created_at: datetime = UNSET
    started_at: datetime | None = UNSET
    ended_at: datetime | None = UNSET
    duration: float | None = UNSET
    seq: int = UNSET
    metrics: dict[str, Any] | None = UNSET


@_fields
@dataclass(slots=True, repr=False)
class CacheEntry(Record):
    """A cache entry: ``key`` -> the artifacts (``outputs``) a task produced for it.

    ``replace=True`` on an entry given to ``put_cache`` overwrites the key's value (a
    forced rerun); an entry read back never sets it. ``metrics`` is None when the op
    recorded none."""

    key: str
    outputs: dict[str, str] = UNSET
    components: dict[str, Any] | None = UNSET
    op_name: str | None = UNSET
    task_id: str | None = UNSET
    created_at: datetime = UNSET
    metrics: dict[str, Any] | None = UNSET
    signer: str | None = UNSET
    owner: str | None = UNSET  # the owner of the producing task's run (filled in by put_cache)
    replace: bool = UNSET


__all__ = ["UNSET", "CacheEntry", "Record", "RunRecord", "TaskRecord"]
