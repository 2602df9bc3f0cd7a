"""Signing keys: each user's key is made once in their own keys directory, even when many
processes race for it, and the store only publishes its public half (``signers``)."""

from __future__ import annotations

import stat

import sqlalchemy as sa

from jupyter_flow.store import Store
from tests.store.test_store_concurrency import spawn


def test_published_signers_keep_their_first_row(store_url):
    with Store(store_url) as store:
        store.publish_signer("ana", "a" * 16, "QUFB")
        store.publish_signer("ana", "b" * 16, "QkJC")
        with Store(store_url) as other:  # a forged re-publication under another name changes nothing
            other.publish_signer("mallory", "a" * 16, "TU1N")
        rows = store.signers()
        assert [(r["user"], r["key_id"], r["public_key"]) for r in rows] == [
            ("ana", "a" * 16, "QUFB"), ("ana", "b" * 16, "QkJC")]
        assert store.signers("mallory") == []
        assert {r["key_id"] for r in store.signers("ana")} == {"a" * 16, "b" * 16}


def test_the_store_holds_no_private_key(sqlite_url):
    Store(sqlite_url).close()
    engine = sa.create_engine(sqlite_url)
    tables = set(sa.inspect(engine).get_table_names())
    engine.dispose()
    assert "store_keys" not in tables and "signers" in tables


def _race(url: str, keys: str, n_procs: int = 8) -> set[str]:
    workers = [spawn("key", url, keys) for _ in range(n_procs)]
    for worker in workers:
        assert worker.stdout.readline().strip() == "ready"
    for worker in workers:
        worker.stdin.write("go\n")
        worker.stdin.flush()
    ids = set()
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        ids.add(out.strip())
    return ids


def test_eight_processes_making_a_fresh_key_agree_on_one(sqlite_url, tmp_path):
    keys = tmp_path / "keys"
    ids = _race(sqlite_url, str(keys))
    assert len(ids) == 1 and len(ids.copy().pop()) == 16
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in keys.iterdir()} == {
        "signing.key": 0o600, "seal.key": 0o600}
    with Store(sqlite_url) as store:
        assert [r["key_id"] for r in store.signers()] == list(ids)


def test_eight_processes_publishing_to_a_fresh_postgres_store_agree(pg_url, tmp_path):
    ids = _race(pg_url, str(tmp_path / "keys"))
    assert len(ids) == 1
    with Store(pg_url) as store:
        assert [r["key_id"] for r in store.signers()] == list(ids)
