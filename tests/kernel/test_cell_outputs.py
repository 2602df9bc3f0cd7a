"""%%flow cells behave like Jupyter cells: what they show, once, live, and again from the cache."""

from __future__ import annotations

import time

from nbclient.util import run_sync

from tests.outputs import images, marks, shown
from tests.waiting import wait_for

from .conftest import error_of, text_of

LAST_RUN = "last_run()"


PLOTTING_CELL = """%%flow plots
import sys
import matplotlib.pyplot as plt
from IPython.display import HTML
print("fitting", 3)
print("a warning", file=sys.stderr)
display(HTML("<b>table</b>"))
fig1, ax1 = plt.subplots()
ax1.plot([1, 2, 3])
plt.show()
fig2, ax2 = plt.subplots()
ax2.bar([1, 2], [3, 1])
print("done")
fig2"""


def test_prints_displays_and_figures_show_once_in_order(kernel):
    cell = kernel.run(PLOTTING_CELL)
    assert error_of(cell) is None, text_of(cell)
    outputs = shown(cell)
    kinds = [kind for kind, _ in outputs]
    # print, stderr, display(HTML), plt.show(), print, and the figure as last line: each once.
    assert kinds == ["stdout", "stderr", "html", "image", "stdout", "image"], outputs
    assert outputs[0][1] == "fitting 3\n" and outputs[1][1] == "a warning\n"
    first, second = images(cell)
    assert first.startswith(b"\x89PNG") and second.startswith(b"\x89PNG") and first != second
    # Figures are stored as their image, not as pickles, and are displayed images here too.
    assert kernel.value("[type(fig2).__name__, fig2.png[:4] == b'\\x89PNG']") == ["StoredFigure", True]
    outputs_meta = kernel.value(f"{LAST_RUN}.tasks[0].provenance['outputs']")
    assert {outputs_meta[n]["serializer"] for n in ("fig1", "ax1", "fig2", "ax2")} == {"figure"}
    assert outputs_meta["fig1"]["hash"] == outputs_meta["ax1"]["hash"]  # one figure, stored once


def test_a_cache_hit_replays_the_first_runs_outputs_with_a_mark(kernel):
    first = kernel.run(PLOTTING_CELL)
    again = kernel.run(PLOTTING_CELL)
    assert kernel.value(f"[t.status for t in {LAST_RUN}.tasks]") == ["CACHED"]
    assert shown(again) == shown(first)
    (mark,) = marks(again)
    assert "plots" in mark


def test_last_value_of_any_kind_is_displayed_not_stored(kernel):
    cell = kernel.run("%%flow lock_value\nimport threading\nkeep = 1\nthreading.Lock()")
    assert error_of(cell) is None, text_of(cell)
    assert "<unlocked _thread.lock object" in text_of(cell)
    assert kernel.value(f"sorted({LAST_RUN}.tasks[0].outputs)") == ["__displays__", "keep"]
    quiet = kernel.run("%%flow quiet_value\nkept = 2\nkept * 10;")
    assert error_of(quiet) is None and shown(quiet) == []  # ";" hides the value, as in Jupyter


def test_op_output_reaches_the_cell_and_the_store_while_it_runs(kernel, tmp_path):
    gate = tmp_path / "gate"
    kc = kernel.client.kc
    source = (f"%%flow slow_printer\nimport os, time\nprint('tick', flush=True)\n"
              f"deadline = time.time() + 60\nwhile not os.path.exists({str(gate)!r}) and time.time() < deadline:\n"
              f"    time.sleep(0.05)\nprint('tock')\nslow_out = 1")
    msg_id = kc.execute(source)
    get_iopub = run_sync(kc.get_iopub_msg)
    seen = ""
    deadline = time.monotonic() + 60
    while "tick" not in seen and time.monotonic() < deadline:
        msg = get_iopub(timeout=60)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
            seen += msg["content"]["text"]
    assert "tick" in seen and "tock" not in seen  # shown while the op still runs

    from jupyter_flow.store import Store

    store = Store(f"sqlite:///{kernel.home}/flow.db")
    running = wait_for(lambda: [t for r in store.list_runs(limit=5, name="slow_printer")
                                for t in store.get_tasks(r["id"]) if "tick" in (t["stdout"] or "")])
    assert running[0]["status"] == "RUNNING"  # the sidebar's logs follow the op too
    gate.write_text("go")
    get_reply = run_sync(kc.get_shell_msg)
    reply = get_reply(timeout=60)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = get_reply(timeout=60)
    assert reply["content"]["status"] == "ok"
    assert kernel.value(f"{LAST_RUN}.tasks[0].stdout") == "tick\ntock\n"


def test_imports_in_a_flow_cell_reach_later_cells_and_modules_are_not_stored(kernel):
    cell = ("%%flow imports\nimport json as jjson\nfrom collections import OrderedDict\nimport math\nmod = math\n"
            "code = jjson.dumps([1])")
    kernel.ok(cell)
    found = kernel.value("[jjson.dumps({'a': 1}), OrderedDict.__name__, mod.pi > 3]")
    assert found == ['{"a": 1}', "OrderedDict", True]
    assert "mod" not in kernel.value(f"{LAST_RUN}.tasks[0].outputs")  # kept by name, imported here
    kernel.ok("del jjson, OrderedDict, mod")
    kernel.ok(cell)
    assert kernel.value(f"{LAST_RUN}.tasks[0].status") == "CACHED"
    assert kernel.value("[jjson.__name__, mod.__name__]") == ["json", "math"]
    # A module output read by another flow cell arrives there too (as an edge, also from the cache).
    kernel.ok("del mod")
    kernel.ok("%%flow uses_mod\nroot = mod.sqrt(16)")
    assert kernel.value("root") == 4.0


def test_one_object_under_several_names_is_stored_once(kernel):
    kernel.ok("%%flow aliases\nbig = list(range(100_000))\nsame = big\nother = list(big)")
    outputs = kernel.value(f"{LAST_RUN}.tasks[0].outputs")
    assert outputs["big"] == outputs["same"]
    assert outputs["other"] == outputs["big"]  # equal content: one artifact anyway
    meta = kernel.value(f"{LAST_RUN}.tasks[0].provenance['outputs']")
    assert meta["big"]["serializer"] == "json"


def test_bad_displays_give_short_messages_and_huge_output_is_bounded(kernel):
    cell = kernel.run(
        "%%flow bad_display\n"
        "class Broken:\n"
        "    def _repr_html_(self):\n"
        "        raise ValueError('no html today')\n"
        "    def __repr__(self):\n"
        "        raise RuntimeError('no repr either')\n"
        "display(Broken())\n"
        "print('x' * 1_500_000)\n"
        "from IPython.display import HTML\n"
        "display(HTML('<p>' + 'y' * 6_000_000 + '</p>'))\n"
        "finished = True", timeout=120)
    assert error_of(cell) is None, text_of(cell)[:2000]
    text = text_of(cell)
    assert "its repr raised RuntimeError: no repr either" in text
    assert "ValueError: no html today" in text and "Traceback" not in text
    assert "output truncated here" in text and len(text) < 1_300_000
    assert "was not kept" in text
    assert kernel.value("finished") is True


def test_helper_tracebacks_name_the_cell_they_were_defined_in(kernel):
    kernel.ok("def ratio(x):\n    total = 10\n    return total / x")
    cell = kernel.run("%%flow ratios\nr = ratio(0)")
    error = error_of(cell)
    assert error["ename"] == "ZeroDivisionError"
    message = "\n".join(error["traceback"])
    assert "Cell 'ratios', line 2" in message
    assert "Cell In[" in message and ", line 3, in ratio" in message and "return total / x" in message
    assert "<dynamic-code>" not in message and "Compute Failed" not in message


def test_jf_record_in_ops_and_ordinary_cells_goes_to_the_notebook_run(kernel):
    cell = "%%flow scored\nscore = 0.75\njf.record('score', score)"
    kernel.ok(cell)
    first = kernel.value(f"[{LAST_RUN}.id, {LAST_RUN}.parent_id, {LAST_RUN}.tasks[0].metrics, {LAST_RUN}.metrics]")
    run_id, parent, task_metrics, run_metrics = first
    assert task_metrics == {"score": 0.75} and run_metrics == {"score": 0.75}
    kernel.ok("jf.record('loss', 0.25)")  # an ordinary cell: no batch, no jf.run before
    notebook = kernel.value(f"[jf.get_run({parent!r}).kind, jf.get_run({parent!r}).metrics, "
                            f"jf.get_run({parent!r}).notebook]")
    assert notebook[0] == "notebook" and notebook[1]["score"] == 0.75 and notebook[1]["loss"] == 0.25
    assert notebook[2].endswith("analysis.ipynb")
    assert kernel.value(f"jf.get_run({parent!r}).status") == "RUNNING"  # while the kernel lives
    kernel.ok("jf.record('score', 0.0)")  # overwritten in the notebook run ...
    kernel.ok(cell)  # ... and restored by the cache hit, which replays the op's metric
    assert kernel.value(f"[{LAST_RUN}.tasks[0].status, {LAST_RUN}.tasks[0].metrics, {LAST_RUN}.metrics]") == [
        "CACHED", {"score": 0.75}, {"score": 0.75}]
    assert kernel.value(f"jf.get_run({parent!r}).metrics['score']") == 0.75


def test_a_changed_param_is_the_reason_for_a_rerun(kernel):
    kernel.ok("depth = jf.param('depth', 3, min=1)")
    kernel.ok("%%flow tree\nleaves = 2 ** depth")
    kernel.ok("depth = jf.param('depth', 4, min=1)")
    assert "params changed" in kernel.ok("%flow status")
    kernel.ok("%%flow tree\nleaves = 2 ** depth")
    assert kernel.value(f"[{LAST_RUN}.tasks[0].reason, leaves]") == ["params changed", 16]


def test_jf_run_in_a_notebook_shows_progress_and_op_outputs(kernel):
    kernel.ok("@jf.op\ndef shout(word):\n    print(word.upper())\n    return word")
    cell = kernel.run("run = jf.run(jf.map(shout, ['hey', 'ho']), name='shouts')")
    assert error_of(cell) is None, text_of(cell)
    assert any("shouts" in o.get("data", {}).get("text/html", "") for o in cell.outputs)  # its progress table
    text = text_of(cell)
    assert "HEY\n" in text and "HO\n" in text and "[shout[0]]" in text
    assert kernel.value("run.parent_id") == kernel.value(f"{LAST_RUN}.parent_id")  # the same notebook run
