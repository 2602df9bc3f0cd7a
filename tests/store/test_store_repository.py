"""Repository behaviour users rely on, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from jupyter_flow.core.errors import FencedWrite, StoreError
from jupyter_flow.core.ids import new_id
from jupyter_flow.core.status import FailureKind, RunKind, RunStatus, TaskStatus
from jupyter_flow.store import CancelConflict, RunActive, RunNotFound, Store
from jupyter_flow.store.records import UNSET, CacheEntry, RunRecord, TaskRecord


def make_run(store, owner, n_tasks=3, **fields):
    run_id = new_id()
    run = {"id": run_id, "name": "demo", "kind": RunKind.API, "status": RunStatus.RUNNING,
           "owner_id": owner, **fields}
    tasks = [
        {"id": new_id(), "node": f"node{i}", "name": "clean", "index": i,
         "upstream": [f"node{i - 1}"] if i else []}
        for i in range(n_tasks)
    ]
    store.create_run(run, tasks)
    return run_id, [t["id"] for t in tasks]


def age_heartbeat(store, owner_id, seconds=3600):
    """Pretend ``owner_id`` last heartbeated ``seconds`` ago (as a dead process would)."""
    old = store.now() - timedelta(seconds=seconds)
    owners = sa.table("owners", sa.column("id"), sa.column("heartbeat_at", sa.DateTime()))
    if store.dialect == "sqlite":
        old = old.replace(tzinfo=None)
    with store.engine.begin() as conn:
        conn.execute(owners.update().where(owners.c.id == owner_id).values(heartbeat_at=old))


def test_create_and_read_back_run_with_tasks(store, owner):
    run_id, task_ids = make_run(store, owner, params={"lr": 0.1}, graph={"nodes": [], "edges": []})
    run = store.get_run(run_id)
    assert run["status"] == "RUNNING" and run["kind"] == "api"
    assert run["user"] == "ada" and run["host"] == "lab"  # taken from the owner
    assert run["params"] == {"lr": 0.1} and run["graph"] == {"nodes": [], "edges": []}
    assert run["task_counts"] == {"PENDING": 3} and run["pinned"] is False
    for stamp in ("created_at", "started_at"):
        assert run[stamp].tzinfo is not None and run[stamp].utcoffset() == timedelta(0)
    assert abs(run["created_at"] - datetime.now(timezone.utc)) < timedelta(minutes=1)
    tasks = store.get_tasks(run_id)
    assert [t["id"] for t in tasks] == task_ids
    assert tasks[1]["upstream"] == ["node0"] and tasks[1]["attempts"] == 0
    assert tasks[1]["cached"] is False and tasks[1]["status"] == "PENDING"
    assert store.get_task(task_ids[2])["node"] == "node2"
    assert store.get_run("nope") is None and store.get_task("nope") is None


def test_unknown_fields_are_refused(store, owner):
    with pytest.raises(StoreError, match="colour"):
        store.create_run({"id": new_id(), "kind": "api", "colour": "red"}, [])
    run_id, _ = make_run(store, owner)
    with pytest.raises(StoreError, match="seq"):
        store.update_run(run_id, owner, seq=5)


def test_update_tasks_batch_moves_forward_only(store, owner):
    run_id, (a, b, c) = make_run(store, owner)
    start = datetime.now(timezone.utc) - timedelta(seconds=2)
    skipped = store.update_tasks(owner, [
        {"id": a, "status": TaskStatus.RUNNING, "worker": "tcp://w1", "started_at": start},
        {"id": a, "status": "SUCCESS", "outputs": {"out": "ab" * 32}, "attempts": 1},
        {"id": b, "status": "RUNNING"},
        {"id": b, "status": "WAITING"},          # backwards: skipped
        {"id": c, "status": "CACHED"},
        {"id": "no-such-task", "status": "RUNNING"},
    ])
    assert skipped == [b, "no-such-task"]
    task_a = store.get_task(a)
    assert task_a["status"] == "SUCCESS" and task_a["worker"] == "tcp://w1"
    assert task_a["outputs"] == {"out": "ab" * 32} and task_a["attempts"] == 1
    assert task_a["started_at"] == start and task_a["ended_at"] > start
    assert task_a["duration"] == pytest.approx((task_a["ended_at"] - start).total_seconds())
    assert store.get_task(b)["status"] == "RUNNING"
    assert store.get_task(c)["cached"] is True
    # Terminal states are entered once: a late event for a finished task is skipped.
    assert store.update_tasks(owner, [{"id": a, "status": "FAILED"}, {"id": c, "stdout": "x"}]) == [a, c]
    assert store.get_task(a)["status"] == "SUCCESS"
    assert store.get_run(run_id)["task_counts"] == {"SUCCESS": 1, "RUNNING": 1, "CACHED": 1}


def test_update_tasks_skips_tasks_of_another_owners_run(store, owner):
    _, (task,) = make_run(store, owner, n_tasks=1)
    intruder = store.register_owner()
    assert store.update_tasks(intruder, [{"id": task, "status": "FAILED"}]) == [task]
    assert store.get_task(task)["status"] == "PENDING"


def test_thousand_task_updates_are_one_fast_batch(store, owner):
    timings = []
    for _ in range(3):   # best of three: the first batch also compiles the statements
        run_id, task_ids = make_run(store, owner, n_tasks=1000)
        assert store.update_tasks(owner, [{"id": t, "status": "RUNNING"} for t in task_ids]) == []
        done = [{"id": t, "status": "SUCCESS", "outputs": {"out": f"{i:064x}"}, "worker": "w"}
                for i, t in enumerate(task_ids)]
        started = time.perf_counter()
        assert store.update_tasks(owner, done) == []
        timings.append(time.perf_counter() - started)
        assert store.get_run(run_id)["task_counts"] == {"SUCCESS": 1000}
    if store.dialect == "sqlite":
        assert min(timings) < 0.1, f"1000 task updates took {min(timings) * 1000:.0f} ms"


def test_finished_run_rejects_late_writes(store, owner):
    run_id, _ = make_run(store, owner)
    store.update_run(run_id, owner, metrics={"loss": 1.0})
    store.finish_run(run_id, owner, RunStatus.FAILED, error="ValueError: bad")
    run = store.get_run(run_id)
    assert run["status"] == "FAILED" and run["error"] == "ValueError: bad"
    assert run["ended_at"] >= run["started_at"]
    with pytest.raises(FencedWrite):
        store.update_run(run_id, owner, status="RUNNING")
    with pytest.raises(FencedWrite):
        store.finish_run(run_id, owner, "SUCCESS")
    assert store.get_run(run_id)["status"] == "FAILED"
    with pytest.raises(StoreError, match="not a final status"):
        store.finish_run(run_id, owner, "RUNNING")


def test_other_owner_cannot_write_run(store, owner):
    run_id, _ = make_run(store, owner)
    other = store.register_owner()
    with pytest.raises(FencedWrite, match="belongs to owner"):
        store.finish_run(run_id, other, "SUCCESS")
    with pytest.raises(FencedWrite, match="never created, or deleted"):
        store.update_run("missing", owner, name="x")


def test_reconcile_fences_silent_owner_and_rejects_its_late_writes(store, owner):
    run_id, (a, b, c) = make_run(store, owner)
    store.update_tasks(owner, [{"id": a, "status": "SUCCESS"}, {"id": b, "status": "RUNNING"}])
    done_id, _ = make_run(store, owner, n_tasks=0)
    store.finish_run(done_id, owner, "SUCCESS")
    alive = store.register_owner()
    alive_run, _ = make_run(store, alive)

    assert store.reconcile(timeout=30) == []   # everyone heartbeated just now
    age_heartbeat(store, owner)
    assert store.reconcile(timeout=30) == [run_id]
    assert store.reconcile(timeout=30) == []   # fenced once

    run = store.get_run(run_id)
    assert run["status"] == "LOST" and "heartbeat" in run["error"] and run["ended_at"]
    assert run["task_counts"] == {"SUCCESS": 1, "LOST": 2}
    assert store.get_run(done_id)["status"] == "SUCCESS"
    assert store.get_run(alive_run)["status"] == "RUNNING"
    # The owner wakes up (it was only suspended): every late write is refused.
    with pytest.raises(FencedWrite, match="declared dead"):
        store.heartbeat(owner)
    with pytest.raises(FencedWrite):
        store.update_tasks(owner, [{"id": c, "status": "SUCCESS"}])
    with pytest.raises(FencedWrite):
        store.finish_run(run_id, owner, "SUCCESS")
    with pytest.raises(FencedWrite):
        make_run(store, owner)
    assert store.get_task(c)["status"] == "LOST"
    assert store.get_owner(owner)["fenced"] is True


def test_release_owner_loses_its_unfinished_runs(store, owner):
    run_id, _ = make_run(store, owner)
    cluster = store.register_cluster(owner, "local", "tcp://127.0.0.1:8786", "http://127.0.0.1:8787")
    assert [c["id"] for c in store.list_clusters()] == [cluster]
    assert store.release_owner(owner) == [run_id]
    assert store.get_run(run_id)["status"] == "LOST"
    assert store.list_clusters() == []
    assert store.list_clusters(active_only=False)[0]["closed_at"] is not None
    with pytest.raises(FencedWrite):
        store.heartbeat(owner)


def test_heartbeat_uses_database_time(store, owner):
    before = store.get_owner(owner)["heartbeat_at"]
    store.heartbeat(owner)
    after = store.get_owner(owner)["heartbeat_at"]
    assert after >= before and after.tzinfo is not None
    assert abs(store.now() - after) < timedelta(seconds=5)


def test_list_runs_filters_and_keyset_pagination(store, owner):
    parent, _ = make_run(store, owner, n_tasks=0, kind="notebook", name="nightly report",
                         notebook="analysis.ipynb")
    cells = [make_run(store, owner, n_tasks=1, kind="cell", name=f"cell {i}", parent_id=parent,
                      notebook="analysis.ipynb")[0] for i in range(5)]
    store.finish_run(cells[0], owner, "FAILED")
    newest_first = [r["id"] for r in store.list_runs(limit=100)]
    assert newest_first == [*reversed(cells), parent]
    page1 = store.list_runs(limit=2)
    page2 = store.list_runs(limit=2, before=page1[-1]["id"])
    assert [r["id"] for r in page1 + page2] == newest_first[:4]
    assert [r["id"] for r in store.list_runs(name="REPORT")] == [parent]
    assert [r["id"] for r in store.list_runs(status="FAILED")] == [cells[0]]
    assert len(store.list_runs(status=["FAILED", RunStatus.RUNNING])) == 6
    assert [r["id"] for r in store.list_runs(kind=RunKind.NOTEBOOK)] == [parent]
    assert len(store.list_runs(parent_id=parent)) == 5
    assert len(store.list_runs(notebook="analysis.ipynb")) == 6
    assert store.list_runs(notebook="other.ipynb") == []
    assert len(store.list_runs(started_after=store.now() - timedelta(minutes=5))) == 6
    assert store.list_runs(started_after=store.now() + timedelta(minutes=5)) == []
    assert store.list_runs(limit=1)[0]["task_counts"] == {"PENDING": 1}
    assert store.list_runs(name="50%_") == []  # LIKE wildcards are matched literally


def test_change_feed_orders_changes_and_advances_cursor(store, owner):
    changes, cursor = store.changes_since(0)
    assert changes == [] and cursor == 0
    first, (task,) = make_run(store, owner, n_tasks=1)
    second, _ = make_run(store, owner, n_tasks=0)
    changes, cursor = store.changes_since(0)
    assert [r["id"] for r in changes] == [first, second]
    assert store.changes_since(cursor) == ([], cursor)
    store.update_tasks(owner, [{"id": task, "status": "RUNNING"}])   # a task write touches its run
    changes, cursor2 = store.changes_since(cursor)
    assert [r["id"] for r in changes] == [first] and cursor2 > cursor
    assert changes[0]["task_counts"] == {"RUNNING": 1}
    assert [t["id"] for t in store.get_tasks(first, changed_since=cursor)] == [task]
    assert store.get_tasks(first, changed_since=cursor2) == []
    store.pin(second)
    store.record_metric(first, "accuracy", 0.93)
    changes, cursor3 = store.changes_since(cursor2, limit=1)
    assert [r["id"] for r in changes] == [second]
    changes, cursor4 = store.changes_since(cursor3, limit=1)
    assert [r["id"] for r in changes] == [first] and cursor4 > cursor3


def test_one_transaction_touching_many_runs_pages_without_loss(store, owner):
    run_ids = [make_run(store, owner, n_tasks=1)[0] for _ in range(5)]
    _, cursor = store.changes_since(0)
    store.release_owner(owner)   # one transaction marks all five LOST
    seen, pages = [], 0
    while True:
        changes, cursor = store.changes_since(cursor, limit=2)
        if not changes:
            break
        pages += 1
        seen += [r["id"] for r in changes]
    assert sorted(seen) == sorted(run_ids) and pages == 3


def test_cache_lookup_put_drop_and_last_components(store, owner):
    keys = [f"{i:064x}" for i in range(1200)]    # more than one SQLite chunk
    store.put_cache([{"key": k, "outputs": {"out": k}, "components": {"code": "v1"},
                      "op_name": "clean", "task_id": "T1", "signer": "k" * 16} for k in keys[:1100]])
    found = store.lookup_cache(keys)
    assert len(found) == 1100 and keys[1100] not in found
    assert found[keys[3]] == CacheEntry(key=keys[3], outputs={"out": keys[3]}, components={"code": "v1"},
                                        task_id="T1", op_name="clean", metrics=None, signer="k" * 16,
                                        owner=None)  # T1 is in no stored run: no owner to record
    # The engine's hot path reads no components.
    assert store.lookup_cache([keys[3]], components=False)[keys[3]].components is UNSET
    # A key keeps its first value: a second computation cannot make it map to another one.
    kept = store.put_cache([{"key": keys[3], "outputs": {"out": "other"}, "op_name": "clean"}])
    assert kept == [keys[3]]
    assert store.lookup_cache([keys[3]])[keys[3]]["outputs"] == {"out": keys[3]}
    store.put_cache([{"key": keys[3], "outputs": {"out": "new"}, "components": {"code": "v2"},
                      "op_name": "clean", "replace": True}])   # a forced rerun replaces
    assert store.lookup_cache([keys[3]])[keys[3]]["outputs"] == {"out": "new"}
    assert store.last_components(["clean", "other"]) == {"clean": {"code": "v2"}}
    store.drop_cache(keys[:600])
    assert len(store.lookup_cache(keys)) == 500
    assert store.lookup_cache([]) == {}


def test_cache_entries_keep_metrics_and_runs_roll_them_up_to_their_notebook(store, owner):
    key = "ab" * 32
    store.put_cache([{"key": key, "outputs": {"out": key}, "op_name": "fit", "metrics": {"acc": 0.9}}])
    assert store.lookup_cache([key], components=False)[key]["metrics"] == {"acc": 0.9}
    store.put_cache([{"key": key, "outputs": {"out": key}, "op_name": "fit", "metrics": {"acc": 0.8},
                      "replace": True}])  # a forced rerun's metrics replace the first ones
    assert store.lookup_cache([key])[key]["metrics"] == {"acc": 0.8}
    notebook = new_id()
    store.create_run({"id": notebook, "kind": "notebook", "status": "RUNNING", "owner_id": owner})
    cell = new_id()
    store.create_run({"id": cell, "kind": "cell", "status": "RUNNING", "owner_id": owner, "parent_id": notebook})
    store.record_metrics(cell, {"acc": 0.8})
    store.record_metrics(notebook, {"f1": 0.7})
    assert store.get_run(cell)["metrics"] == {"acc": 0.8}
    assert store.get_run(notebook)["metrics"] == {"acc": 0.8, "f1": 0.7}
    other = new_id()  # a run whose parent is not a notebook run keeps its metrics to itself
    store.create_run({"id": other, "kind": "api", "status": "RUNNING", "owner_id": owner, "parent_id": cell})
    store.record_metrics(other, {"loss": 1.0})
    assert "loss" not in store.get_run(cell)["metrics"]


def test_pins(store, owner):
    run_id, _ = make_run(store, owner)
    store.pin(run_id)
    store.pin(run_id)
    assert store.pinned_runs() == {run_id} and store.get_run(run_id)["pinned"] is True
    store.pin(run_id, pinned=False)
    assert store.pinned_runs() == set()
    with pytest.raises(RunNotFound):
        store.pin("missing")


def test_delete_run_cascades_tasks_and_keeps_children(store, owner):
    parent, tasks = make_run(store, owner, kind="batch")
    child, _ = make_run(store, owner, parent_id=parent)
    store.pin(parent)
    with pytest.raises(RunActive):
        store.delete_run(parent)
    store.finish_run(parent, owner, "SUCCESS")
    store.delete_run(parent)
    assert store.get_run(parent) is None and store.get_task(tasks[0]) is None
    assert store.pinned_runs() == set()
    assert store.get_run(child)["parent_id"] is None
    store.delete_run(child, force=True)
    with pytest.raises(FencedWrite):
        store.finish_run(child, owner, "SUCCESS")


def test_cancel_request_reaches_child_runs(store, owner):
    batch, _ = make_run(store, owner, n_tasks=0, kind="batch")
    notebook, _ = make_run(store, owner, n_tasks=0, kind="notebook", parent_id=batch)
    cell, _ = make_run(store, owner, n_tasks=0, kind="cell", parent_id=notebook)
    finished, _ = make_run(store, owner, n_tasks=0, kind="notebook", parent_id=batch)
    store.finish_run(finished, owner, "SUCCESS")
    unrelated, _ = make_run(store, owner, n_tasks=0)
    record = store.request_cancel(batch, by="ada")
    assert record["cancel_requested_by"] == "ada" and record["cancel_requested_at"] is not None
    assert store.cancel_requested([batch, notebook, cell, finished, unrelated]) == {batch, notebook, cell}
    first_time = record["cancel_requested_at"]
    assert store.request_cancel(batch, by="bob")["cancel_requested_at"] == first_time
    store.finish_run(batch, owner, "CANCELED")
    with pytest.raises(CancelConflict):
        store.request_cancel(batch)


def test_metrics_and_params_merge(store, owner):
    run_id, _ = make_run(store, owner, params={"lr": 0.1})
    store.record_metric(run_id, "accuracy", 0.93)
    store.record_metric(run_id, "loss", 0.2)
    store.set_params(run_id, {"epochs": 3})
    run = store.get_run(run_id)
    assert run["metrics"] == {"accuracy": 0.93, "loss": 0.2}
    assert run["params"] == {"lr": 0.1, "epochs": 3}
    with pytest.raises(RunNotFound):
        store.record_metric("missing", "x", 1)


def test_artifacts_registry_and_lineage(store, owner):
    digest = "cd" * 32
    row = {"hash": digest, "size": 8_000_000_000, "serializer": "pickle",
           "serializer_version": "5", "type": "pandas.DataFrame", "uri": f"file:///a/{digest}"}
    store.put_artifacts([row, row])
    store.put_artifacts([{**row, "size": 1}])   # duplicates are ignored, not replaced
    stored = store.get_artifact(digest)
    assert stored["size"] == 8_000_000_000 and stored["created_at"].tzinfo is not None
    assert store.get_artifact("ee" * 32) is None
    run_id, (a, b, _) = make_run(store, owner)
    store.update_tasks(owner, [{"id": a, "status": "SUCCESS", "outputs": {"df": digest}},
                               {"id": b, "status": "SUCCESS", "outputs": {"df": "ab" * 32}}])
    assert [t["id"] for t in store.artifact_runs(digest)] == [a]
    with pytest.raises(StoreError):
        store.artifact_runs("%")


def test_store_can_be_reopened(store_url, owner, store):
    run_id, _ = make_run(store, owner)
    store.close()
    with Store(store_url) as again:
        assert again.get_run(run_id)["id"] == run_id


def test_claims_give_each_key_one_computer(store, owner):
    other = store.register_owner()
    mine = store.claim_keys(owner, "RUN_A", {"k1": "T1", "k2": "T2"})
    assert mine == {"k1": {"state": "mine"}, "k2": {"state": "mine"}}
    theirs = store.claim_keys(other, "RUN_B", {"k1": "T3", "k3": "T4"})
    assert theirs["k1"] == {"state": "held", "run_id": "RUN_A", "owner_id": owner}
    assert theirs["k3"] == {"state": "mine"}
    # The claimer records the value: waiters see a cache entry and the claim is gone.
    store.put_cache([{"key": "k1", "outputs": {"return": "h1"}, "task_id": "T1", "signer": "s1"}], owner_id=owner)
    assert store.claim_status(["k1", "k2", "k9"]) == {
        "k1": {"state": "cached", "outputs": {"return": "h1"}, "task_id": "T1", "metrics": None, "signer": "s1"},
        "k2": {"state": "held", "run_id": "RUN_A", "owner_id": owner, "fenced": False},
        "k9": {"state": "free"},
    }
    assert store.claim_keys(other, "RUN_B", {"k1": "T3"})["k1"]["state"] == "cached"
    store.release_claims("RUN_A")
    assert store.claim_status(["k2"])["k2"] == {"state": "free"}
    assert {c["key"] for c in store.claims()} == {"k3"}


def test_claim_of_a_dead_owner_is_taken_over_and_its_late_cache_write_refused(store, owner):
    dead = store.register_owner()
    store.claim_keys(dead, "RUN_DEAD", {"k": "T1"})
    store.release_owner(dead)  # declared dead (fenced): its claims go with it
    assert store.claim_status(["k"])["k"] == {"state": "free"}
    assert store.claim_keys(owner, "RUN_NEW", {"k": "T2"})["k"] == {"state": "mine"}
    with pytest.raises(FencedWrite):
        store.put_cache([{"key": "k", "outputs": {"return": "late"}}], owner_id=dead)
    assert store.lookup_cache(["k"]) == {}


def test_finishing_a_run_releases_its_claims(store, owner):
    run_id, _ = make_run(store, owner)
    store.claim_keys(owner, run_id, {"k": None})
    store.finish_run(run_id, owner, "FAILED", error="boom")
    assert store.claims() == []


def test_failure_kind_is_checked_and_kept(sqlite_url):
    with Store(sqlite_url) as store:
        owner = store.register_owner()
        store.create_run({"id": "R1", "kind": "api", "status": "RUNNING", "owner_id": owner},
                         [{"id": "T1", "node": "0", "name": "slow"}, {"id": "T2", "node": "1", "name": "next"}])
        with pytest.raises(StoreError, match="unknown failure kind 'tired'"):
            store.update_tasks(owner, [{"id": "T1", "status": "FAILED", "failure_kind": "tired"}])
        store.update_tasks(owner, [{"id": "T1", "status": "FAILED", "failure_kind": FailureKind.TIMEOUT,
                                    "error": "OpTimeout: timed out after 1 s"},
                                   {"id": "T2", "status": "SKIPPED", "failure_kind": "upstream"}])
        assert [t["failure_kind"] for t in store.get_tasks("R1")] == ["timeout", "upstream"]


def test_runs_and_tasks_are_typed_records_given_and_returned(store, owner):
    """The store takes records (a partial update sets only what it names) and returns them
    with every field set; the dict-style reads of older callers still answer."""
    store.create_run(RunRecord(id="R1", kind="api", status="RUNNING", owner_id=owner, params={"n": 3}),
                     [TaskRecord(id="T1", node="0", name="load"), TaskRecord(id="T2", node="1", name="fit")])
    store.update_tasks(owner, [TaskRecord(id="T1", status="SUCCESS", outputs={"return": "a" * 64})])
    run = store.get_run("R1")
    assert isinstance(run, RunRecord) and run.status == "RUNNING" and run.params == {"n": 3}
    assert run.task_counts == {"SUCCESS": 1, "PENDING": 1} and run.pinned is False
    assert run.created_at.tzinfo is not None and run["kind"] == run.get("kind") == "api"
    load, fit = store.get_tasks("R1")
    assert isinstance(load, TaskRecord) and load.outputs == {"return": "a" * 64}
    assert load.ended_at.tzinfo is not None and load.error is None
    assert fit.status == "PENDING" and fit.outputs is None and fit.failure_kind is None  # untouched
    assert set(load.to_dict()) == set(TaskRecord.FIELDS) and "seq" in load
    assert [r.id for r in store.list_runs()] == ["R1"] and store.get_task("T2") == fit
    with pytest.raises(StoreError, match="unknown or read-only field"):
        store.update_tasks(owner, [TaskRecord(id="T2", run_id="R2")])


def test_records_have_the_tables_columns():
    from jupyter_flow.store.models import CacheEntry as CacheRow
    from jupyter_flow.store.models import Run, Task

    assert set(RunRecord.FIELDS) == set(Run.__table__.c.keys()) | {"task_counts", "pinned"}
    assert set(TaskRecord.FIELDS) == set(Task.__table__.c.keys())
    assert set(CacheEntry.FIELDS) == set(CacheRow.__table__.c.keys()) | {"replace"}
