"""The change feed over HTTP on a real PostgreSQL, where transactions can commit out of order."""

from __future__ import annotations

import pytest

from tests.server.test_server_runs import test_change_feed_never_skips_concurrent_commits as _feed_check
from tests.store.conftest import pg_databases, pg_server, pg_url  # noqa: F401  (fixtures)


@pytest.fixture
def flow_config(flow_home, pg_url):  # noqa: F811  (the server's store is PostgreSQL here)
    return {
        "db_url": pg_url,
        "artifacts_url": str(flow_home / "artifacts"),
        "heartbeat_timeout": 30.0,
        "reconcile_interval": 0.2,
    }


async def test_change_feed_on_postgresql_never_skips_concurrent_commits(api, store, flow_config):
    assert flow_config["db_url"].startswith("postgresql")
    assert store.dialect == "postgresql"
    await _feed_check(api, store, flow_config)
