"""Fixtures for store tests: real SQLite files and a real PostgreSQL.

PostgreSQL comes from ``scripts/start-postgres.sh`` (a dedicated Debian cluster on port
54329). In CI (``CI`` set) it must work; elsewhere the PostgreSQL tests are skipped only
when the server binaries are not installed at all.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from jupyter_flow.store import Store

REPO = Path(__file__).resolve().parents[2]
START_POSTGRES = REPO / "scripts" / "start-postgres.sh"
TEMPLATE_DB = "flowtest_template"


def _admin_engine(server_url: str) -> sa.Engine:
    return sa.create_engine(server_url, isolation_level="AUTOCOMMIT")


def _has_postgres_binaries() -> bool:
    root = Path("/usr/lib/postgresql")
    return root.is_dir() and any(root.glob("*/bin/postgres"))


@pytest.fixture(scope="session")
def pg_server() -> str:
    """URL of the test PostgreSQL server's maintenance database (``postgres``)."""
    if not os.environ.get("CI") and not _has_postgres_binaries():
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    result = subprocess.run(
        ["bash", str(START_POSTGRES)], capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        pytest.fail(f"scripts/start-postgres.sh failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout.strip().splitlines()[-1]


class PgDatabases:
    """Creates throw-away databases on the test server and drops them afterwards."""

    def __init__(self, server_url: str):
        self.server_url = server_url
        self.admin = _admin_engine(server_url)
        self.created: list[str] = []

    def create(self, name: str, template: str = "template0") -> str:
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        self.created.append(name)
        return make_url(self.server_url).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self.admin.connect() as conn:
            for name in self.created:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()


@pytest.fixture(scope="session")
def pg_template(pg_server) -> str:
    """A database migrated to head once per session; test databases are copied from it."""
    databases = PgDatabases(pg_server)
    with databases.admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{TEMPLATE_DB}" TEMPLATE template0')
    url = make_url(pg_server).set(database=TEMPLATE_DB).render_as_string(hide_password=False)
    Store(url).close()  # CREATE DATABASE ... TEMPLATE needs it without connections
    yield TEMPLATE_DB
    with databases.admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
    databases.admin.dispose()


@pytest.fixture
def pg_databases(pg_server):
    databases = PgDatabases(pg_server)
    yield databases
    databases.drop_all()
    databases.admin.dispose()


def _db_name(request) -> str:
    return "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]


@pytest.fixture
def pg_url(pg_databases, request) -> str:
    """URL of a fresh, empty PostgreSQL database (no schema)."""
    return pg_databases.create(_db_name(request))


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'flow.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """URL of a store at the current schema, on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'flow.db'}"
    template = request.getfixturevalue("pg_template")
    databases = request.getfixturevalue("pg_databases")
    return databases.create(_db_name(request), template=template)


@pytest.fixture
def store(store_url):
    opened = Store(store_url)
    yield opened
    opened.close()


@pytest.fixture
def owner(store) -> str:
    return store.register_owner(user="ada", host="lab", pid=4242)
