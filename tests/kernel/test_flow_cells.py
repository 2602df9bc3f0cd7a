"""%%flow cells in a real kernel: hydration, cache, staleness, errors, runs, widgets."""

from __future__ import annotations

import hashlib

import nbformat

from tests.waiting import gpu_worker

from .conftest import error_of, text_of

LAST_RUN = "last_run()"


def tasks_of_last_run(kernel) -> dict:
    return kernel.value(f"{{t.name: [t.status, t.reason] for t in {LAST_RUN}.tasks}}")


def test_outputs_are_loaded_and_a_rerun_is_restored_without_submitting(kernel):
    kernel.ok("raw = list(range(5))")
    cell = "%%flow load\ndata = [x * 2 for x in raw]\n_tmp = 1\nprint('loading', len(data))\nlen(data)"
    out = kernel.ok(cell)
    assert "loading 5" in out  # the op's stdout, captured on the worker, shown in the cell
    assert "5\n" in out  # the cell's last expression is displayed
    assert kernel.value("data") == [0, 2, 4, 6, 8]
    assert kernel.value("'_tmp' in dir()") is False  # private names are not outputs
    run = kernel.value(f"[{LAST_RUN}.kind, {LAST_RUN}.status]")
    assert run == ["cell", "SUCCESS"]

    kernel.ok("del data")
    kernel.ok(cell)
    assert kernel.value("data") == [0, 2, 4, 6, 8]
    assert tasks_of_last_run(kernel) == {"load": ["CACHED", "cached"]}
    # Nothing went to the cluster: the run never connected to it.
    assert kernel.value(f"{LAST_RUN}._execution.handle is None") is True


def test_edits_to_cell_captured_value_and_helper_make_dependents_stale(kernel):
    kernel.ok("raw = list(range(5))\nscale = 2\ndef helper(v):\n    return v + 1")
    kernel.ok("%%flow load\ndata = [x * 2 for x in raw]")
    feat = "%%flow feat\nfeats = [helper(d) * scale for d in data]"
    kernel.ok(feat)
    assert kernel.value("feats") == [2, 6, 10, 14, 18]
    tasks = kernel.value(f"[[t.name, t.status, t.worker] for t in {LAST_RUN}.tasks]")
    assert tasks[0][:2] == ["load", "CACHED"] and tasks[1][:2] == ["feat", "SUCCESS"]
    assert tasks[1][2].startswith("tcp://")  # helper from an ordinary cell ran on a worker

    kernel.ok("scale = 3")
    assert "input changed" in kernel.ok("%flow status")
    kernel.ok(feat)
    assert tasks_of_last_run(kernel)["feat"] == ["SUCCESS", "input changed"]
    assert kernel.value("feats") == [3, 9, 15, 21, 27]

    kernel.ok("def helper(v):\n    return v + 2")
    kernel.ok(feat)
    assert tasks_of_last_run(kernel)["feat"] == ["SUCCESS", "code changed"]
    assert kernel.value("feats") == [6, 12, 18, 24, 30]

    kernel.ok("%%flow feat\nfeats = [helper(d) * scale + 1 for d in data]")
    assert tasks_of_last_run(kernel)["feat"] == ["SUCCESS", "code changed"]
    assert kernel.value("feats") == [7, 13, 19, 25, 31]


def test_flow_run_reruns_exactly_the_stale_ops(kernel):
    kernel.ok("base = 10")
    kernel.ok("%%flow first\na = base + 1")
    kernel.ok("%%flow second\nb = a * 2")
    kernel.ok("%%flow third\nc = b + 1")
    kernel.ok("unrelated = 1\n%flow run third")
    assert {name: status for name, (status, _) in tasks_of_last_run(kernel).items()} == {
        "first": "CACHED", "second": "CACHED", "third": "CACHED"}
    kernel.ok("base = 20")
    kernel.ok("%flow run")
    assert kernel.value(f"{LAST_RUN}.kind") == "graph"
    tasks = tasks_of_last_run(kernel)
    assert tasks["first"] == ["SUCCESS", "input changed"]
    assert tasks["second"][0] == "SUCCESS" and tasks["third"][0] == "SUCCESS"
    assert all(status == "CACHED" for name, (status, _) in tasks.items() if name not in ("first", "second", "third"))
    assert kernel.value("c") == 43


def test_provenance_names_notebook_cell_and_source(kernel):
    body = "answer = 6 * 7"
    cell = kernel.run(f"%%flow prov\n{body}")
    prov = kernel.value(f"{LAST_RUN}.tasks[-1].provenance")
    assert prov["notebook"].endswith("analysis.ipynb")
    # The prompt the user saw: In [N] is the cell's execution count.
    assert isinstance(prov["cell_index"], int) and prov["cell_index"] == cell.execution_count
    assert "executed_copy" not in prov  # an interactive kernel runs the notebook itself
    # The hash of the cell as the notebook shows it, %%flow line included.
    assert prov["source_hash"] == hashlib.sha256(f"%%flow prov\n{body}".encode()).hexdigest()


def _fails_before_submitting(kernel, source: str, ename: str, *words: str) -> str:
    before = kernel.value("len(jf.runs(limit=1000))")
    cell = kernel.run(source)
    error = error_of(cell)
    assert error is not None and error["ename"] == ename, text_of(cell)
    message = "\n".join(error["traceback"])
    for word in words:
        assert word in message
    assert len(error["traceback"]) <= 8  # a message, not a long traceback
    assert kernel.value("len(jf.runs(limit=1000))") == before
    return message


def test_errors_are_reported_before_anything_runs(kernel):
    _fails_before_submitting(kernel, "%%flow ghost\ny = undefined_thing + 1", "CellError", "'ghost'", "undefined_thing")
    _fails_before_submitting(kernel, "%%flow shell\nx = 1\n!ls -l", "CellError", "'shell'", "line 3", "shell command")
    _fails_before_submitting(kernel, "%%flow magic\n%time x = 1", "CellError", "'magic'", "IPython magic")
    kernel.ok("%%flow cyc_a --in q --out p --define-only\np = q + 1")
    _fails_before_submitting(kernel, "%%flow cyc_b --out q\nq = p * 2", "CellError", "cycle", "cyc_a", "cyc_b")
    message = _fails_before_submitting(kernel, "%%flow --bogus 3\nx = 1", "FlowUsageError",
                                       "--bogus", "usage", "--retries")
    assert "Traceback" not in message


def test_help_is_real(kernel):
    # ``%%flow?`` pages these docstrings (a payload nbclient does not keep as output).
    doc = kernel.value("get_ipython().find_cell_magic('flow').__doc__")
    assert "--resources NAME=AMOUNT" in doc and "--background" in doc and "%%flow" in doc
    doc = kernel.value("get_ipython().find_line_magic('flow').__doc__")
    assert "status" in doc and "graph" in doc


def test_op_error_shows_the_remote_traceback_with_cell_line_numbers(kernel):
    cell = kernel.run("%%flow boom\nx = 1\nraise ValueError('bad value')")
    error = error_of(cell)
    assert error["ename"] == "ValueError"
    message = "\n".join(error["traceback"])
    assert "Cell 'boom', line 3" in message and "raise ValueError('bad value')" in message
    assert "worker/task.py" not in message  # no frame of the worker side
    assert kernel.value(f"{LAST_RUN}.status") == "FAILED"


def test_graph_is_a_mime_bundle(kernel):
    kernel.ok("%%flow g_up\ngu = 1")
    kernel.ok("%%flow g_down\ngd = gu + 1")
    cell = kernel.run("%flow graph")
    assert error_of(cell) is None, text_of(cell)
    bundle = next(o for o in cell.outputs if "data" in o)["data"]
    graph = bundle["application/vnd.jupyter-flow.graph+json"]
    assert {"source": "g_up", "target": "g_down", "variable": "gu"} in graph["edges"]
    assert {n["id"]: n["status"] for n in graph["nodes"]}["g_down"] == "cached"
    assert bundle["image/svg+xml"].startswith("<svg")


def test_params_take_injected_values_and_flow_cells_capture_them(kernel):
    kernel.ok("lr = jf.param('lr', 0.1, min=0, max=1)")
    assert kernel.value("lr") == 0.1
    kernel.ok("lr = '0.5'  # what papermill injects after the parameters cell\nlr = jf.param('lr', 0.1, min=0, max=1)")
    assert kernel.value("lr") == 0.5
    kernel.ok("%%flow trained\nscore = lr * 2")
    assert kernel.value("score") == 1.0
    assert kernel.value(f"{LAST_RUN}.params") == {"lr": 0.5}
    cell = kernel.run("lr = 5\nlr = jf.param('lr', 0.1, min=0, max=1)")
    assert error_of(cell)["ename"] == "FlowError" and "above its maximum" in error_of(cell)["evalue"]
    # An invalid value left in the namespace blocks flow runs with the same clear error.
    cell = kernel.run("%%flow uses_lr\nlr2 = lr + 1")
    assert error_of(cell)["ename"] == "FlowError" and "above its maximum" in error_of(cell)["evalue"]
    kernel.ok("del lr\nlr = jf.param('lr', 0.1, min=0, max=1)")
    cell = kernel.run("%flow params")
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in cell.outputs)


def test_progress_is_a_live_widget_then_a_static_table_a_saved_notebook_shows(kernel, tmp_path):
    live = []  # every display message, as JupyterLab receives them
    process = kernel.client.process_message

    def seen(msg, cell, cell_index):
        live.append(msg["content"].get("data", {}))
        return process(msg, cell, cell_index)

    kernel.client.process_message = seen
    try:
        cell = kernel.run("%%flow progress_demo\nimport time\ntime.sleep(0.3)\npd_out = 1")
    finally:
        del kernel.client.process_message
    assert error_of(cell) is None, text_of(cell)
    assert any("application/vnd.jupyter.widget-view+json" in b for b in live)  # live while it ran
    # What the saved .ipynb keeps: a static table and text, no widget whose model is gone
    # once the kernel is ("Error displaying widget: model not found" in a reopened notebook).
    path = tmp_path / "saved.ipynb"
    nbformat.write(kernel.nb, path)
    saved = nbformat.read(path, as_version=4).cells[-1]
    bundles = [o["data"] for o in saved.outputs if "data" in o]
    assert not any("application/vnd.jupyter.widget-view+json" in b for b in bundles)
    (table,) = [b for b in bundles if "progress_demo" in b.get("text/html", "")]
    assert "SUCCESS" in table["text/plain"] and "<td" in table["text/html"] and "padding" in table["text/html"]


def test_interrupt_cancels_the_run(kernel):
    cell = kernel.run("%%flow sleepy\nimport time\ntime.sleep(20)\nslept = 1", timeout=6)
    assert error_of(cell) is None or error_of(cell)["ename"] == "KeyboardInterrupt"
    assert kernel.value(f"[{LAST_RUN}.name, {LAST_RUN}.status]") == ["sleepy", "CANCELED"]
    assert tasks_of_last_run(kernel)["sleepy"][0] == "CANCELED"


def test_gpu_op_waits_in_background_until_a_gpu_worker_joins(kernel, dask_cluster):
    out = kernel.ok("%%flow model --resources GPU=1 --background\nmodel = 'fitted'")
    assert "background" in out
    kernel.ok(
        f"_run = {LAST_RUN}\n_ex = _run._execution\n"
        "with _ex.changed:\n"
        "    _ex.changed.wait_for(lambda: any(t.status.value == 'WAITING' for t in _ex.tasks), timeout=30)"
    )
    assert tasks_of_last_run(kernel)["model"][0] == "WAITING"
    with gpu_worker(dask_cluster.scheduler_address):
        kernel.ok("_run.wait(90)")
        out = kernel.ok("print(model)")  # loaded when the next cell started
        assert "fitted" in out
        assert kernel.value("_run.status") == "SUCCESS"


def test_a_cell_declares_its_job_shape_and_runs_on_the_local_cluster(kernel):
    kernel.ok("%%flow shaped --resources cores=2 memory=1GB walltime=10\nshaped_value = 41 + 1")
    assert kernel.value("shaped_value") == 42
    assert tasks_of_last_run(kernel)["shaped"][0] == "SUCCESS"
    cells = "get_ipython().magics_manager.registry['FlowMagics'].notebook.cells"
    assert kernel.value(f"{cells}['shaped'].resources") == {"cores": 2, "memory": "1GB", "walltime": "10"}


def test_a_bad_resource_names_the_cell_and_the_field(kernel):
    _fails_before_submitting(kernel, "%%flow fit --resources memory=lots\nm = 1", "CellError", "cell 'fit'",
                             "resources: memory", "'16GB'")
    _fails_before_submitting(kernel, "%%flow fit --resources cores=-2\nm = 1", "CellError", "cell 'fit'",
                             "resources: cores", ">= 1")
    _fails_before_submitting(kernel, "%%flow fit --resources GPU\nm = 1", "CellError", "cell 'fit'",
                             "NAME=AMOUNT")


def test_changing_a_captured_value_in_place_is_said_in_the_cell(kernel):
    # Plain Jupyter keeps `scores` changed; a %%flow cell ran on a copy, so it must say so.
    kernel.ok("import numpy as np\nscores = np.zeros(3)")
    cell = kernel.run("%%flow fill_scores\nfor i in range(3):\n    scores[i] = i + 1\nfilled = True")
    assert error_of(cell) is None, text_of(cell)
    shown = text_of(cell)
    assert "cell 'fill_scores' changed 'scores' in place" in shown and "make 'scores' an output" in shown, shown
    assert kernel.value("scores.tolist()") == [0.0, 0.0, 0.0]  # what the message says
    # Reading a captured value without changing it says nothing; assigning it as an output works.
    quiet = kernel.run("%%flow read_scores\ntotal = float(scores.sum())")
    assert "in place" not in text_of(quiet)
    kernel.ok("%%flow fill_copy\nscores = scores.copy()\nfor i in range(3):\n    scores[i] = i + 1")
    assert kernel.value("scores.tolist()") == [1.0, 2.0, 3.0]


def test_a_new_cell_is_not_explained_by_another_op_of_the_same_name(kernel):
    # A script's (here: a module's) op `summary_report` ran before; the notebook's first
    # `summary_report` cell never ran, so it is new, not "code changed".
    (kernel.work / "reporting.py").write_text(
        "import jupyter_flow as jf\n\n@jf.op\ndef summary_report(x):\n    return x * 2\n")
    kernel.ok("import sys\nsys.path.insert(0, '.')\nimport reporting\n"
              "assert jf.run(reporting.summary_report(1)).status == 'SUCCESS'")
    kernel.ok("%%flow summary_report\nreported = 3")
    assert tasks_of_last_run(kernel)["summary_report"] == ["SUCCESS", "no cache entry"]
    # Its own history does explain its next run.
    kernel.ok("%%flow summary_report\nreported = 4")
    assert tasks_of_last_run(kernel)["summary_report"] == ["SUCCESS", "code changed"]
    # And the module's op is compared with its own past, not with the cell.
    kernel.ok("_again = jf.run(reporting.summary_report(2))")
    assert kernel.value("[t.reason for t in _again.tasks]") == ["params changed"]  # its argument
