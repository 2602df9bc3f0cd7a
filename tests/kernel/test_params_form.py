"""`%flow params` in a saved notebook: the live form has a static fallback, and a kernel that
shuts down or restarts turns each form it showed into that static table (issue 17 point 6:
a reopened notebook said "Error displaying widget: model not found")."""

from __future__ import annotations

import queue

from jupyter_client.manager import start_new_kernel

from .conftest import kernel_env

WIDGET = "application/vnd.jupyter.widget-view+json"


def _execute(client, code: str) -> list[dict]:
    msg_id = client.execute(code)
    messages = []
    while True:
        msg = client.get_iopub_msg(timeout=60)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        messages.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return messages


def test_params_form_has_a_static_fallback_and_becomes_static_at_shutdown(tmp_path, dask_cluster):
    env = kernel_env(tmp_path / "flow-home", dask_cluster.scheduler_address)
    manager, client = start_new_kernel(kernel_name="python3", env=env, cwd=str(tmp_path))
    try:
        _execute(client, '%load_ext jupyter_flow\nimport jupyter_flow as jf\n'
                         'lr = jf.param("lr", 0.1, min=0, max=1, help="learning rate")')
        shown = [m for m in _execute(client, "%flow params") if m["msg_type"] == "display_data"]
        assert len(shown) == 1
        data, display_id = shown[0]["content"]["data"], shown[0]["content"]["transient"]["display_id"]
        assert WIDGET in data  # live: the form
        assert "<td style='padding:2px 8px;text-align:left'>lr</td>" in data["text/html"]  # saved: a table
        assert "lr = 0.1" in data["text/plain"]
        _execute(client, "lr = 0.5")  # the form's value as the notebook has it at the end

        client.shutdown()  # what closing the notebook (or Restart Kernel) sends
        updates = []
        while True:
            try:
                msg = client.get_iopub_msg(timeout=20)
            except queue.Empty:
                break
            if msg["msg_type"] == "update_display_data":
                updates.append(msg["content"])
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "dead":
                break
            if msg["msg_type"] == "shutdown_reply" or len(updates) and msg["msg_type"] == "status":
                break
        assert [u["transient"]["display_id"] for u in updates] == [display_id], updates
        frozen = updates[0]["data"]
        assert WIDGET not in frozen
        assert "lr = 0.5" in frozen["text/plain"] and "0.5" in frozen["text/html"]
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
