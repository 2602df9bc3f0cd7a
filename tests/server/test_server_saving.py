"""Saving a notebook through the real Jupyter server's contents API: a live jupyter_flow
form (an ipywidget with a static fallback) is written as its static table, so the reopened
notebook shows the values instead of "Error displaying widget: model not found"; everything
else in the notebook is written as sent (issue 17 point 6)."""

from __future__ import annotations

import json

import nbformat
from jupyter_server.utils import url_path_join

WIDGET = "application/vnd.jupyter.widget-view+json"


def _display(data: dict, metadata: dict | None = None) -> dict:
    return nbformat.v4.new_output("display_data", data=data, metadata=metadata or {})


async def test_saved_notebooks_keep_the_static_table_of_our_live_forms(
        jp_serverapp, http_server_client, jp_auth_header, jp_base_url, jp_root_dir):
    view = {"model_id": "abc123", "version_major": 2, "version_minor": 0}
    ours = _display({"text/plain": "lr = 0.5", "text/html": "<table><tr><td>lr</td><td>0.5</td></tr></table>",
                     WIDGET: view}, {"jupyter_flow": {"static_fallback": True}})
    theirs = _display({"text/plain": "IntSlider(value=3)", WIDGET: view})  # someone else's widget
    plain = _display({"text/plain": "42"}, {"jupyter_flow": {"static_fallback": True}})
    cell = nbformat.v4.new_code_cell("%flow params", outputs=[ours, theirs, plain])
    notebook = nbformat.v4.new_notebook(cells=[cell])

    url = url_path_join(jp_base_url, "api/contents", "saved.ipynb")
    response = await http_server_client.fetch(
        url, method="PUT", headers=jp_auth_header,
        body=json.dumps({"type": "notebook", "format": "json", "content": notebook}))
    assert response.code in (200, 201)

    on_disk = nbformat.read(jp_root_dir / "saved.ipynb", as_version=4)
    nbformat.validate(on_disk)
    written = on_disk.cells[0].outputs
    assert WIDGET not in written[0].data
    assert written[0].data["text/html"].startswith("<table>") and written[0].data["text/plain"] == "lr = 0.5"
    assert written[1].data[WIDGET] == view  # not ours: untouched
    assert written[2].data == {"text/plain": "42"}
