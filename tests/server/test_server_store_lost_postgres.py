"""A PostgreSQL store that goes away while the server runs: 503 naming it, not 500, and the
API works again once the database takes connections again, without a restart."""

from __future__ import annotations

import asyncio
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.server.conftest import check
from tests.store.conftest import pg_databases, pg_server, pg_url  # noqa: F401  (fixtures)


@pytest.fixture
def flow_config(flow_home, pg_url):  # noqa: F811  (the server's store is PostgreSQL here)
    return {"db_url": pg_url, "artifacts_url": str(flow_home / "artifacts"),
            "heartbeat_timeout": 30.0, "reconcile_interval": 0.2, "store_retry_interval": 0.2}


def _allow_connections(server_url: str, database: str, allow: bool) -> None:
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allow).lower()}')
            if not allow:  # and drop the server's pooled connections, as a restart would
                conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                     "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": database})
    finally:
        admin.dispose()


async def test_a_database_that_goes_away_is_503_and_comes_back(api, pg_server, pg_url):  # noqa: F811
    database = make_url(pg_url).database
    assert (await api("runs"))[0] == 200
    _allow_connections(pg_server, database, False)
    try:
        status, error = await api("runs")
        assert status == 503, error
        check(error, "StoreUnavailable")
        assert error["store"] == make_url(pg_url).render_as_string(hide_password=True)
        assert "is not currently accepting connections" in error["message"]
        assert (await api("health"))[0] == 503
    finally:
        _allow_connections(pg_server, database, True)
    deadline = time.monotonic() + 30
    while (await api("runs"))[0] != 200:
        assert time.monotonic() < deadline, "the server did not reconnect to its store"
        await asyncio.sleep(0.1)
