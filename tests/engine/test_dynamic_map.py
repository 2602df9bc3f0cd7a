"""jf.map over a node: mapped tasks are created once the list is known, each cached and
recorded, and a rerun restores them (all of them, or just the items it has seen before)."""

from __future__ import annotations

import pytest

from . import ops


def _lines(path):
    return path.read_text().splitlines() if path.exists() else []


def test_map_over_a_list_known_at_run_time(jf, tmp_path):
    calls = tmp_path / "calls"
    mapped = jf.map(ops.process, ops.list_inputs(3, str(calls)), suffix="?", calls_file=str(calls))
    run = jf.run(ops.gather_count(mapped))
    assert run.status == "SUCCESS", run.error
    assert run.result() == 3
    tasks = run.tasks
    items = sorted((t for t in tasks if t.name == "process"), key=lambda t: t.index)
    assert [t.index for t in items] == [0, 1, 2]
    assert all(t.status == "SUCCESS" and t.key for t in items)
    assert {t.name for t in tasks} == {"list_inputs", "process", "map:process", "gather_count"}
    assert jf.run(mapped).result() == ["ITEM-0?", "ITEM-1?", "ITEM-2?"]
    assert len(_lines(calls)) == 4  # the list once, each item once
    # Recorded in the store like any task, with the map they belong to.
    stored = [t for t in jf.get_run(run.id).tasks if t.name == "process"]
    assert len(stored) == 3 and all(t.provenance["map"] for t in stored)

    # A fully cached rerun restores the gathered list without expanding the map.
    again = jf.run(ops.gather_count(jf.map(ops.process, ops.list_inputs(3, str(calls)), suffix="?",
                                           calls_file=str(calls))))
    assert {t.name: t.status for t in again.tasks} == {"list_inputs": "CACHED", "map:process": "CACHED",
                                                       "gather_count": "CACHED"}


def test_a_grown_list_computes_only_its_new_items(jf, tmp_path):
    calls = tmp_path / "calls"
    assert jf.run(jf.map(ops.process, ops.list_inputs(2), calls_file=str(calls))).status == "SUCCESS"
    run = jf.run(jf.map(ops.process, ops.list_inputs(4), calls_file=str(calls)))
    assert run.result() == ["ITEM-0!", "ITEM-1!", "ITEM-2!", "ITEM-3!"]
    statuses = {t.index: t.status for t in run.tasks if t.name == "process"}
    assert statuses == {0: "CACHED", 1: "CACHED", 2: "SUCCESS", 3: "SUCCESS"}
    assert _lines(calls).count("process item-0") == 1
    # A static jf.map of the same items shares those cache entries.
    static = jf.run(jf.map(ops.process, ["item-0", "item-3"], calls_file=str(calls)))
    assert [t.status for t in static.tasks if t.name == "process"] == ["CACHED", "CACHED"]


def test_map_over_a_value_that_is_not_a_list_fails_naming_the_ops(jf):
    run = jf.run(ops.gather_count(jf.map(ops.process, ops.not_a_list(2))))
    assert run.status == "FAILED"
    by_name = {t.name: t for t in run.tasks}
    assert by_name["map:process"].status == "FAILED"
    assert "not_a_list" in by_name["map:process"].error and "list" in by_name["map:process"].error
    assert by_name["gather_count"].status == "SKIPPED"
    with pytest.raises(jf.FlowError, match="not_a_list"):
        run.result()


def test_empty_list_and_a_failing_item(jf):
    assert jf.run(jf.map(ops.process, ops.list_inputs(0))).result() == []
    run = jf.run(ops.gather_count(jf.map(ops.boom, ops.list_inputs(2))))
    assert run.status == "FAILED"
    assert sorted(t.status for t in run.tasks if t.name == "boom") == ["FAILED", "FAILED"]
    with pytest.raises(ValueError, match="bad value"):
        run.result()
