"""runs, runs/{id}, runs/{id}/tasks, the change feed, and their 400/404 answers."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from tests.server.conftest import ME, check, make_run


def _tasks(prefix: str, statuses: list[str]) -> list[dict]:
    return [{"id": f"{prefix}T{i}", "node": str(i), "name": f"op{i}", "status": s}
            for i, s in enumerate(statuses)]


async def test_run_carries_task_counts_by_status(api, store, owner):
    make_run(store, owner, "R1", name="demo", tasks=_tasks("R1", ["PENDING", "PENDING", "RUNNING"]))
    store.update_tasks(owner, [{"id": "R1T2", "status": "SUCCESS"}])
    status, run = await api("runs/R1")
    assert status == 200
    check(run, "Run")
    assert run["task_counts"] == {"PENDING": 2, "SUCCESS": 1}
    assert run["name"] == "demo" and run["status"] == "RUNNING" and run["pinned"] is False


async def test_runs_newest_first_with_keyset_pages(api, store, owner):
    ids = [make_run(store, owner, f"R{i:02d}", status="SUCCESS") for i in range(7)]
    status, page = await api("runs", limit=3)
    assert status == 200
    check(page, "RunPage")
    assert [r["id"] for r in page["runs"]] == ids[::-1][:3]
    seen = [r["id"] for r in page["runs"]]
    while page["next_before"]:
        _, page = await api("runs", limit=3, before=page["next_before"])
        seen += [r["id"] for r in page["runs"]]
    assert seen == ids[::-1]


async def test_runs_filters(api, store, owner):
    make_run(store, owner, "R1", name="Train model", status="SUCCESS", kind="cell", notebook="a.ipynb")
    make_run(store, owner, "R2", name="clean data", status="FAILED", notebook="b.ipynb")
    make_run(store, owner, "R3", name="train again", status="RUNNING", parent_id="R1")

    async def ids(**params):
        status, body = await api("runs", **params)
        assert status == 200, body
        return [r["id"] for r in body["runs"]]

    assert await ids(name="TRAIN") == ["R3", "R1"]
    assert await ids(status="SUCCESS,FAILED") == ["R2", "R1"]
    assert await ids(kind="cell") == ["R1"]
    assert await ids(notebook="b.ipynb") == ["R2"]
    assert await ids(parent_id="R1") == ["R3"]
    future = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    assert await ids(started_after=future) == []
    assert await ids(started_after="2000-01-01T00:00:00Z") == ["R3", "R2", "R1"]
    assert await ids(name="100%_") == []  # LIKE wildcards are taken literally
    assert await ids(name="a\x00b") == []  # tornado turns control characters into spaces


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"}, {"limit": "501"}, {"limit": "ten"}, {"status": "DONE"}, {"kind": "job"},
        {"started_after": "yesterday"}, {"changed_since": "-1"}, {"changed_since": "x"},
        {"changed_since": "0", "status": "RUNNING"}, {"limit": ["1", "2"]},
    ],
)
async def test_bad_query_parameters_are_400(api, params):
    status, body = await api("runs", **params)
    assert status == 400
    check(body, "Error")
    assert body["message"] and "Traceback" not in body["message"]


async def test_unknown_ids_are_404(api):
    for path in ("runs/NOPE", "runs/NOPE/tasks", "tasks/NOPE", "tasks/NOPE/logs", "graphs/NOPE",
                 "lineage/NOPE", "runs/a%20b"):
        status, body = await api(path)
        assert status == 404, path
        check(body, "Error")


async def test_tasks_of_a_run_and_only_the_changed_ones(api, store, owner):
    make_run(store, owner, "R1", tasks=_tasks("R1", ["PENDING", "PENDING"]))
    status, body = await api("runs/R1/tasks")
    assert status == 200
    check(body, "TaskList")
    assert [t["name"] for t in body["tasks"]] == ["op0", "op1"]
    assert all("stdout" not in t for t in body["tasks"])  # logs have their own route
    _, run = await api("runs/R1")
    store.update_tasks(owner, [{"id": "R1T1", "status": "RUNNING"}])
    _, changed = await api("runs/R1/tasks", changed_since=run["seq"])
    assert [(t["id"], t["status"]) for t in changed["tasks"]] == [("R1T1", "RUNNING")]


async def test_run_without_tasks_lists_empty(api, store, owner):
    make_run(store, owner, "R1")
    assert (await api("runs/R1/tasks"))[1]["tasks"] == []


async def test_change_feed_sees_every_change_once_in_order(api, store, owner):
    _, first = await api("runs", limit=5)
    cursor = first["cursor"]
    make_run(store, owner, "R1", tasks=_tasks("R1", ["PENDING"]))
    make_run(store, owner, "R2")
    store.update_tasks(owner, [{"id": "R1T0", "status": "SUCCESS"}])
    status, feed = await api("runs", changed_since=cursor)
    assert status == 200
    check(feed, "RunChanges")
    assert [r["id"] for r in feed["runs"]] == ["R2", "R1"]  # R1 changed last
    assert feed["runs"][1]["task_counts"] == {"SUCCESS": 1}
    _, again = await api("runs", changed_since=feed["cursor"])
    assert again == {"runs": [], "cursor": feed["cursor"]}


async def test_change_feed_never_skips_concurrent_commits(api, store, flow_config):
    """Writers in several threads commit in any order; a poller following the cursor must
    end up with every run's final state."""
    from jupyter_flow.store import Store

    writers = [Store(flow_config["db_url"]) for _ in range(4)]
    owners = [w.register_owner(user=ME) for w in writers]  # the server lists its own user's runs
    final: dict[str, str] = {}

    def write(index: int) -> None:
        writer, owner_id = writers[index], owners[index]
        for n in range(15):
            run_id = f"W{index}N{n:02d}"
            writer.create_run({"id": run_id, "kind": "api", "status": "RUNNING", "owner_id": owner_id},
                              _tasks(run_id, ["PENDING"]))
            writer.update_tasks(owner_id, [{"id": f"{run_id}T0", "status": "SUCCESS"}])
            writer.finish_run(run_id, owner_id, "SUCCESS")
            final[run_id] = "SUCCESS"

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    seen: dict[str, str] = {}
    cursor = 0
    while any(t.is_alive() for t in threads) or cursor < store.feed_cursor():
        status, feed = await api("runs", changed_since=cursor, limit=7)
        assert status == 200
        for run in feed["runs"]:
            assert run["seq"] > cursor
            seen[run["id"]] = run["status"]
        cursor = feed["cursor"]
    for thread in threads:
        thread.join()
    for writer in writers:
        writer.close()
    assert seen == final and len(seen) == 60
