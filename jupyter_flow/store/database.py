"""Engines for the store: SQLite tuned for many writer processes, or PostgreSQL.

SQLite: WAL (readers never block the writer), ``busy_timeout`` (a writer waits for the
lock instead of failing with "database is locked"), ``BEGIN IMMEDIATE`` for write
transactions (they take the write lock up front, so two of them can never deadlock while
upgrading from a read lock) and plain deferred ``BEGIN`` for reads.

A SQLite store that turns read-only is refused before SQLite touches it: in WAL mode every
reader and writer writes into ``flow.db-shm`` through a shared memory map, and a write fault
on a map of a file that can no longer be written (made immutable, its filesystem remounted
read-only) is answered by the kernel with SIGBUS, which kills the whole process.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, literal_column
from sqlalchemy.engine import URL, make_url
from sqlalchemy.sql.elements import ColumnElement

from jupyter_flow.core.errors import StoreError, StoreReadOnly

#: Execution option that marks a connection as a writer (``BEGIN IMMEDIATE`` on SQLite).
WRITE_OPTION = "jupyter_flow_write"
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Seconds to wait for PostgreSQL to answer a new connection (``?connect_timeout=`` in the
#: URL overrides it). libpq's default is to wait forever for a server that never answers.
PG_CONNECT_TIMEOUT_S = 10
NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs")


def normalize_url(url: str) -> URL:
    """Parse ``url``; plain ``postgresql://`` means the psycopg 3 driver.

    >>> normalize_url("postgresql://u@h/db").drivername
    'postgresql+psycopg'
    """
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def sqlite_path(url: URL) -> Path | None:
    """File behind a SQLite URL; None for in-memory databases and other backends."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return Path(database).expanduser().absolute()


def filesystem_type(path: Path, mounts_file: str = "/proc/mounts") -> str | None:
    """Type of the filesystem holding ``path`` ("ext4", "nfs4", ...), from ``mounts_file``.

    The longest mount point that contains ``path`` wins. None when it cannot be told.
    """
    try:
        with open(mounts_file, encoding="utf-8") as mounts:
            lines = mounts.read().splitlines()
    except OSError:
        return None
    target = os.path.realpath(path)
    best, best_type = "", None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        # /proc/mounts escapes blanks in paths as octal (\040).
        mount_point = fields[1].encode().decode("unicode_escape")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, fields[2]
    return best_type


def is_network_filesystem(fstype: str | None) -> bool:
    """True for NFS and SMB mounts, where SQLite's file locks cannot be trusted.

    >>> is_network_filesystem("nfs4"), is_network_filesystem("ext4")
    (True, False)
    """
    return bool(fstype) and (fstype.startswith("nfs") or fstype in NETWORK_FILESYSTEMS)


def warn_if_network_filesystem(path: Path, mounts_file: str = "/proc/mounts") -> None:
    fstype = filesystem_type(path.parent, mounts_file)
    if is_network_filesystem(fstype):
        warnings.warn(
            f"the jupyter_flow store {path} is on a network filesystem ({fstype}); SQLite "
            "locking is unreliable there and writers may corrupt it or fail. Use "
            "PostgreSQL for a shared store (JUPYTER_FLOW_DB=postgresql+psycopg://...).",
            UserWarning,
            stacklevel=3,
        )


def read_only_reason(path: Path) -> str | None:
    """Why SQLite could not write the store at ``path`` now (None: it can).

    The database, its ``-wal`` and ``-shm`` files must be writable where they exist, and
    the directory where one of them is still to be created. Three ``access`` calls when
    all is well, so it is cheap enough to ask before every transaction.

    >>> read_only_reason(Path("/nonexistent/flow.db"))
    'its directory /nonexistent cannot be written'
    """
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
        file = path.with_name(name)
        if os.access(file, os.W_OK):
            continue
        if os.path.lexists(file):
            return f"{file} cannot be written"
        if not os.access(path.parent, os.W_OK | os.X_OK):
            return f"its directory {path.parent} cannot be written"
    return None


def refuse_if_read_only(path: Path) -> None:
    """Raise ``StoreReadOnly`` naming ``path`` and the fix when the store cannot be written."""
    reason = read_only_reason(path)
    if reason is not None:
        raise StoreReadOnly(
            f"the store at {path} is read-only ({reason}); jupyter_flow writes to a SQLite store "
            f"even to read it (its WAL index {path.name}-shm). Make the store writable again "
            "(chmod u+w, chattr -i, or remount its filesystem read-write) or point "
            "JUPYTER_FLOW_HOME / JUPYTER_FLOW_DB at a writable store; nothing was read or written."
        )


def _configure_sqlite(engine: Engine, path: Path | None) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        if path is not None:
            refuse_if_read_only(path)
        # Take transaction control away from pysqlite; the "begin" listener below issues it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        if path is not None:
            refuse_if_read_only(path)
        if connection.get_execution_options().get(WRITE_OPTION):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")


def create_private(path: Path) -> None:
    """Create the SQLite file (and missing parent directories) private to its owner before
    SQLite opens it: SQLite gives the ``-wal`` and ``-shm`` files the database file's mode.
    In a directory that an administrator made group-accessible (a team store) the group
    may read and write it too. An existing file keeps its mode."""
    if path.exists():
        return
    missing = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(directory, 0o700)  # whatever the umask
    shared = path.parent.stat().st_mode & stat.S_IRWXG
    mode = 0o660 if shared else 0o600
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return
    os.fchmod(fd, mode)
    os.close(fd)


def make_engine(url: URL) -> Engine:
    """Engine for ``url``, with the per-backend settings the store relies on."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        path = sqlite_path(url)
        if path is not None:
            try:
                create_private(path)
            except OSError as err:
                raise StoreError(
                    f"cannot create the store at {path} ({err.strerror}): create its directory "
                    "or point JUPYTER_FLOW_HOME / JUPYTER_FLOW_DB at a writable place"
                ) from err
            warn_if_network_filesystem(path)
        engine = create_engine(url)
        _configure_sqlite(engine, path)
        return engine
    if backend == "postgresql":
        connect_args: dict = {"options": "-c timezone=UTC"}
        if "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    raise StoreError(
        f"unsupported store URL {url.render_as_string(hide_password=True)}: use "
        "sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
    )


def db_now(dialect: str) -> ColumnElement:
    """SQL expression for the database's current UTC time, in the column storage format."""
    if dialect == "sqlite":
        # strftime gives milliseconds; pad to the microseconds SQLAlchemy stores.
        return literal_column("(strftime('%Y-%m-%d %H:%M:%f', 'now') || '000')")
    return literal_column("now()")


def db_now_minus(dialect: str, seconds: float) -> ColumnElement:
    """SQL expression for the database's current time minus ``seconds``."""
    seconds = float(seconds)
    if dialect == "sqlite":
        return literal_column(
            f"(strftime('%Y-%m-%d %H:%M:%f', 'now', '-{seconds:.6f} seconds') || '000')"
        )
    return literal_column(f"(now() - interval '{seconds:.6f} seconds')")
