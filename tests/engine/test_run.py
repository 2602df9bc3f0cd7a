"""The engine on a real LocalCluster: results, cache restore, reasons, failures, composites."""


import numpy as np
import pytest

from . import ops


def test_quickstart_runs_then_restores_from_cache(jf):
    run = jf.run(ops.train(ops.load(1000), lr=0.01), name="demo")
    assert run.status == "SUCCESS"
    assert run.kind == "api"
    assert run.result() == pytest.approx(4995.0)
    names = sorted(t.name for t in run.tasks)
    assert names == ["load", "train"]
    assert all(t.status == "SUCCESS" and not t.cached and t.attempts == 1 for t in run.tasks)
    assert all(t.reason == "no cache entry" for t in run.tasks)

    again = jf.run(ops.train(ops.load(1000), lr=0.01))
    assert again.status == "SUCCESS"
    assert all(t.status == "CACHED" and t.cached for t in again.tasks)
    assert again.result() == pytest.approx(4995.0)

    stored = jf.get_run(run.id)
    assert stored.status == "SUCCESS" and stored.name == "demo"
    assert {t.key for t in stored.tasks} == {t.key for t in run.tasks}


def test_only_dependents_of_a_change_rerun_with_reasons(jf):
    jf.run([ops.train(ops.load(10), lr=0.5), ops.add(1, 2)])
    run = jf.run([ops.train(ops.load(10), lr=0.25), ops.add(1, 2)])
    by_name = {t.name: t for t in run.tasks}
    assert by_name["load"].status == "CACHED"
    assert by_name["add"].status == "CACHED"
    assert by_name["train"].status == "SUCCESS"
    assert by_name["train"].reason == "params changed"
    assert run.result() == [pytest.approx(11.25), 3]

    run2 = jf.run(ops.train(ops.load(11), lr=0.25))
    reasons = {t.name: t.reason for t in run2.tasks}
    assert reasons == {"load": "params changed", "train": "input changed"}


def test_force_reruns_despite_cache(jf):
    node = ops.add(2, 3)
    jf.run(node)
    run = jf.run(ops.add(2, 3), force=[ops.add])
    (task,) = run.tasks
    assert task.status == "SUCCESS" and task.reason == "forced"


def test_failure_skips_dependents_and_raises_the_op_error(jf):
    bad = ops.boom(1)
    run = jf.run([ops.add(bad, 1), ops.add(5, 5)])
    assert run.status == "FAILED"
    by_status = {t.name: t.status for t in run.tasks}
    assert by_status["boom"] == "FAILED"
    statuses = sorted(t.status for t in run.tasks if t.name == "add")
    assert statuses == ["SKIPPED", "SUCCESS"]  # the independent branch finished
    failed = next(t for t in run.tasks if t.name == "boom")
    assert "ValueError: bad value 1" in failed.error
    assert "in boom" in failed.traceback and "ValueError: bad value 1" in failed.traceback
    with pytest.raises(ValueError, match="bad value 1") as err:
        run.result()
    notes = "\n".join(getattr(err.value, "__notes__", []))
    assert "op 'boom'" in notes and run.id in notes
    assert isinstance(err.value, ValueError)


def test_stdout_is_captured_per_task(jf):
    run = jf.run(jf.parallel([ops.shout(i) for i in range(6)]))
    assert run.result() == list(range(6))
    for task in run.tasks:
        if task.name == "shout":
            value = task.provenance.get("op") and task.logs
            assert task.logs.strip().startswith("hello from")
            assert task.logs.count("hello from") == 1, value


def test_inputs_are_copies_on_workers(jf):
    data = ops.load(3)
    run = jf.run([ops.mutate(data), ops.total(data), ops.mutate(data)])
    assert run.result() == [4, 3, 4]


def test_composites_values(jf):
    assert jf.run(jf.pipeline([ops.load(4), (ops.train, {"lr": 1.0})])).result() == 6.0
    assert jf.run(jf.parallel([ops.add(1, 1), ops.add(2, 2)])).result() == [2, 4]
    assert jf.run(jf.funnel([ops.add(1, 1), ops.add(2, 2)], into=ops.total)).result() == 6
    run = jf.run(jf.map(ops.add, [1, 2, 3], b=10))
    assert run.result() == [11, 12, 13]
    mapped = sorted((t.index, t.name) for t in run.tasks if t.name == "add")
    assert mapped == [(0, "add"), (1, "add"), (2, "add")]
    # Listed in the items' order (ids follow it), as `jupyter flow show` and the sidebar show
    # them, also where the items are nodes (they came out last to first).
    over_nodes = jf.run(jf.map(ops.total, [ops.load(2), ops.load(3), ops.load(4)]))
    assert [t.index for t in over_nodes.tasks if t.name == "total"] == [0, 1, 2]
    assert over_nodes.result() == [1, 3, 6]


def test_the_same_value_twice_in_one_run_is_computed_once_and_says_so(jf):
    """A mapped element equal to another op of the same run was said to be "computed
    meanwhile by another run" (issue 17 point 8): it names its twin in this run."""
    run = jf.run([ops.add(2, 7), jf.map(ops.add, [1, 2], b=7)])
    twins = [t for t in run.tasks if t.name == "add" and t.key == next(
        u.key for u in run.tasks if u.name == "add" and u.index is None)]
    assert len(twins) == 2
    computed = [t for t in twins if t.status == "SUCCESS"]
    restored = [t for t in twins if t.status == "CACHED"]
    assert len(computed) == len(restored) == 1, [(t.index, t.status, t.reason) for t in twins]
    label = "add" if computed[0].index is None else f"add[{computed[0].index}]"
    assert restored[0].reason == f"cached (the same value as {label} of this run, computed once)"
    assert "another run" not in restored[0].reason
    assert sorted(t.name for t in run.tasks if t.index is None) == ["add", "map:add"]


def test_multi_output_and_numpy_payload(jf):
    node = ops.multi_out(3)
    assert jf.run(node).result() == {"a": 3, "b": 30}
    assert jf.run(ops.add(node["a"], node["b"])).result() == 33
    big = np.arange(1_000_000, dtype="float64")
    result = jf.run(ops.total(big)).result()
    assert result == pytest.approx(big.sum())


def test_retries_count_attempts(jf, tmp_path):
    run = jf.run(ops.flaky_retried(str(tmp_path / "marker")))
    (task,) = run.tasks
    assert run.status == "SUCCESS" and task.attempts == 2


def test_timeout_without_and_with_isolate(jf):
    run = jf.run(ops.too_slow(5))
    assert run.status == "FAILED"
    with pytest.raises(jf.OpTimeout, match="too_slow"):
        run.result()
    run = jf.run(ops.too_slow_isolated(30))
    assert run.status == "FAILED"
    (task,) = run.tasks
    assert task.duration < 20  # the child process was killed, not waited for
    with pytest.raises(jf.OpTimeout):
        run.result()


def test_unpicklable_result_fails_the_run_with_a_clear_error(jf):
    run = jf.run(ops.unpicklable(1))
    assert run.status == "FAILED"
    (task,) = run.tasks
    assert "cannot be stored" in task.error and "unpicklable" in task.error
    with pytest.raises(jf.FlowError):
        run.result()


def test_unknown_profile_raises_before_recording(jf):
    with pytest.raises(jf.FlowError, match="unknown cluster profile 'nope'"):
        jf.run(ops.add(1, 2), cluster="nope")
    assert jf.runs() == []


def test_worker_killed_mid_task_is_retried(jf, tmp_path):
    run = jf.run(ops.die_once(str(tmp_path / "died")))
    assert run.status == "SUCCESS"
    assert run.result() == "survived"
    (task,) = run.tasks
    assert task.attempts == 2


def test_corrupt_artifact_is_recomputed(jf, flow_home):
    first = jf.run(ops.add(ops.add(1, 2), 3))
    inner = next(t for t in first.tasks if t.upstream == [])
    digest = inner.outputs["return"]
    path = next((flow_home / "artifacts").rglob(digest))
    path.write_bytes(path.read_bytes()[:-1] + b"X")
    # The outer op must rerun (forced), which needs the corrupt inner value.
    outer = ops.add(ops.add(1, 2), 3)
    run = jf.run(outer, force=[outer])
    assert run.result() == 6
    redone = next(t for t in run.tasks if t.upstream == [])
    assert redone.status == "SUCCESS"
    assert "corrupt" in redone.reason


def test_corrupt_target_artifact_is_recomputed_on_result(jf, flow_home):
    run = jf.run(ops.add(20, 22))
    digest = run.tasks[0].outputs["return"]
    path = next((flow_home / "artifacts").rglob(digest))
    path.write_bytes(b"garbage")
    assert jf.run(ops.add(20, 22)).result() == 42


def test_metrics_and_runs_listing(jf):
    run = jf.run(ops.record_metric(1), name="metrics")
    assert run.metrics == {"accuracy": 0.93}
    jf.record("loss", 0.5)
    assert jf.get_run(run.id).metrics == {"accuracy": 0.93, "loss": 0.5}
    jf.run(ops.add(1, 1), name="other")
    listed = jf.runs()
    assert [r.name for r in listed] == ["other", "metrics"]
    assert [r.name for r in jf.runs(name="metr")] == ["metrics"]
    assert jf.runs(status="FAILED") == []


def test_pin_and_delete(jf):
    run = jf.run(ops.add(1, 1))
    jf.pin(run.id)
    jf.delete_run(run.id)
    with pytest.raises(jf.FlowError, match="no run"):
        jf.get_run(run.id)
    with pytest.raises(jf.FlowError, match="no run"):
        jf.delete_run(run.id)


def test_a_result_that_cannot_be_loaded_recomputes_once_then_says_why(jf, tmp_path, monkeypatch):
    calls = tmp_path / "calls"
    run = jf.run(ops.fragile(3, str(calls)))
    assert run.status == "SUCCESS"
    monkeypatch.setenv("FLOW_TEST_FRAGILE", "1")
    before = len(jf.runs(limit=100))
    with pytest.raises(jf.FlowError, match="cannot be loaded in this process"):
        jf.get_run(run.id).result()
    assert len(jf.runs(limit=100)) == before + 1   # one recompute, not a run per retry
    assert calls.read_text().count("fragile") == 2


def test_a_worker_killing_op_in_a_fused_chain_is_named_with_its_attempts(jf):
    run = jf.run(ops.chain_step(ops.chain_dies(ops.chain_step(1))))
    assert run.status == "FAILED"
    by_name = {(t.name, t.upstream == []): t for t in run.tasks}
    first, dying, last = by_name[("chain_step", True)], by_name[("chain_dies", False)], by_name[("chain_step", False)]
    assert first.status == "SUCCESS"
    assert dying.status == "FAILED" and dying.attempts >= 2
    assert "chain_dies" in dying.error and str(dying.attempts) in dying.error
    assert last.status == "SKIPPED" and "chain_dies" in last.error
    with pytest.raises(jf.WorkerLost, match="chain_dies"):
        run.result()


def test_a_run_started_without_waiting_is_recorded_before_its_id_is_handed_out(jf, flow_home, monkeypatch):
    """`jf.run(..., wait=False)` returned while the run's creation was still queued to the
    writer: another process given the id (`jupyter flow cancel ID`, a child run) found no
    such run — the cancel test's "FOREIGN KEY constraint failed" under load. Here the
    store's disk is slow: creating the run takes a second."""
    import time

    from jupyter_flow.engine.runtime import get_engine
    from jupyter_flow.store import Store

    engine = get_engine()
    create_run = engine.store.create_run

    def slow_create_run(*args, **kwargs):
        time.sleep(1.0)
        return create_run(*args, **kwargs)

    monkeypatch.setattr(engine.store, "create_run", slow_create_run)
    run = jf.run(ops.add(40, 2), wait=False)
    with Store(engine.db_url) as other:  # another connection, as another process has
        assert other.get_run(run.id) is not None, "jf.run handed out the id of a run not yet recorded"
        assert [t["name"] for t in other.get_tasks(run.id)] == ["add"]
    run.wait(60)
    assert run.status == "SUCCESS" and run.result() == 42
