"""Tables of the metadata store, as SQLAlchemy 2 typed ORM classes (the schema at head).

Alembic revisions in ``migrations/versions`` build the same schema step by step;
``tests/store/test_migrations.py`` checks that the two never drift apart.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator):
    """A timestamp stored in UTC and always returned timezone-aware (UTC).

    SQLite has no time zones, so values are stored there as naive UTC strings; PostgreSQL
    gets ``timestamptz``. Naive datetimes given to the store are taken to be UTC already.
    Floats and ints are taken as seconds since the epoch (what ``time.time()`` returns on a
    worker).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, (int, float)):
            value = datetime.fromtimestamp(value, timezone.utc)
        elif isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        else:
            value = value.astimezone(timezone.utc)
        if dialect.name == "sqlite":
            # Fixed-width naive strings compare in time order, also against SQL-side "now".
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


# JSONB on PostgreSQL (compact, comparable); JSON text elsewhere.
JSONType = JSON().with_variant(JSONB(), "postgresql")

# Stable constraint names so alembic can alter them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSONType, list[Any]: JSONType}


class Owner(Base):
    """A process that writes runs (kernel, CLI, batch, server) and proves it is alive."""

    __tablename__ = "owners"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    user: Mapped[str | None] = mapped_column(String(255))
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32), default="process")
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    fenced: Mapped[bool] = mapped_column(Boolean, default=False)

    # The reconciler's question "which live owners are stale?" is one range scan.
    __table_args__ = (Index("ix_owners_fenced_heartbeat_at", "fenced", "heartbeat_at"),)


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255), index=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    parent_id: Mapped[str | None] = mapped_column(
        String(26), ForeignKey("runs.id", ondelete="SET NULL"), index=True
    )
    resumed_from: Mapped[str | None] = mapped_column(String(26))
    owner_id: Mapped[str | None] = mapped_column(
        String(26), ForeignKey("owners.id", ondelete="SET NULL"), index=True
    )
    # Who the run belongs to: the Jupyter (hub) user; ``user`` is the OS user that ran it.
    owner: Mapped[str | None] = mapped_column(String(255))
    user: Mapped[str | None] = mapped_column(String(255))
    host: Mapped[str | None] = mapped_column(String(255))
    params: Mapped[dict[str, Any] | None]
    metrics: Mapped[dict[str, Any] | None]
    graph: Mapped[dict[str, Any] | None]
    snapshot: Mapped[str | None] = mapped_column(String(128))
    cluster: Mapped[str | None] = mapped_column(String(255))
    environment: Mapped[dict[str, Any] | None]
    # What the run as a whole produced: {name: artifact hash} (a notebook run's output_notebook).
    outputs: Mapped[dict[str, Any] | None]
    notebook: Mapped[str | None] = mapped_column(Text, index=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(index=True)
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    cancel_requested_at: Mapped[datetime | None]
    cancel_requested_by: Mapped[str | None] = mapped_column(String(255))
    seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0", index=True)
    # A batch fired by a schedule: which one, and the cron time the firing was for.
    schedule_id: Mapped[str | None] = mapped_column(String(26), index=True)
    scheduled_for: Mapped[datetime | None]

    # The sidebar and the API list runs newest first within a status, kind or parent:
    # these let the database read one index range instead of sorting every match.
    __table_args__ = (
        Index("ix_runs_status_id", "status", "id"),
        Index("ix_runs_kind_id", "kind", "id"),
        Index("ix_runs_parent_id_id", "parent_id", "id"),
        Index("ix_runs_owner_listing", "owner", "id"),
    )


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(26), ForeignKey("runs.id", ondelete="CASCADE"))
    node: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    index: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(Text)
    key: Mapped[str | None] = mapped_column(String(64), index=True)
    components: Mapped[dict[str, Any] | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    provenance: Mapped[dict[str, Any] | None]
    outputs: Mapped[dict[str, Any] | None]
    upstream: Mapped[list[Any] | None]
    resources: Mapped[dict[str, Any] | None]
    stdout: Mapped[str | None] = mapped_column(Text)
    stderr: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    # core.status.FailureKind of a task that did not succeed (FAILED, CANCELED, SKIPPED).
    failure_kind: Mapped[str | None] = mapped_column(String(16))
    traceback: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    duration: Mapped[float | None] = mapped_column(Float)
    seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # jf.record inside the op: {name: value}
    metrics: Mapped[dict[str, Any] | None]

    # (run_id, status) serves "tasks of a run" and the per-status counts of the run list.
    __table_args__ = (Index("ix_tasks_run_id", "run_id", "status"),)


class CacheEntry(Base):
    """Cache key -> the artifacts a task produced for it."""

    __tablename__ = "cache_entries"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    outputs: Mapped[dict[str, Any]]
    components: Mapped[dict[str, Any] | None]
    op_name: Mapped[str | None] = mapped_column(String(255))
    task_id: Mapped[str | None] = mapped_column(String(26))
    created_at: Mapped[datetime]
    # Metrics the producing task recorded; a cache hit restores them with the outputs.
    metrics: Mapped[dict[str, Any] | None]
    # Key id of whoever signed the pickled outputs (None: nothing pickled); readers skip
    # entries they would refuse to unpickle.
    signer: Mapped[str | None] = mapped_column(String(16))
    # The owner of the run whose task produced the value.
    owner: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (Index("ix_cache_entries_op_name_created_at", "op_name", "created_at"),)


class Claim(Base):
    """A cache key some run is computing now (single flight across processes).

    A claim is valid while its owner is alive (not fenced); waiters that need the key
    restore the cache entry once it appears, or take the claim over when its owner is
    declared dead.
    """

    __tablename__ = "claims"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_id: Mapped[str] = mapped_column(
        String(26), ForeignKey("owners.id", ondelete="CASCADE"), index=True
    )
    run_id: Mapped[str] = mapped_column(String(26), index=True)
    task_id: Mapped[str | None] = mapped_column(String(26))
    claimed_at: Mapped[datetime]


class Signer(Base):
    """The public half of a user's artifact-signing key (the private half is in their home).

    Published so that others can decide to trust it; being listed here grants nothing.
    """

    __tablename__ = "signers"

    key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    user: Mapped[str] = mapped_column(String(255), index=True)
    public_key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class Artifact(Base):
    __tablename__ = "artifacts"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int | None] = mapped_column(BigInteger)
    serializer: Mapped[str | None] = mapped_column(String(64))
    serializer_version: Mapped[str | None] = mapped_column(String(64))
    type: Mapped[str | None] = mapped_column(String(255))
    uri: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]


class Pin(Base):
    """A pinned run: its artifacts survive ``jupyter flow cache gc``."""

    __tablename__ = "pins"

    run_id: Mapped[str] = mapped_column(
        String(26), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime]


class Cluster(Base):
    __tablename__ = "clusters"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    owner_id: Mapped[str | None] = mapped_column(
        String(26), ForeignKey("owners.id", ondelete="SET NULL"), index=True
    )
    profile: Mapped[str | None] = mapped_column(String(255))
    address: Mapped[str | None] = mapped_column(String(255))
    dashboard: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]


class Schedule(Base):
    """A notebook batch fired on a cron schedule (``jf.schedule``, ``jupyter flow schedule``).

    ``next_fire_at`` is the next cron time in UTC; a scheduler advances it with a
    compare-and-set (``Store.advance_schedule``), so each time fires at most once.
    """

    __tablename__ = "schedules"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    notebook: Mapped[str] = mapped_column(Text)
    cron: Mapped[str] = mapped_column(String(120))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    params: Mapped[dict[str, Any] | None]
    grid: Mapped[dict[str, Any] | None]
    parallel: Mapped[int] = mapped_column(Integer, default=1)
    cluster: Mapped[str | None] = mapped_column(String(200))
    misfire: Mapped[str] = mapped_column(String(16), default="once")
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    next_fire_at: Mapped[datetime | None]
    last_fire_at: Mapped[datetime | None]
    last_run_id: Mapped[str | None] = mapped_column(String(26))
    # {"at", "missed", "policy", "fired"} of the last firing that came too late.
    last_misfire: Mapped[dict[str, Any] | None]

    # Every tick asks "which unpaused schedules are due?": one index range.
    __table_args__ = (Index("ix_schedules_paused_next_fire_at", "paused", "next_fire_at"),)


class Lease(Base):
    """A named role only one process may hold at a time (``scheduler``), until it expires."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class Counter(Base):
    """Named counters; ``seq`` orders the change feed.

    Every write transaction that touches runs increments the ``seq`` row last, just before
    it commits. The row lock serializes those transactions, so a seq that a reader can see
    is always larger than every seq committed before it (see ``repository._bump_seq``).
    """

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)
