"""Schema versions of the store: refuse newer ones, upgrade older ones under a lock.

Many processes may open a fresh store at the same moment (a batch of notebooks); the
lock makes exactly one of them migrate while the others wait and then find it done.
SQLite uses an ``fcntl`` lock on a file next to the database, PostgreSQL a session-level
advisory lock.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from jupyter_flow.core.errors import StoreError, StoreVersionError
from jupyter_flow.store.database import WRITE_OPTION, sqlite_path

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Arbitrary constant shared by every jupyter_flow process: "jflowmig" in ASCII.
PG_LOCK_KEY = 0x6A666C6F776D6967


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic configuration for the migrations shipped in this package."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@lru_cache(maxsize=1)
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """Newest schema revision this jupyter_flow knows.

    >>> head_revision() >= "0002"
    True
    """
    return _script().get_current_head()


def current_revisions(connection: Connection) -> tuple[str, ...]:
    """Revisions stamped in the database; () for a database never migrated."""
    return tuple(MigrationContext.configure(connection).get_current_heads())


@lru_cache(maxsize=1)
def known_revisions() -> frozenset[str]:
    """Every revision id shipped in this package."""
    return frozenset(script.revision for script in _script().walk_revisions())


def check_revision(connection: Connection, url_text: str) -> bool:
    """True if the schema is at head; False if older; StoreVersionError if newer/unknown."""
    revisions = current_revisions(connection)
    unknown = [rev for rev in revisions if rev not in known_revisions()]
    if unknown:
        raise StoreVersionError(
            f"the store at {url_text} was written by a newer jupyter_flow (revision "
            f"{', '.join(unknown)}; this version knows up to {head_revision()}); "
            "upgrade jupyter_flow"
        )
    return revisions == (head_revision(),)


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    lock_path = path.with_name(path.name + ".migrate.lock")
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _sqlite_migration_connection(engine: Engine) -> Iterator[Connection]:
    with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn:
        # Batch migrations rebuild tables (copy, drop, rename); with foreign keys on,
        # dropping "runs" would cascade into "tasks". The pragma only works outside a
        # transaction, so it goes to the driver connection before SQLAlchemy begins one.
        raw = conn.connection.dbapi_connection
        raw.execute("PRAGMA foreign_keys = OFF")
        try:
            yield conn
        finally:
            conn.rollback()
            raw.execute("PRAGMA foreign_keys = ON")


@contextmanager
def migration_connection(engine: Engine) -> Iterator[Connection]:
    """A writing connection that holds the store's migration lock."""
    if engine.dialect.name == "sqlite":
        path = sqlite_path(engine.url)
        with _file_lock(path) if path is not None else nullcontext():
            with _sqlite_migration_connection(engine) as conn:
                yield conn
        return
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": PG_LOCK_KEY})
        conn.commit()
        try:
            yield conn
        finally:
            conn.rollback()
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PG_LOCK_KEY})
            conn.commit()


def upgrade(engine: Engine, url_text: str, revision: str = "head") -> None:
    """Upgrade the store to ``revision`` under the migration lock (no-op when there)."""
    with migration_connection(engine) as conn:
        at_head = check_revision(conn, url_text)
        if not (at_head and revision == "head"):
            command.upgrade(alembic_config(conn), revision)
        conn.commit()


def downgrade(engine: Engine, url_text: str, revision: str) -> None:
    """Downgrade the store to ``revision`` (for tests and for going back a release)."""
    with migration_connection(engine) as conn:
        check_revision(conn, url_text)
        command.downgrade(alembic_config(conn), revision)
        conn.commit()


def ensure_schema(engine: Engine, url_text: str, migrate: bool) -> None:
    """Make sure the schema is at head: check cheaply, migrate under the lock if needed."""
    with engine.connect() as conn:
        at_head = check_revision(conn, url_text)
    if at_head:
        return
    if not migrate:
        raise StoreError(
            f"the store at {url_text} has an older schema; run `jupyter flow db upgrade` "
            "or open it with migrate=True"
        )
    upgrade(engine, url_text)
