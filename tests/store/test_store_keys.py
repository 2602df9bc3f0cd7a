"""The store's artifact key: one per store, made once even when many processes race for it."""

from __future__ import annotations

import sqlalchemy as sa

from jupyter_flow.store import Store
from tests.store.test_store_concurrency import spawn


def test_artifact_key_is_made_once_and_kept(store_url):
    first = Store(store_url)
    key = first.artifact_key()
    assert isinstance(key, bytes) and len(key) == 32
    first.close()
    again = Store(store_url)
    assert again.artifact_key() == key
    again.close()


def _race(url: str, n_procs: int = 8) -> set[str]:
    workers = [spawn("key", url) for _ in range(n_procs)]
    for worker in workers:
        assert worker.stdout.readline().strip() == "ready"
    for worker in workers:
        worker.stdin.write("go\n")
        worker.stdin.flush()
    keys = set()
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        keys.add(out.strip())
    return keys


def test_eight_processes_opening_a_fresh_sqlite_store_agree_on_one_key(sqlite_url):
    keys = _race(sqlite_url)
    assert len(keys) == 1 and len(bytes.fromhex(keys.pop())) == 32
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM store_keys").scalar() == 1
    engine.dispose()


def test_eight_processes_opening_a_fresh_postgres_store_agree_on_one_key(pg_url):
    keys = _race(pg_url)
    assert len(keys) == 1
    with Store(pg_url) as store:
        assert store.artifact_key().hex() in keys
