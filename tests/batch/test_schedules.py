"""Schedules: made in Python and with the CLI, fired by real ``jupyter flow scheduler``
processes on one SQLite store (lease take-over when the holder is killed), and the misfire
policies after a scheduler was down."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from tests.waiting import wait_for

from tests.notebook_files import write_notebook

from .test_batch import flow, write_sweep_notebook

LEASE_TTL = 3.0   # short, yet longer than a stall of a loaded 2-core machine
EVERY_2S = "*/2 * * * * *"   # 6 fields: seconds first


@pytest.fixture
def notebook(tmp_path):
    return write_sweep_notebook(tmp_path / "sweep.ipynb")


@pytest.fixture
def store(flow_home):
    from jupyter_flow.store import Store

    opened = Store()
    yield opened
    opened.close()


def schedule_runs(store, schedule_id):
    """Batch runs a schedule fired, oldest cron time first."""
    runs = [r for r in store.list_runs(limit=1000, kind="batch") if r["schedule_id"] == schedule_id]
    return sorted(runs, key=lambda r: r["scheduled_for"])


class SchedulerProcess:
    """A real ``jupyter flow scheduler`` subprocess (its log goes to a file, not a pipe
    that could fill up)."""

    def __init__(self, env, log_path, *args):
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_flow.cli", "scheduler", "--interval", "0.2",
             "--lease-ttl", str(LEASE_TTL), *args],
            env=env, stdout=subprocess.PIPE, stderr=self.log, text=True,
        )
        first = self.proc.stdout.readline()
        assert first.startswith("scheduler "), first + log_path.read_text()
        self.holder = first.split()[1]

    def stop(self, sig=signal.SIGTERM) -> tuple[int, str]:
        self.proc.send_signal(sig)
        out, _ = self.proc.communicate(timeout=60)
        self.log.close()
        return self.proc.returncode, out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


@pytest.fixture
def schedulers(subprocess_env, tmp_path):
    env = dict(subprocess_env, DASK_FLOW__DEFAULT_CLUSTER=subprocess_env["FLOW_TEST_SCHEDULER"])
    started = []

    def start(*args):
        process = SchedulerProcess(env, tmp_path / f"scheduler-{len(started)}.log", *args)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


# ------------------------------------------------------------------ making schedules


@pytest.mark.parametrize("kwargs, message", [
    ({"cron": "0 3 * *"}, "cron: '0 3 * *' has 4 fields; use 5"),
    ({"cron": "61 * * * *"}, "cron: '61 * * * *' is not a valid cron expression"),
    ({"cron": "0 0 30 2 *"}, "cron: '0 0 30 2 *' is not a valid cron expression"),   # never fires
    ({"timezone": "Mars/Olympus"}, "timezone: unknown time zone 'Mars/Olympus'"),
    ({"misfire": "later"}, "misfire: 'later' is not a policy; use one of skip, once, catchup"),
    ({"parallel": 0}, "parallel: must be a whole number >= 1"),
    ({"name": ""}, "name: give a schedule name"),
    ({"cluster": "nowhere"}, "cluster: unknown cluster profile 'nowhere'"),
    ({"params": {"lr": "fast"}}, "parameter 'lr' must be float, got 'fast'"),
    ({"params": {"momentum": 0.9}}, "unknown parameter(s) ['momentum']"),
    ({"grid": {"fail": [False, "perhaps"]}}, "grid: parameter 'fail' must be bool, got 'perhaps'"),
    ({"params": {"api_token": "s3cr3t"}}, "params: 'api_token' looks secret"),
])
def test_bad_schedules_are_refused_naming_the_field(flow_home, store, notebook, kwargs, message):
    import jupyter_flow as jf

    arguments = {"cron": "0 3 * * *", **kwargs}
    with pytest.raises(jf.FlowError) as failure:
        jf.schedule(notebook, **arguments)
    assert message in str(failure.value)
    assert store.list_schedules() == []


def test_schedule_in_python(flow_home, store, notebook, tmp_path):
    import jupyter_flow as jf

    made = jf.schedule(notebook, "30 2 * * *", params={"lr": "0.5"}, timezone="Europe/Berlin", misfire="catchup")
    assert made["name"] == "sweep" and made["notebook"] == str(notebook.resolve())
    assert made["params"] == {"lr": 0.5}          # coerced like an injected value
    berlin = made["next_fire_at"].astimezone(__import__("zoneinfo").ZoneInfo("Europe/Berlin"))
    assert (berlin.hour, berlin.minute) == (2, 30) and made["next_fire_at"] > store.now()
    from jupyter_flow.store import ScheduleExists, ScheduleNotFound

    with pytest.raises(ScheduleExists, match="name: a schedule named 'sweep' already exists"):
        jf.schedule(notebook, "0 3 * * *")
    with pytest.raises(jf.FlowError, match="notebook .*missing.ipynb.* not found"):
        jf.schedule(tmp_path / "missing.ipynb", "0 3 * * *")

    assert jf.pause_schedule("sweep")["paused"] is True
    # Resuming starts from the next time after now: times it was paused through are not misfires.
    store.update_schedule(made["id"], next_fire_at=datetime(2020, 1, 1, tzinfo=timezone.utc))
    resumed = jf.resume_schedule(made["id"])
    assert resumed["paused"] is False and resumed["next_fire_at"] > store.now()
    assert [s["name"] for s in jf.schedules()] == ["sweep"]
    assert jf.remove_schedule("sweep")["id"] == made["id"]
    assert jf.schedules() == []
    with pytest.raises(ScheduleNotFound, match="no schedule 'sweep'"):
        jf.pause_schedule("sweep")
    assert issubclass(ScheduleExists, jf.FlowError) and issubclass(ScheduleNotFound, jf.FlowError)


# ---------------------------------------------------------------------------- CLI


def test_cli_schedule_add_list_pause_resume_rm(subprocess_env, notebook, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("lr: [0.1, 0.2]\n")
    added = flow(subprocess_env, "schedule", "add", str(notebook), "--cron", "0 3 * * *", "-p", "fail", "false",
                 "--grid", str(grid), "--name", "nightly", "--timezone", "Europe/Berlin", "--misfire", "skip")
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("added schedule nightly (") and "03:00:00 CE" in added.stdout

    listed = flow(subprocess_env, "schedule", "list")
    header, row = listed.stdout.splitlines()
    assert header.split() == ["NAME", "CRON", "NEXT", "FIRE", "LAST", "RESULT", "PAUSED", "MISFIRE"]
    assert row.startswith("nightly") and "0 3 * * *" in row and row.split()[-2:] == ["no", "skip"]
    (record,) = json.loads(flow(subprocess_env, "schedule", "list", "--json").stdout)
    assert record["params"] == {"fail": False} and record["grid"] == {"lr": [0.1, 0.2]}

    assert flow(subprocess_env, "schedule", "pause", "nightly").stdout.strip() == "paused nightly"
    assert json.loads(flow(subprocess_env, "schedule", "list", "--json").stdout)[0]["paused"] is True
    resumed = flow(subprocess_env, "schedule", "resume", record["id"])
    assert resumed.stdout.startswith("resumed nightly: next fire at")
    assert flow(subprocess_env, "schedule", "rm", "nightly").stdout.strip() == "removed nightly"
    assert flow(subprocess_env, "schedule", "list").stdout.startswith("no schedules")


def test_cli_schedule_errors_are_one_line(subprocess_env, notebook):
    for args in (["add", str(notebook), "--cron", "every day"],
                 ["add", str(notebook), "--cron", "0 3 * * *", "-p", "lr", "2x"],
                 ["pause", "nope"], ["rm", "nope"]):
        result = flow(subprocess_env, "schedule", *args)
        assert result.returncode == 1, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("jupyter flow schedule: error: "), (args, result.stderr)
    bad = flow(subprocess_env, "scheduler", "--interval", "5", "--lease-ttl", "2")
    assert bad.returncode == 1 and "lease_ttl (2.0 s) must be longer than interval" in bad.stderr


# ------------------------------------------------------------- firing, for real


def test_standalone_scheduler_fires_batches_that_share_the_cache(flow_home, store, notebook, schedulers):
    import jupyter_flow as jf

    every = jf.schedule(notebook, EVERY_2S, params={"lr": 0.25}, name="every-2s")
    # Down while a yearly firing came due (two years ago): "skip" fires nothing for it.
    yearly = jf.schedule(notebook, "0 3 1 1 *", name="yearly", misfire="skip")
    long_ago = datetime(store.now().year - 2, 1, 1, 3, tzinfo=timezone.utc)
    store.update_schedule(yearly["id"], next_fire_at=long_ago)

    scheduler = schedulers()
    wait_for(lambda: len(schedule_runs(store, every["id"])) >= 2, timeout=30)
    jf.pause_schedule("every-2s")
    fired = wait_for(lambda: (runs := schedule_runs(store, every["id"])) and all(
        r["status"] not in ("PENDING", "RUNNING") for r in runs) and runs, timeout=90)

    assert [r["status"] for r in fired] == ["SUCCESS"] * len(fired), [r["error"] for r in fired]
    times = [r["scheduled_for"] for r in fired]
    assert all(t.second % 2 == 0 and t.microsecond == 0 for t in times)
    assert all(b - a == timedelta(seconds=2) for a, b in zip(times, times[1:])), times
    assert all(r["name"] == "every-2s" and r["params"]["params"] == {"lr": 0.25} for r in fired)
    # Each firing is a normal batch: one notebook run, whose %%flow cell shares the cache.
    statuses = []
    for run in fired:
        (execution,) = store.list_runs(parent_id=run["id"])
        assert execution["kind"] == "notebook" and execution["metrics"] == {"accuracy": 0.75}
        (cell,) = store.list_runs(parent_id=execution["id"])
        statuses += [t["status"] for t in store.get_tasks(cell["id"])]
    assert sorted(statuses) == ["CACHED"] * (len(fired) - 1) + ["SUCCESS"]
    shown = store.get_schedule(every["id"])
    assert shown["last_run"]["id"] == fired[-1]["id"] and shown["last_run"]["status"] == "SUCCESS"

    skipped = store.get_schedule(yearly["id"])
    assert schedule_runs(store, yearly["id"]) == []
    note = skipped["last_misfire"]
    assert note["policy"] == "skip" and note["fired"] == 0 and note["missed"] >= 2
    assert skipped["next_fire_at"] > store.now()

    assert store.lease("scheduler")["holder"] == scheduler.holder
    code, out = scheduler.stop(signal.SIGTERM)
    assert code == 0 and out.strip().endswith("stopped"), out + scheduler.log_path.read_text()
    assert store.lease("scheduler") is None    # released: another scheduler may fire at once


def test_stopping_the_scheduler_cancels_the_batches_it_started(flow_home, store, tmp_path, schedulers):
    import jupyter_flow as jf

    slow = write_notebook(tmp_path / "slow.ipynb", [("import time\ntime.sleep(300)", None)])
    made = jf.schedule(slow, EVERY_2S, name="slow")
    scheduler = schedulers()
    run = wait_for(lambda: schedule_runs(store, made["id"]), timeout=30)[0]
    jf.pause_schedule("slow")
    wait_for(lambda: [r for r in store.list_runs(parent_id=run["id"]) if r["status"] == "RUNNING"], timeout=60)
    code, out = scheduler.stop(signal.SIGTERM)
    assert code == 0 and out.strip().endswith("stopped"), out + scheduler.log_path.read_text()
    fired = [store.get_run(r["id"]) for r in schedule_runs(store, made["id"])]
    assert [r["status"] for r in fired] == ["CANCELED"] * len(fired)
    assert fired[0]["cancel_requested_by"].startswith(f"scheduler {scheduler.holder}")
    assert store.lease("scheduler") is None


def test_lease_takeover_when_the_holder_is_killed(flow_home, store, notebook, schedulers):
    import jupyter_flow as jf

    every = jf.schedule(notebook, EVERY_2S, name="orphaned")
    # The notebook goes away: each firing is then recorded as a FAILED batch at once, so
    # this test counts firings without starting a kernel for each.
    notebook.unlink()

    first = schedulers()
    wait_for(lambda: (store.lease("scheduler") or {}).get("holder") == first.holder, timeout=10)
    second = schedulers()
    wait_for(lambda: len(schedule_runs(store, every["id"])) >= 3, timeout=20)
    assert store.lease("scheduler")["holder"] == first.holder   # the second one waits

    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    killed_at = store.now()
    taken = wait_for(lambda: (lease := store.lease("scheduler")) and lease["holder"] == second.holder and lease,
                     timeout=LEASE_TTL + 5)
    assert taken["acquired_at"] - killed_at < timedelta(seconds=LEASE_TTL + 1.5)
    wait_for(lambda: sum(r["created_at"] > taken["acquired_at"] for r in schedule_runs(store, every["id"])) >= 3,
             timeout=20)
    code, _ = second.stop(signal.SIGINT)
    assert code == 0

    fired = schedule_runs(store, every["id"])
    counts = Counter(r["scheduled_for"] for r in fired)
    assert set(counts.values()) == {1}, counts          # no cron time fired twice
    assert all(r["status"] == "FAILED" and "not found" in r["error"] for r in fired)
    times = sorted(counts)
    gaps = [b - a for a, b in zip(times, times[1:])]
    # The time that came due while nobody held the lease was fired late by the new holder
    # (within grace). A holder killed between claiming a time and recording its run loses
    # that one firing (at most once), so one double gap may appear, never more.
    assert sum(g != timedelta(seconds=2) for g in gaps) <= 1 and max(gaps) <= timedelta(seconds=4), gaps


# --------------------------------------------------------------- misfire policies


def _missed_minutes(store, schedule_id, minutes):
    """Pretend no scheduler ran for a while: the schedule's next time lies ``minutes`` ago."""
    now = store.now()
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes + 5)
    store.update_schedule(schedule_id, next_fire_at=start)
    return start


@pytest.mark.parametrize("policy, expected_offsets", [
    ("skip", []),
    ("once", [1]),
    ("catchup", [0, 1]),
])
def test_misfire_policy_after_downtime(jf, store, notebook, policy, expected_offsets):
    from jupyter_flow.batch.scheduler import Scheduler

    made = jf.schedule(notebook, "* * * * *", params={"lr": 0.5}, misfire=policy)
    start = _missed_minutes(store, made["id"], 10)
    scheduler = Scheduler(store, grace=5, lease_ttl=30)
    # Due at start and start + 1 min; the tick comes 90 s after start: both are late.
    now = start + timedelta(seconds=90)
    fired = scheduler.tick(now=now)
    assert scheduler.tick(now=now) == []               # claimed: never fired twice
    assert len(fired) == len(expected_offsets)

    record = store.get_schedule(made["id"])
    assert record["last_misfire"] == {"at": now.isoformat(), "missed": 2, "policy": policy,
                                      "fired": len(expected_offsets)}
    assert record["next_fire_at"] == start + timedelta(minutes=2)
    rows = wait_for(lambda: (found := {r["id"]: r for r in schedule_runs(store, made["id"])}) and all(
        r["status"] not in ("PENDING", "RUNNING") for r in found.values()) and found, timeout=120) if fired else {}
    assert sorted(rows) == sorted(fired)
    assert [rows[run_id]["status"] for run_id in fired] == ["SUCCESS"] * len(fired)
    assert [rows[run_id]["scheduled_for"] for run_id in fired] == [
        start + timedelta(minutes=m) for m in expected_offsets]
    if fired:
        assert record["last_run_id"] == fired[-1] and record["last_fire_at"] == now
        run = jf.get_run(fired[-1])
        assert run.schedule_id == made["id"] and run.scheduled_for == start + timedelta(minutes=expected_offsets[-1])
    scheduler.close()


def test_catchup_fires_at_most_100_oldest_first(flow_home, store, notebook):
    from jupyter_flow.batch.scheduler import Scheduler

    import jupyter_flow as jf

    made = jf.schedule(notebook, EVERY_2S, misfire="catchup")
    notebook.unlink()   # each firing fails at once and is recorded: no kernel needed here
    start = _missed_minutes(store, made["id"], 5)
    now = start + timedelta(minutes=10)    # 301 times due at 2 s
    scheduler = Scheduler(store, grace=60, lease_ttl=30)
    fired = scheduler.tick(now=now)
    # Late by more than 60 s: the 270 times before now - 60 s. Catch-up fires the oldest
    # 100 of them; the 31 times within grace are on time and fire as usual.
    on_time = [now - timedelta(seconds=60 - 2 * i) for i in range(31)]
    assert len(fired) == 131
    runs = schedule_runs(store, made["id"])
    assert [r["scheduled_for"] for r in runs] == [start + timedelta(seconds=2 * i) for i in range(100)] + on_time
    note = store.get_schedule(made["id"])["last_misfire"]
    assert (note["missed"], note["fired"], note["policy"]) == (270, 100, "catchup")
    assert store.get_schedule(made["id"])["next_fire_at"] == now + timedelta(seconds=2)
    scheduler.close()


def test_a_very_long_downtime_is_counted_up_to_a_bound(flow_home, store, notebook):
    from jupyter_flow.batch.scheduler import MAX_SCAN, Scheduler

    import jupyter_flow as jf

    made = jf.schedule(notebook, EVERY_2S, misfire="once")
    notebook.unlink()
    start = _missed_minutes(store, made["id"], 24 * 60)     # a day of 2-second firings missed
    now = start + timedelta(days=1, seconds=1)
    scheduler = Scheduler(store, grace=0, lease_ttl=30)
    (fired,) = scheduler.tick(now=now)
    (run,) = schedule_runs(store, made["id"])
    assert run["id"] == fired and run["scheduled_for"] == now - timedelta(seconds=1)   # the latest missed time
    record = store.get_schedule(made["id"])
    assert record["last_misfire"] == {"at": now.isoformat(), "missed": MAX_SCAN, "at_least": True,
                                      "policy": "once", "fired": 1}
    assert record["next_fire_at"] == now + timedelta(seconds=1)
    scheduler.close()


def test_on_time_firings_are_no_misfire_and_a_second_scheduler_waits(flow_home, store, notebook):
    from jupyter_flow.batch.scheduler import Scheduler

    import jupyter_flow as jf

    made = jf.schedule(notebook, EVERY_2S, name="gone")
    notebook.unlink()   # each firing fails at once and is recorded: no kernel needed here
    holder = Scheduler(store, interval=0.1, lease_ttl=LEASE_TTL)
    other = Scheduler(store, interval=0.1, lease_ttl=LEASE_TTL)
    due = store.get_schedule(made["id"])["next_fire_at"]
    assert holder.tick() == [] and holder.holding            # nothing due yet, in real time
    fired = wait_for(lambda: other.tick() or holder.tick(), timeout=5)
    assert not other.holding and len(fired) == 1
    (run,) = schedule_runs(store, made["id"])
    assert run["id"] == fired[0] and run["scheduled_for"] == due and run["status"] == "FAILED"
    assert "could not start its batch: notebook" in run["error"]
    record = store.get_schedule(made["id"])
    assert record["last_misfire"] is None and record["next_fire_at"] == due + timedelta(seconds=2)
    holder.close()
    assert other.tick() == [] and other.holding               # released: taken at once
    other.close()
