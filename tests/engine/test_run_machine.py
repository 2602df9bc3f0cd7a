"""The rules of a run in flight (engine/machine.py), as tables: events in, states and
instructions out. No cluster, no store: the tasks come from the planner over an
in-memory cache, the events are built as the worker and Dask would send them."""

from __future__ import annotations

import pytest

import jupyter_flow as jf
from jupyter_flow.core.errors import FlowError
from jupyter_flow.core.graph import Graph
from jupyter_flow.core.status import TaskStatus
from jupyter_flow.engine.machine import (AddTasks, ClaimsPolled, Failed, Finished, FutureEnded, Log, MapItemsKnown,
                                         Metric, RecordMetrics, ReleaseClaims, RunMachine, Started, Submit,
                                         WriteArtifacts, WriteCache, WriteTask, parse)
from jupyter_flow.engine.plan import MemoryCacheView, plan

NOW = 1_000.0


@jf.op
def first(x):
    return x


@jf.op
def second(x):
    return x


@jf.op
def third(x):
    return x


@jf.op(cache=False)
def uncached(x):
    return x


def _run(*, fused: bool = False):
    """A chain first -> second -> third and an uncached op beside it; ``fused``: the chain
    is one Dask key, as dask_graph fuses it."""
    p = plan(Graph([third(second(first(1))), uncached(2)]), MemoryCacheView())
    tasks = {t.name: t for t in p.tasks}
    machine = RunMachine(p.tasks)
    chain = [tasks["first"], tasks["second"], tasks["third"]]
    if fused:
        for t in chain:
            t.dask_key = "jf-chain"
        machine.by_key["jf-chain"] = chain
    else:
        for t in p.tasks:
            t.dask_key = f"jf-{t.id}"
            machine.by_key[t.dask_key] = [t]
    tasks["uncached"].dask_key = f"jf-{tasks['uncached'].id}"
    machine.by_key[tasks["uncached"].dask_key] = [tasks["uncached"]]
    return machine, tasks


def _id(tasks, name):
    return tasks[name].id


OUT = {"return": {"hash": "h1", "size": 3, "serializer": "pickle", "serializer_version": 1, "type": "int",
                  "uri": "file:///a/h1", "signer": "k1"}}


def _events(tasks, rows):
    """Rows of (kind, op name, fields) as events."""
    out = []
    for kind, name, fields in rows:
        task = _id(tasks, name) if name else None
        out.append({"start": Started, "done": Finished, "failed": Failed, "log": Log, "metric": Metric}[kind](
            task, **fields))
    return out


@pytest.mark.parametrize("rows, name, status, attempts, kinds", [
    # started: RUNNING, one attempt
    ([("start", "first", {"time": 5.0, "facts": {"worker": "w1"}})], "first", "RUNNING", 1, [[WriteTask]]),
    # ran: artifacts, cache entry, then the row
    ([("start", "first", {}), ("done", "first", {"outputs": OUT})], "first", "SUCCESS", 1,
     [[WriteTask], [WriteArtifacts, WriteCache, WriteTask]]),
    # an op with the cache disabled writes no cache entry
    ([("done", "uncached", {"outputs": OUT})], "uncached", "SUCCESS", 1, [[WriteArtifacts, WriteTask]]),
    # failed: its claim is released for the runs waiting on its key
    ([("start", "first", {}), ("failed", "first", {"error": "ValueError: no"})], "first", "FAILED", 1,
     [[WriteTask], [ReleaseClaims, WriteTask]]),
    # retries: each start counts, and so do retries whose start event was lost
    ([("start", "first", {}), ("start", "first", {}), ("done", "first", {"outputs": OUT, "attempt": 2})],
     "first", "SUCCESS", 2, [[WriteTask], [WriteTask], [WriteArtifacts, WriteCache, WriteTask]]),
    ([("start", "first", {}), ("done", "first", {"outputs": OUT, "attempt": 3})], "first", "SUCCESS", 3,
     [[WriteTask], [WriteArtifacts, WriteCache, WriteTask]]),
    # a late start after the end changes nothing
    ([("done", "first", {"outputs": OUT}), ("start", "first", {})], "first", "SUCCESS", 1,
     [[WriteArtifacts, WriteCache, WriteTask], []]),
    # a second end (a retry racing the first) is not the run's result
    ([("done", "first", {"outputs": OUT}), ("failed", "first", {"error": "late"})], "first", "SUCCESS", 1,
     [[WriteArtifacts, WriteCache, WriteTask], []]),
    # a metric of a task: its row and the run's metrics, neither blamed on the run if it fails
    ([("metric", "first", {"name": "acc", "value": 0.9})], "first", "PENDING", 0, [[WriteTask, RecordMetrics]]),
    # logs follow the op while it runs
    ([("log", "first", {"items": ({"output_type": "stream", "name": "stdout", "text": "hi\n"},)})],
     "first", "PENDING", 0, [[WriteTask]]),
    ([("log", "first", {"items": ({"output_type": "display_data", "data": {}},)})], "first", "PENDING", 0, [[]]),
])
def test_worker_messages(rows, name, status, attempts, kinds):
    machine, tasks = _run()
    got = [[type(i) for i in machine.on_worker(event, NOW)] for event in _events(tasks, rows)]
    assert got == kinds
    task = tasks[name]
    assert (task.status.value, task.attempts) == (status, attempts)


def test_a_finished_op_is_cached_under_its_key_and_signed_by_its_signer():
    machine, tasks = _run()
    t = tasks["first"]
    t.forced = True
    arts, cache, row = machine.on_worker(Finished(t.id, OUT, stdout="o", started=4.0, time=6.0), NOW)
    assert arts.rows == [{k: OUT["return"][k] for k in ("hash", "size", "serializer", "serializer_version",
                                                         "type", "uri")}]
    assert cache.entry["key"] == t.key and cache.entry["task_id"] == t.id and cache.entry["replace"] is True
    assert cache.entry["signer"] == "k1" and cache.entry["outputs"] == {"return": "h1"}
    assert row.update["status"] == "SUCCESS" and row.update["duration"] == 2.0 and row.update["stdout"] == "o"
    assert t.provenance["attempts"] == 1 and t.provenance["outputs"] == OUT


@pytest.mark.parametrize("timeout, kind", [(False, "exception"), (True, "timeout")])
def test_a_failure_says_whether_it_timed_out(timeout, kind):
    machine, tasks = _run()
    t = tasks["first"]
    machine.on_worker(Failed(t.id, "OpTimeout: ran over 1 s" if timeout else "ValueError: x", timeout=timeout), NOW)
    assert (t.status, t.failure_kind, t.ended) == (TaskStatus.FAILED, kind, NOW)


def test_a_start_ends_a_wait_for_a_worker_with_the_reason_it_runs():
    machine, tasks = _run()
    t = tasks["first"]
    t.status, t.reason, t.reason_before_wait = TaskStatus.WAITING, "waiting for a worker", "no cache entry"
    (row,) = machine.on_worker(Started(t.id, 7.0, {"worker": "w2", "host": "h"}), NOW)
    assert row.update == {"id": t.id, "attempts": 1, "started_at": row.update["started_at"], "status": "RUNNING",
                          "reason": "no cache entry", "worker": "w2"}
    assert t.started == 7.0 and t.provenance["host"] == "h"


def test_after_a_cancel_what_ops_produce_is_dropped():
    machine, tasks = _run()
    machine.cancel()
    assert machine.on_worker(Finished(_id(tasks, "first"), OUT), NOW) == []
    assert machine.on_worker(Failed(_id(tasks, "second"), "x"), NOW) == []
    assert tasks["first"].status == TaskStatus.PENDING and not tasks["first"].outputs


def test_a_metric_outside_any_task_goes_to_the_run():
    machine, _ = _run()
    (ins,) = machine.on_worker(Metric(None, "loss", 0.1), NOW)
    assert ins == RecordMetrics({"loss": 0.1}, task_metric=True)


def test_worker_messages_parse_into_events():
    assert parse({"t": "done", "task": "t", "outputs": {}, "attempt": 2, "pid": 7}) == Finished("t", {}, 2,
                                                                                                facts={"pid": 7})
    assert parse({"t": "failed", "task": "t", "error": "e", "timeout": 1}).timeout is True
    assert parse({"t": "metric", "task": None, "name": "n", "value": 1}) == Metric(None, "n", 1)
    assert parse({"t": "something else"}) is None


class KilledWorker(Exception):
    """Dask's KilledWorker as the future's exception: the rules go by its name and task."""

    def __init__(self, task, allowed_failures):
        super().__init__(task)
        self.task = task
        self.allowed_failures = allowed_failures


def _future(key, status, exc=None):
    return FutureEnded(key, status, error=type(exc).__name__ if exc is not None else None,
                       error_task=getattr(exc, "task", None),
                       allowed_failures=getattr(exc, "allowed_failures", 0), exception=exc)


@pytest.mark.parametrize("done, expected", [
    # nothing of the chain finished: its first op died with the worker, the rest is skipped behind it
    ((), {"first": ("FAILED", "worker", None, 3), "second": ("SKIPPED", "upstream", "first", 0),
          "third": ("SKIPPED", "upstream", "first", 0)}),
    # the first op finished before the worker died: the second is the one that died
    (("first",), {"first": ("SUCCESS", None, None, 1), "second": ("FAILED", "worker", None, 3),
                  "third": ("SKIPPED", "upstream", "second", 0)}),
])
def test_a_killed_worker_fails_the_op_of_a_fused_chain_that_died_and_skips_the_rest(done, expected):
    machine, tasks = _run(fused=True)
    for name in done:
        machine.on_worker(Finished(_id(tasks, name), OUT), NOW)
    machine.on_future(_future("jf-chain", "error", KilledWorker("jf-chain", 2)), NOW)
    for name, (status, kind, blame, attempts) in expected.items():
        t = tasks[name]
        assert (t.status.value, t.failure_kind, t.attempts) == (status, kind, attempts), name
        assert t.blame == (tasks[blame].id if blame else None), name
    victim = next(t for t in tasks.values() if t.failure_kind == "worker")
    assert victim.error.startswith("WorkerLost: the worker running op") and "3 attempts" in victim.error


@pytest.mark.parametrize("setup, exc, status, blame, message", [
    # upstream failed: skipped, blaming it
    ({"first": "FAILED"}, ValueError("x"), "SKIPPED", "first", "skipped: upstream op 'first' failed"),
    # upstream started under its Dask key and did not succeed: it is to blame
    ({"first": "RUNNING"}, ValueError("x"), "SKIPPED", "first", "skipped: upstream op 'first' failed"),
    # nothing to blame: says what could not be prepared
    ({}, ValueError("x"), "SKIPPED", None, "could not be prepared (ValueError)"),
    ({}, FlowError("artifact gone"), "SKIPPED", None, "could not be prepared: artifact gone"),
    # a KilledWorker of another key (preparing an input) is a skip, in our words
    ({}, KilledWorker("jf-other", 0), "SKIPPED", None, "workers preparing an input of op 'second' died"),
])
def test_a_task_that_never_started_is_skipped_and_blames_the_upstream_op(setup, exc, status, blame, message):
    machine, tasks = _run()
    for name, st in setup.items():
        tasks[name].status = TaskStatus(st)
        tasks[name].attempts = 1
    t = tasks["second"]
    machine.on_future(_future(t.dask_key, "error", exc), NOW)
    assert t.status.value == status and t.failure_kind == "upstream"
    assert t.blame == (tasks[blame].id if blame else None)
    assert message in t.error
    assert t.exception is exc


def test_blame_goes_past_skipped_tasks_to_the_op_that_failed():
    machine, tasks = _run()
    tasks["first"].status, tasks["first"].attempts = TaskStatus.FAILED, 1
    tasks["second"].status = TaskStatus.SKIPPED
    assert machine.blame(tasks["third"]) == tasks["first"].id


@pytest.mark.parametrize("status, before, after, writes", [
    ("finished", "RUNNING", "RUNNING", 0),      # the Finished event carries the outputs
    ("cancelled", "RUNNING", "CANCELED", 1),
    ("cancelled", "SUCCESS", "SUCCESS", 0),
    ("error", "FAILED", "FAILED", 0),           # its Failed event came first: keep its exception
])
def test_futures_that_end(status, before, after, writes):
    machine, tasks = _run()
    t = tasks["first"]
    t.status, t.attempts = TaskStatus(before), 1
    exc = ValueError("own") if status == "error" else None
    assert len(machine.on_future(_future(t.dask_key, status, exc), NOW)) == writes
    assert t.status.value == after
    if status == "error":
        assert t.exception is exc


def test_an_error_of_a_started_op_waits_for_its_failed_event():
    machine, tasks = _run()
    t = tasks["first"]
    machine.on_worker(Started(t.id), NOW)
    assert machine.on_future(_future(t.dask_key, "error", ValueError("x")), NOW) == []
    assert t.status == TaskStatus.RUNNING


@pytest.mark.parametrize("first_status, submitted, skipped", [
    ("SUCCESS", {"second", "third"}, set()),     # ready, and what reads it starts with it
    ("CACHED", {"second", "third"}, set()),
    ("FAILED", set(), {"second", "third"}),      # behind a failure: skipped, blaming it
    ("PENDING", set(), set()),                   # not there yet: still deferred
])
def test_deferred_tasks_start_once_their_inputs_are_there(first_status, submitted, skipped):
    machine, tasks = _run()
    for t in tasks.values():
        t.dask_key = None
    tasks["first"].status = TaskStatus(first_status)
    deferred = {tasks["second"].position, tasks["third"].position}
    out = machine.ready(deferred, NOW)
    submits = [i for i in out if isinstance(i, Submit)]
    assert {tasks[n].position for n in submitted} == (set(submits[0].positions) if submits else set())
    assert {n for n, t in tasks.items() if t.status == TaskStatus.SKIPPED} == skipped
    for name in skipped:
        assert tasks[name].blame == tasks["first"].id
    assert deferred == ({tasks["second"].position, tasks["third"].position} if first_status == "PENDING" else set())


def test_a_task_reading_one_in_flight_starts_at_once():
    machine, tasks = _run()
    tasks["first"].dask_key = "jf-1"  # submitted, not finished
    (submit,) = machine.ready({tasks["second"].position}, NOW)
    assert submit == Submit(frozenset({tasks["second"].position}))


@pytest.mark.parametrize("canceled, status, kind", [(True, "CANCELED", "canceled"), (False, "FAILED", "exception")])
def test_a_task_whose_completion_report_never_came(canceled, status, kind):
    machine, tasks = _run()
    if canceled:
        machine.cancel()
    out = machine.give_up([tasks["first"]], NOW)
    assert [type(i) for i in out] == [WriteTask]
    assert (tasks["first"].status.value, tasks["first"].failure_kind) == (status, kind)


def test_a_cancel_ends_every_unfinished_task_and_keeps_the_others():
    machine, tasks = _run()
    machine.on_worker(Finished(_id(tasks, "first"), OUT), NOW)
    machine.on_worker(Started(_id(tasks, "second")), NOW)
    machine.cancel()
    out = machine.cancel_unfinished(NOW)
    assert len(out) == 3 and all(isinstance(i, WriteTask) and i.update["status"] == "CANCELED" for i in out)
    assert {n: t.status.value for n, t in tasks.items()} == {
        "first": "SUCCESS", "second": "CANCELED", "third": "CANCELED", "uncached": "CANCELED"}


def _waiting(machine, tasks, *names):
    """``names`` wait for another run's computation of their keys."""
    for name in names:
        t = tasks[name]
        t.status, t.waiting_for, t.dask_key = TaskStatus.WAITING, "other-run", None
        machine.waits.setdefault(t.key, []).append(t)


ENTRY = {"state": "cached", "outputs": {"return": "h9"}, "task_id": "elsewhere", "metrics": {"acc": 1}}


@pytest.mark.parametrize("state, refused, status, deferred, waits, kinds", [
    # recorded meanwhile: restored, its metrics reach the run
    (ENTRY, None, "CACHED", False, False, [RecordMetrics, WriteTask]),
    # recorded by someone this user does not trust: computed here
    (ENTRY, "no usable cache entry: not trusted", "WAITING", True, False, [WriteTask]),
    # still computed by the other run
    ({"state": "held", "run_id": "run-2", "owner_id": "o"}, None, "WAITING", False, True, []),
    # its claimer ended without a value: taken over
    ({"state": "mine", "took_over_from": "run-3"}, None, "WAITING", True, False, [WriteTask]),
])
def test_claims_polled(state, refused, status, deferred, waits, kinds):
    machine, tasks = _run()
    _waiting(machine, tasks, "first")
    t = tasks["first"]
    out = machine.on_claims(ClaimsPolled({t.key: state}, {t.key: refused} if refused else {}), NOW)
    assert [type(i) for i in out] == kinds
    assert t.status.value == status
    assert (t.position in machine.deferred) == deferred
    assert (t.key in machine.waits) == waits
    if status == "CACHED":
        assert t.reason == "cached (computed meanwhile by another run)" and t.ended == NOW
        assert t.outputs == {"return": "h9"} and t.provenance["cached_from"] == "elsewhere"
    if state["state"] == "held":
        assert t.waiting_for == "run-2"
    if state["state"] == "mine":
        assert "taken over from run run-3" in t.reason


def test_a_value_computed_by_a_twin_of_this_run_says_so():
    machine, tasks = _run()
    _waiting(machine, tasks, "second")
    t = tasks["second"]
    machine.on_claims(ClaimsPolled({t.key: dict(ENTRY, task_id=tasks["first"].id)}), NOW)
    assert t.reason == "cached (the same value as first of this run, computed once)"


def test_a_taken_over_key_is_computed_by_the_first_waiter_and_the_others_go_on_waiting():
    machine, tasks = _run()
    a, b = tasks["first"], tasks["second"]
    b.key = a.key  # two tasks of this run wait for one key
    _waiting(machine, tasks, "first", "second")
    machine.on_claims(ClaimsPolled({a.key: {"state": "mine"}}), NOW)
    assert machine.deferred == {a.position} and machine.waits == {a.key: [b]}


def test_a_fenced_process_stops_waiting():
    machine, tasks = _run()
    _waiting(machine, tasks, "first")
    assert machine.on_claims(ClaimsPolled(None), NOW) == [] and not machine.waits


def test_a_maps_items_join_the_run_and_its_gathering_task_waits_for_them():
    from jupyter_flow.core.composites import parallel
    from jupyter_flow.engine.plan import plan_map

    p = plan(Graph(jf.map(second, first(3))), MemoryCacheView())
    machine = RunMachine(p.tasks, expand={1})
    source, gather = p.tasks
    source.status = TaskStatus.SUCCESS
    view = MemoryCacheView()
    items = plan_map(gather, [0, 1], source, {}, view, first_position=2)
    cached = items.tasks[1]
    cached.status, cached.cached, cached.metrics = TaskStatus.CACHED, True, {"acc": 2}
    items.misses.discard(cached.position)
    items.stage.discard(cached.position)
    collect = parallel([t.node for t in items.tasks])
    out = machine.on_map_items(MapItemsKnown(gather, items, collect))
    assert [type(i) for i in out] == [AddTasks, RecordMetrics]
    assert [row["id"] for row in out[0].rows] == [t.id for t in items.tasks]
    assert out[1].metrics == {"acc": 2}
    assert [t.position for t in machine.tasks] == [0, 1, 2, 3]
    assert machine.deferred == {2, gather.position} and gather.upstream == [2, 3] and gather.node is collect
    (submit,) = machine.ready(machine.deferred, NOW)
    assert submit.positions == {2, gather.position}  # the item computed, and the gathering task with it


def test_a_task_no_worker_can_run_yet_waits_and_says_for_which_pool():
    from jupyter_flow.engine.placement import waiting_reason

    machine, tasks = _run()
    t = tasks["first"]
    t.pool, t.annotation, t.reason = "gpu", {"pool-gpu": 1}, "no cache entry"
    tasks["second"].status = TaskStatus.RUNNING
    (row,) = machine.on_no_worker([t.dask_key, tasks["second"].dask_key], waiting_reason)
    assert t.status == TaskStatus.WAITING and "pool 'gpu'" in t.reason and t.reason_before_wait == "no cache entry"
    assert row.update == {"id": t.id, "status": "WAITING", "reason": t.reason}
    machine.on_worker(Started(t.id), NOW)  # a worker came: why it runs is its reason again
    assert t.reason == "no cache entry"


@pytest.mark.parametrize("statuses, canceled, error, outcome", [
    ({"first": "SUCCESS", "second": "CACHED"}, False, None, ("SUCCESS", None)),
    ({"first": "FAILED", "second": "SKIPPED"}, False, None, ("FAILED", "op(s) failed: first")),
    ({"first": "SKIPPED"}, False, None, ("FAILED", "tasks did not finish")),
    ({"first": "SUCCESS"}, False, "monitoring failed: x", ("FAILED", "monitoring failed: x")),
    ({"first": "SUCCESS"}, True, None, ("CANCELED", None)),
])
def test_the_outcome_of_a_run(statuses, canceled, error, outcome):
    machine, tasks = _run()
    for t in tasks.values():
        t.status = TaskStatus.SUCCESS
    for name, status in statuses.items():
        tasks[name].status = TaskStatus(status)
    if canceled:
        machine.cancel()
    assert machine.outcome(error) == outcome


def test_tasks_still_deferred_when_the_futures_are_over_fail():
    machine, tasks = _run()
    machine.deferred.add(tasks["third"].position)
    (row,) = machine.never_ready(NOW)
    assert tasks["third"].status == TaskStatus.FAILED and "never became ready" in tasks["third"].error
    assert not machine.deferred and row.update["status"] == "FAILED"
