"""What ops show on workers is recorded as Jupyter outputs, stored with the task, and kept bounded."""

from __future__ import annotations

from . import ops


def test_prints_displays_and_figures_are_recorded_in_order(jf):
    run = jf.run(ops.plots_and_prints(3), wait=False)
    live: list = []
    run._execution.add_output_listener(lambda task_id, seq, items: live.append((seq, items)))
    run.wait(120)
    assert run.status == "SUCCESS", run.error
    (task,) = run.tasks
    record = jf.get_run(run.id)._engine.artifacts.get(task.outputs["__displays__"])
    kinds = [(o["output_type"], o.get("name") or sorted(o["data"])) for o in record["outputs"]]
    assert kinds == [
        ("stream", "stdout"),
        ("display_data", ["text/markdown", "text/plain"]),
        ("display_data", ["image/png", "text/plain"]),  # plt.show()
        ("display_data", ["image/png", "text/plain"]),  # the figure left open, shown when the op ended
    ]
    # Everything was sent as it happened, in order, each output once.
    sent = [item for seq, items in sorted(live, key=lambda pair: pair[0]) for item in items]
    assert sent == record["outputs"]
    assert task.stdout == "points: 3\n"
    # Figures are stored as PNG images, one artifact per figure whatever the names.
    meta = task.provenance["outputs"]
    assert {meta[n]["serializer"] for n in ("figure", "axes", "alias", "open")} == {"figure"}
    assert meta["figure"]["hash"] == meta["axes"]["hash"] == meta["alias"]["hash"] != meta["open"]["hash"]
    values = run.result()
    assert set(values) == {"points", "figure", "axes", "alias", "open"}
    assert values["figure"].png.startswith(b"\x89PNG")
    assert task.metrics == {"points": 3} and run.metrics == {"points": 3}


def test_a_cache_hit_restores_the_record_and_the_metrics_of_an_op(jf):
    first = jf.run(ops.plots_and_prints(4))
    again = jf.run(ops.plots_and_prints(4))
    (task,) = again.tasks
    assert task.status == "CACHED"
    assert task.outputs["__displays__"] == first.tasks[0].outputs["__displays__"]
    assert task.metrics == {"points": 4}
    assert jf.get_run(again.id).metrics == {"points": 4}
    assert jf.get_run(again.id).tasks[0].metrics == {"points": 4}


def test_an_op_that_shows_nothing_stores_no_record(jf):
    run = jf.run(ops.add(1, 2))
    assert set(run.tasks[0].outputs) == {"return"}


def test_remote_tracebacks_name_the_file_of_helpers_shipped_by_value(jf):
    run = jf.run(ops.average(1, 0))
    assert run.status == "FAILED"
    traceback = run.tasks[0].traceback
    assert "<dynamic-code>" not in traceback
    assert f'File "{ops.__file__}"' in traceback and "in _checked_ratio" in traceback
    assert "return total / count" in traceback
