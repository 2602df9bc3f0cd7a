"""Engine settings: SQLite pragmas and transaction modes, URLs, network-filesystem warning."""

from __future__ import annotations

import sqlite3
import warnings

import pytest
import sqlalchemy

from jupyter_flow.store import Store
from jupyter_flow.store.database import (
    filesystem_type,
    is_network_filesystem,
    normalize_url,
    warn_if_network_filesystem,
)

MOUNTS = """\
sysfs /sys sysfs rw,nosuid 0 0
/dev/sda1 / ext4 rw,relatime 0 0
server:/export/home /home nfs4 rw,relatime,vers=4.2 0 0
/dev/sdb1 /home/ada/local\\040disk xfs rw 0 0
//nas/share /mnt/share cifs rw 0 0
"""


@pytest.fixture
def mounts_file(tmp_path):
    path = tmp_path / "mounts"
    path.write_text(MOUNTS)
    return str(path)


def test_filesystem_type_picks_the_innermost_mount(mounts_file):
    assert filesystem_type("/home/ada/flow/flow.db", mounts_file) == "nfs4"
    assert filesystem_type("/home/ada/local disk/flow.db", mounts_file) == "xfs"
    assert filesystem_type("/homework/flow.db", mounts_file) == "ext4"
    assert filesystem_type("/x", "/no/such/mounts") is None
    assert [is_network_filesystem(t) for t in ("nfs", "nfs4", "cifs", "ext4", None)] == [
        True, True, True, False, False]


def test_sqlite_store_on_nfs_warns_and_recommends_postgresql(mounts_file, tmp_path):
    from pathlib import Path

    with pytest.warns(UserWarning, match="network filesystem \\(nfs4\\).*PostgreSQL"):
        warn_if_network_filesystem(Path("/home/ada/flow/flow.db"), mounts_file)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_network_filesystem(Path("/srv/flow.db"), mounts_file)
        Store(f"sqlite:///{tmp_path / 'local.db'}").close()   # tmp is not NFS here


def test_sqlite_store_uses_wal_and_waits_for_locks(sqlite_url):
    with Store(sqlite_url) as store:
        assert store.dialect == "sqlite"
        with store.engine.connect() as conn:
            pragma = lambda name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
            assert pragma("journal_mode") == "wal"
            assert pragma("foreign_keys") == 1
            assert pragma("busy_timeout") == 30000
            assert pragma("synchronous") == 1   # NORMAL


def test_write_transactions_take_the_lock_up_front(sqlite_url, tmp_path):
    """Writers start with BEGIN IMMEDIATE (wait for the lock, never fail mid-transaction);
    readers start deferred and are never blocked by a writer under WAL."""
    with Store(sqlite_url) as store:
        owner = store.register_owner()
        blocker = sqlite3.connect(tmp_path / "flow.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            assert store.get_owner(owner)["id"] == owner
            with store.engine.connect().execution_options(jupyter_flow_write=True) as conn:
                conn.connection.dbapi_connection.execute("PRAGMA busy_timeout = 50")
                with pytest.raises(sqlalchemy.exc.OperationalError, match="locked") as failure:
                    conn.exec_driver_sql("SELECT 1")
                assert failure.value.statement == "BEGIN IMMEDIATE"
                conn.connection.dbapi_connection.execute("PRAGMA busy_timeout = 30000")
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        store.heartbeat(owner)


def test_store_creates_the_sqlite_directory(tmp_path):
    path = tmp_path / "deep" / "er" / "flow.db"
    with Store(f"sqlite:///{path}") as store:
        store.register_owner()
    assert path.exists()


def test_default_url_comes_from_flow_home(tmp_path, monkeypatch):
    monkeypatch.delenv("JUPYTER_FLOW_DB", raising=False)
    monkeypatch.setenv("JUPYTER_FLOW_HOME", str(tmp_path / "home"))
    with Store() as store:
        assert store.url == f"sqlite:///{tmp_path / 'home' / 'flow.db'}"
    assert (tmp_path / "home" / "flow.db").exists()


def test_plain_postgresql_url_means_psycopg():
    assert normalize_url("postgresql://u@h:5432/db").drivername == "postgresql+psycopg"
