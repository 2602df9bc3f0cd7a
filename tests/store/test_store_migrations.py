"""Schema migrations: from empty, from the previous revision, and refusing newer stores."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from jupyter_flow.core.errors import StoreError, StoreVersionError
from jupyter_flow.core.ids import new_id
from jupyter_flow.store import Store
from jupyter_flow.store.migration import downgrade, head_revision
from jupyter_flow.store.models import Base


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request) -> str:
    """A database with no schema at all."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


def revision_of(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars())
    finally:
        engine.dispose()


def test_fresh_store_is_migrated_to_a_schema_matching_the_models(empty_url):
    with Store(empty_url) as store:
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    assert revision_of(empty_url) == [head_revision()]


def test_upgrade_from_previous_revision_keeps_data(empty_url):
    run_ids = []
    with Store(empty_url) as store:
        owner = store.register_owner()
        for _ in range(3):
            run_ids.append(new_id())
            store.create_run({"id": run_ids[-1], "kind": "api", "status": "RUNNING", "owner_id": owner},
                             [{"id": new_id(), "node": "n", "name": "op"}])
        store.put_cache([{"key": "a" * 64, "outputs": {"out": "b" * 64}, "op_name": "op"}])
        downgrade(store.engine, empty_url, "0001")
    assert revision_of(empty_url) == ["0001"]

    with pytest.raises(StoreError, match="db upgrade"):
        Store(empty_url, migrate=False)
    with Store(empty_url) as store:   # upgrades
        assert revision_of(empty_url) == [head_revision()]
        assert [store.get_run(r)["task_counts"] for r in run_ids] == [{"PENDING": 1}] * 3
        assert store.lookup_cache(["a" * 64])["a" * 64]["outputs"] == {"out": "b" * 64}
        # Existing runs were numbered in creation order, and new changes come after them.
        changes, cursor = store.changes_since(0)
        assert [r["id"] for r in changes] == run_ids and cursor == 3
        store.finish_run(run_ids[0], owner, "SUCCESS")
        assert [r["id"] for r in store.changes_since(cursor)[0]] == [run_ids[0]]
        store.pin(run_ids[1])
        assert store.pinned_runs() == {run_ids[1]}


def test_store_written_by_newer_version_is_refused_untouched(empty_url):
    Store(empty_url).close()
    engine = sa.create_engine(empty_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    engine.dispose()
    for migrate in (True, False):
        with pytest.raises(StoreVersionError, match="newer jupyter_flow .*9999_from_the_future.*upgrade jupyter_flow"):
            Store(empty_url, migrate=migrate)
    assert revision_of(empty_url) == ["9999_from_the_future"]


def test_explicit_upgrade_is_a_no_op_at_head(sqlite_url):
    with Store(sqlite_url) as store:
        store.upgrade()
    assert revision_of(sqlite_url) == [head_revision()]
