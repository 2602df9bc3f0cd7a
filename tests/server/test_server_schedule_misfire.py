"""Misfires after a stopped server, and two servers on one store: real Jupyter server
processes, a real SQLite store, a seconds cron.

The firings here need no kernel: the notebook is moved away while no server runs, so each
firing records at once a FAILED batch run saying why ("could not start its batch"). That
keeps the test fast and is what a user sees when a scheduled notebook disappears; firings
that run the notebook are tested in test_server_schedules.py.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta

import pytest

from jupyter_flow.batch.schedules import fire_times
from jupyter_flow.store import Store
from tests.notebook_files import write_notebook
from tests.server.conftest import FLOW_ONLY, start_server_process
from tests.server.test_server_schedules import PARAM_CELLS
from tests.waiting import stop, wait_for

GRACE_S = 1
CRON = "*/2 * * * * *"


def _runs_of(store: Store, schedule: dict) -> list[dict]:
    runs = [r for r in store.list_runs(kind="batch", limit=500) if r["schedule_id"] == schedule["id"]]
    return sorted(runs, key=lambda r: r["scheduled_for"])


@pytest.mark.timeout(240)
def test_misfire_policies_after_a_stopped_server_and_two_servers_fire_each_time_once(flow_home, tmp_path):
    db_url = f"sqlite:///{flow_home / 'flow.db'}"
    artifacts = str(flow_home / "artifacts")
    for name in ("first", "a", "b"):  # each server's root and log
        (tmp_path / name).mkdir()
    notebook = write_notebook(tmp_path / "first" / "train.ipynb", PARAM_CELLS)
    # The first server ticks once, at start: it holds the lease (120 s) until it stops.
    first = start_server_process(tmp_path / "first", db_url, artifacts, *FLOW_ONLY,
                                 "--FlowApp.scheduler_interval=60", "--FlowApp.lease_ttl=120",
                                 f"--FlowApp.schedule_grace={GRACE_S}")
    try:
        assert first.wait_for_api()[0] == 200
        created = {}
        for policy in ("skip", "once", "catchup"):
            body = json.dumps({"notebook": "train.ipynb", "cron": CRON, "name": policy, "misfire": policy})
            status, created[policy] = first.api("schedules", "POST", body.encode())
            assert status == 201, created[policy]
        with Store(db_url) as store:
            assert f":{first.proc.pid}" in wait_for(lambda: store.lease("scheduler"))["holder"]
    finally:
        stop(first.proc)
    with Store(db_url) as store:
        assert store.lease("scheduler") is None, "the stopped server kept the lease"

    notebook.rename(tmp_path / "first" / "moved.ipynb")
    # Down long enough to miss at least three firings by more than the grace.
    first_due = min(datetime.fromisoformat(s["next_fire_at"]) for s in created.values())
    back_at = first_due + timedelta(seconds=2 * 2 + GRACE_S + 0.5)
    with Store(db_url) as store:
        time.sleep(max(0.0, (back_at - store.now()).total_seconds()))

    # Two servers on the store, both ticking often; one lease, so one of them fires.
    options = (*FLOW_ONLY, "--FlowApp.scheduler_interval=0.3", "--FlowApp.lease_ttl=5",
               f"--FlowApp.schedule_grace={GRACE_S}")
    servers = [start_server_process(tmp_path / name, db_url, artifacts, *options) for name in ("a", "b")]
    try:
        for server in servers:
            assert server.wait_for_api()[0] == 200
        with Store(db_url) as store:
            def decided():
                schedules = {s["name"]: s for s in store.list_schedules()}
                return schedules if all(s["last_misfire"] for s in schedules.values()) else None

            schedules = wait_for(decided, timeout=60)
            noticed = datetime.fromisoformat(schedules["catchup"]["last_misfire"]["at"])

            # A few firings on time after the misfires, with both servers ticking.
            def on_time_firings():
                return sum(1 for r in _runs_of(store, schedules["catchup"]) if r["scheduled_for"] > noticed) >= 2

            wait_for(on_time_firings, timeout=30)
            for name in schedules:
                assert servers[0].api(f"schedules/{name}", "PATCH", b'{"paused": true}')[0] == 200
            holder = store.lease("scheduler")["holder"]
            assert any(f":{server.proc.pid}" in holder for server in servers), holder
    finally:
        for server in servers:
            stop(server.proc)

    with Store(db_url) as store:
        for policy in ("skip", "once", "catchup"):
            schedule = store.get_schedule(policy)
            note = schedule["last_misfire"]
            at = datetime.fromisoformat(note["at"])
            late = at - timedelta(seconds=GRACE_S)
            runs = _runs_of(store, schedule)
            # Each firing time once, though two servers ticked: no scheduled_for twice.
            times = [r["scheduled_for"] for r in runs]
            assert len(times) == len(set(times)), (policy, times)
            assert note["policy"] == policy and note["missed"] >= 3, note
            missed_runs = [r for r in runs if r["scheduled_for"] < late]
            if policy == "skip":
                assert note["fired"] == 0 and missed_runs == []
            elif policy == "once":
                assert note["fired"] == 1 and len([r for r in runs if r["scheduled_for"] <= at]) == 1
            else:
                assert note["fired"] == note["missed"] == len(missed_runs)
                assert missed_runs[0]["scheduled_for"] == datetime.fromisoformat(created[policy]["next_fire_at"])
                expected = list(_times_between(schedule, missed_runs[0]["scheduled_for"], late))
                assert [r["scheduled_for"] for r in missed_runs] == expected
            # After the decision, every cron time up to the pause fired, once.
            on_time = [r["scheduled_for"] for r in runs if r["scheduled_for"] > at]
            if on_time:
                assert on_time == list(_times_between(schedule, on_time[0], on_time[-1] + timedelta(microseconds=1)))
            assert all("could not start its batch" in r["error"] and "not found" in r["error"] for r in runs)
            assert schedule["last_run"]["status"] == "FAILED"


def _times_between(schedule: dict, start: datetime, end: datetime):
    """Cron times of ``schedule`` from ``start`` (included) to ``end`` (excluded)."""
    for when in fire_times(schedule["cron"], schedule["timezone"], start - timedelta(microseconds=1)):
        if when >= end:
            return
        yield when
