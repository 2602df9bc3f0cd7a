"""%flow show / cancel / resume in a real kernel, and living beside another %flow line magic."""

from __future__ import annotations

from .conftest import NotebookKernel, error_of, kernel_env, text_of

LAST_RUN = "last_run()"


def test_show_cancel_and_resume(kernel):
    kernel.ok("%%flow shown\nshown_out = 41 + 1")
    run_id = kernel.value(f"{LAST_RUN}.id")
    shown = kernel.ok(f"%flow show {run_id}")
    assert run_id in shown and "shown" in shown and "SUCCESS" in shown

    kernel.ok("%%flow slow --background\nimport time\ntime.sleep(60)\nslow_out = 1")
    slow_id = kernel.value(f"{LAST_RUN}.id")
    assert "cancel requested" in kernel.ok(f"%flow cancel {slow_id}")
    kernel.ok(f"_slow = jf.get_run({slow_id!r})\n_slow.wait(30)")
    assert kernel.value("_slow.status") == "CANCELED"

    resumed = kernel.ok(f"%flow resume {run_id}")
    assert f"resumed from {run_id}" in resumed and "SUCCESS" in resumed
    assert kernel.value("jf.runs(limit=1)[0].kind") == "resume"

    bad = kernel.run("%flow show")
    assert error_of(bad) is not None and "exactly one run id" in text_of(bad)


def test_another_extensions_flow_line_magic_is_kept(dask_cluster, tmp_path):
    env = kernel_env(tmp_path / "home", dask_cluster.scheduler_address)
    other = NotebookKernel(env, str(tmp_path))
    try:
        other.ok("from IPython.core.magic import register_line_magic\n"
                 "@register_line_magic\ndef flow(line):\n    return 'other:' + line")
        loaded = other.ok("%load_ext jupyter_flow")
        assert "already registered" in loaded
        assert "other:x" in other.ok("%flow x")  # theirs, untouched
        other.ok("%%flow made\nmade = 7")  # ours still works
        assert other.value("made") == 7
    finally:
        other.close()


def test_provenance_carries_the_cell_id_jupyterlab_sends(kernel):
    # JupyterLab puts the cell's id in the execute request's metadata; nbclient does not,
    # so this request is built by hand the way JupyterLab sends it.
    kc = kernel.client.kc
    msg = kc.session.msg("execute_request", {
        "code": "%%flow with_id\nwith_id_out = 3", "silent": False, "store_history": True,
        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True,
    }, metadata={"cellId": "cell-0a1b2c"})
    from nbclient.util import run_sync

    get_reply = run_sync(kc.get_shell_msg)  # nbclient's kernel client is asynchronous
    kc.shell_channel.send(msg)
    reply = get_reply(timeout=60)
    while reply["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
        reply = get_reply(timeout=60)
    assert reply["content"]["status"] == "ok", reply["content"]
    provenance = kernel.value(f"{LAST_RUN}.tasks[0].provenance")
    assert provenance["cell_id"] == "cell-0a1b2c"
    assert provenance["notebook"].endswith("analysis.ipynb")


def test_editing_a_class_from_an_ordinary_cell_makes_dependents_stale(kernel):
    kernel.ok("class Scaler:\n    factor = 2\n    def apply(self, v):\n        return v * self.factor")
    kernel.ok("%%flow scaled\nscaled_out = Scaler().apply(21)")
    assert kernel.value("scaled_out") == 42
    kernel.ok("%%flow scaled\nscaled_out = Scaler().apply(21)")
    assert kernel.value(f"{LAST_RUN}.tasks[0].status") == "CACHED"
    kernel.ok("class Scaler:\n    factor = 2\n    def apply(self, v):\n        return v * self.factor + 1")
    kernel.ok("%%flow scaled\nscaled_out = Scaler().apply(21)")
    assert kernel.value(f"[{LAST_RUN}.tasks[0].status, {LAST_RUN}.tasks[0].reason]") == ["SUCCESS", "code changed"]
    assert kernel.value("scaled_out") == 43
