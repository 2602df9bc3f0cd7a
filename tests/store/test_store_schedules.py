"""Schedules and leases in the store: CRUD, compare-and-set firing, lease take-over, on
SQLite and PostgreSQL, including several processes racing for one lease or one firing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from jupyter_flow.core.ids import new_id
from jupyter_flow.store import ScheduleExists, ScheduleNotFound, Store

WORKER = Path(__file__).with_name("store_worker.py")
REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2030, 1, 1, 3, 0, tzinfo=timezone.utc)


def new_schedule(store, **fields):
    record = {"name": "nightly", "notebook": "/data/train.ipynb", "cron": "0 3 * * *", "next_fire_at": T0}
    return store.create_schedule({**record, **fields})


def test_schedule_crud(store):
    created = new_schedule(store, params={"lr": 0.1, "api_token": "s3cr3t"}, grid={"seed": [1, 2]},
                           timezone="Europe/Berlin", created_by="ada")
    assert created["name"] == "nightly" and len(created["id"]) == 26
    assert created["params"] == {"lr": 0.1, "api_token": "***"}   # secrets never stored in plain text
    assert created["grid"] == {"seed": [1, 2]}
    assert (created["misfire"], created["parallel"], created["paused"]) == ("once", 1, False)
    assert created["timezone"] == "Europe/Berlin" and created["created_by"] == "ada"
    assert created["next_fire_at"] == T0 and created["last_run"] is None and created["last_misfire"] is None

    assert store.get_schedule(created["id"]) == store.get_schedule("nightly") == created
    assert store.get_schedule("nope") is None
    with pytest.raises(ScheduleExists, match="'nightly' already exists"):
        new_schedule(store)
    other = new_schedule(store, name="hourly", cron="0 * * * *")
    assert [s["name"] for s in store.list_schedules()] == ["hourly", "nightly"]

    paused = store.update_schedule(created["id"], paused=True)
    assert paused["paused"] is True and paused["updated_at"] >= created["updated_at"]
    with pytest.raises(ScheduleExists):
        store.update_schedule(other["id"], name="nightly")
    with pytest.raises(ScheduleNotFound):
        store.update_schedule("nope", paused=True)

    assert store.delete_schedule(created["id"]) is True
    assert store.delete_schedule(created["id"]) is False
    assert [s["name"] for s in store.list_schedules()] == ["hourly"]


def test_due_schedules_and_last_run_of_a_firing(store, owner):
    due = new_schedule(store)
    new_schedule(store, name="later", next_fire_at=T0 + timedelta(hours=1))
    new_schedule(store, name="paused", paused=True)
    assert [s["name"] for s in store.due_schedules(T0)] == ["nightly"]
    assert store.due_schedules(T0 - timedelta(seconds=1)) == []

    run_id = new_id()
    store.create_run({"id": run_id, "kind": "batch", "status": "RUNNING", "owner_id": owner,
                      "schedule_id": due["id"], "scheduled_for": T0})
    note = {"at": T0.isoformat(), "missed": 2, "policy": "once", "fired": 1}
    assert store.advance_schedule(due["id"], T0, T0 + timedelta(days=1), fired_at=T0, run_id=run_id, misfire=note)
    store.finish_run(run_id, owner, "SUCCESS")
    fired = store.get_schedule(due["id"])
    assert fired["next_fire_at"] == T0 + timedelta(days=1) and fired["last_fire_at"] == T0
    assert fired["last_misfire"] == note
    assert fired["last_run"]["id"] == run_id and fired["last_run"]["status"] == "SUCCESS"
    # Run records say which schedule fired them, for which cron time.
    run = store.get_run(run_id)
    assert run["schedule_id"] == due["id"] and run["scheduled_for"] == T0
    assert store.list_runs()[0]["schedule_id"] == due["id"]
    assert store.changes_since(0)[0][-1]["scheduled_for"] == T0

    # A firing without a misfire keeps the last misfire note visible.
    assert store.advance_schedule(due["id"], T0 + timedelta(days=1), T0 + timedelta(days=2), fired_at=T0)
    assert store.get_schedule(due["id"])["last_misfire"] == note


def test_compare_and_set_fires_each_time_once(store):
    schedule = new_schedule(store)
    nxt = T0 + timedelta(days=1)
    assert store.advance_schedule(schedule["id"], T0, nxt, fired_at=T0) is True
    assert store.advance_schedule(schedule["id"], T0, nxt, fired_at=T0) is False   # someone fired T0 already
    assert store.get_schedule(schedule["id"])["next_fire_at"] == nxt
    assert store.advance_schedule(schedule["id"], nxt, nxt + timedelta(days=1)) is True
    assert store.advance_schedule("nope", nxt, nxt) is False


def test_lease_refused_while_held_renewed_by_holder_taken_over_after_expiry(store):
    assert store.lease("scheduler") is None
    assert store.acquire_lease("scheduler", "a", 0.5) is True
    first = store.lease("scheduler")
    assert first["holder"] == "a" and first["expires_at"] > first["acquired_at"]
    assert store.acquire_lease("scheduler", "b", 0.5) is False      # held and not expired
    assert store.acquire_lease("scheduler", "a", 0.5) is True       # the holder renews
    renewed = store.lease("scheduler")
    assert renewed["acquired_at"] == first["acquired_at"] and renewed["expires_at"] > first["expires_at"]
    while store.now() <= renewed["expires_at"]:    # no renewal: the lease runs out (database time)
        time.sleep(0.05)
    assert store.acquire_lease("scheduler", "b", 30) is True        # b takes the expired lease over
    taken = store.lease("scheduler")
    assert taken["holder"] == "b" and taken["acquired_at"] > renewed["expires_at"]
    assert store.acquire_lease("scheduler", "a", 30) is False
    assert store.release_lease("scheduler", "a") is False           # not a's to release
    assert store.release_lease("scheduler", "b") is True
    assert store.acquire_lease("scheduler", "a", 30) is True        # released: free at once
    assert store.acquire_lease("other", "b", 30) is True            # leases are per name


def spawn(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, str(WORKER), *args], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def race(store_url: str, action: str, *args: str, n: int = 6) -> list[str]:
    """Start ``n`` processes that each try ``action`` once at the same moment; their answers."""
    workers = [spawn(action, store_url, f"p{i}", *args) for i in range(n)]
    for worker in workers:
        assert worker.stdout.readline().strip() == "ready", worker.stderr.read()
    for worker in workers:
        worker.stdin.write("go\n")
        worker.stdin.flush()
    answers = []
    for worker in workers:
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
        answers.append(out.strip())
    return answers


def test_processes_racing_for_a_free_lease_get_it_once(store_url):
    Store(store_url).close()
    answers = race(store_url, "lease")
    assert sorted(answers) == ["False"] * 5 + ["True"]
    with Store(store_url) as store:
        assert store.lease("scheduler")["holder"] == f"p{answers.index('True')}"


def test_processes_racing_for_an_expired_lease_get_it_once(store_url):
    with Store(store_url) as store:
        assert store.acquire_lease("scheduler", "dead", 0.001)
        while store.now() <= store.lease("scheduler")["expires_at"]:
            time.sleep(0.01)
    answers = race(store_url, "lease")
    assert sorted(answers) == ["False"] * 5 + ["True"]


def test_processes_racing_to_fire_one_time_fire_it_once(store_url):
    with Store(store_url) as store:
        schedule = new_schedule(store)
    answers = race(store_url, "advance", schedule["id"], T0.isoformat())
    assert sorted(answers) == ["False"] * 5 + ["True"]
