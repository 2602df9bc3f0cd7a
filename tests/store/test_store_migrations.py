"""Schema migrations: from empty, from the previous revision, and refusing newer stores."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from jupyter_flow.core.errors import StoreError, StoreVersionError
from jupyter_flow.core.ids import new_id
from jupyter_flow.core.status import FailureKind
from jupyter_flow.store import Store
from jupyter_flow.store.migration import downgrade, head_revision, upgrade
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


def test_upgrade_to_0008_backfills_why_each_task_failed(empty_url):
    """A store written at 0007 (no failure_kind column) gets each task's failure kind from
    its status and error text, as the engine writes it now; other tasks get none."""
    engine = sa.create_engine(empty_url)
    try:
        upgrade(engine, empty_url, "0007")
        now = datetime.now(timezone.utc)
        run_id = new_id()
        rows = {  # task id -> (status, error, expected failure_kind)
            new_id(): ("FAILED", "OpTimeout: timed out after 2 s", "timeout"),
            new_id(): ("FAILED", "WorkerLost: the worker running op 'crash' died on each of 3 attempts", "worker"),
            new_id(): ("FAILED", "ValueError: no such column", "exception"),
            new_id(): ("FAILED", None, "exception"),
            new_id(): ("CANCELED", None, "canceled"),
            new_id(): ("SKIPPED", "skipped: upstream op 'load' failed", "upstream"),
            new_id(): ("SUCCESS", None, None),
            new_id(): ("LOST", None, None),
        }
        runs = sa.table("runs", *(sa.column(c) for c in ("id", "kind", "status", "created_at", "seq")))
        tasks = sa.table("tasks", *(sa.column(c) for c in (
            "id", "run_id", "node", "name", "status", "error", "cached", "attempts", "created_at", "seq")))
        with engine.begin() as conn:
            conn.execute(runs.insert().values(id=run_id, kind="api", status="FAILED", created_at=now, seq=1))
            conn.execute(tasks.insert(), [
                {"id": task_id, "run_id": run_id, "node": str(i), "name": f"op{i}", "status": status,
                 "error": error, "cached": False, "attempts": 1, "created_at": now, "seq": 1}
                for i, (task_id, (status, error, _)) in enumerate(rows.items())
            ])
    finally:
        engine.dispose()
    assert revision_of(empty_url) == ["0007"]

    with Store(empty_url) as store:   # upgrades
        assert revision_of(empty_url) == [head_revision()]
        stored = {task["id"]: task["failure_kind"] for task in store.get_tasks(run_id)}
    assert stored == {task_id: kind for task_id, (_, _, kind) in rows.items()}
    assert {kind for kind in stored.values() if kind} == {k.value for k in FailureKind}



def test_upgrade_to_0009_gives_runs_and_cache_entries_their_owner(empty_url):
    """A store written at 0008 (runs known by OS user only): each run belongs to its OS user,
    each cache entry to the owner of the run whose task produced it; an entry whose task is
    gone has none. New runs without a Jupyter identity belong to their OS user too."""
    engine = sa.create_engine(empty_url)
    now = datetime.now(timezone.utc)
    run_a, run_b, task_a, task_b = new_id(), new_id(), new_id(), new_id()
    try:
        upgrade(engine, empty_url, "0008")
        runs = sa.table("runs", *(sa.column(c) for c in ("id", "kind", "status", "user", "created_at", "seq")))
        tasks = sa.table("tasks", *(sa.column(c) for c in (
            "id", "run_id", "node", "name", "status", "cached", "attempts", "created_at", "seq")))
        cache = sa.table("cache_entries", *(sa.column(c) for c in ("key", "outputs", "task_id", "created_at")))
        with engine.begin() as conn:
            conn.execute(runs.insert(), [
                {"id": run_a, "kind": "api", "status": "SUCCESS", "user": "ana", "created_at": now, "seq": 1},
                {"id": run_b, "kind": "api", "status": "SUCCESS", "user": "bo", "created_at": now, "seq": 2}])
            conn.execute(tasks.insert(), [
                {"id": t, "run_id": r, "node": "0", "name": "op", "status": "SUCCESS", "cached": False,
                 "attempts": 1, "created_at": now, "seq": 1} for t, r in ((task_a, run_a), (task_b, run_b))])
            conn.execute(cache.insert(), [
                {"key": "k" * 64, "outputs": "{}", "task_id": task_a, "created_at": now},
                {"key": "j" * 64, "outputs": "{}", "task_id": task_b, "created_at": now},
                {"key": "g" * 64, "outputs": "{}", "task_id": new_id(), "created_at": now}])
    finally:
        engine.dispose()

    with Store(empty_url) as store:   # upgrades
        assert revision_of(empty_url) == [head_revision()]
        assert [r.owner for r in store.list_runs(owner="ana")] == ["ana"]
        assert {r.id for r in store.list_runs(owner="bo")} == {run_b}
        entries = store.lookup_cache(["k" * 64, "j" * 64, "g" * 64])
        assert {key[0]: entry.owner for key, entry in entries.items()} == {"k": "ana", "j": "bo", "g": None}
