"""A person's notebook in a real JupyterLab and Chromium: run all cells (a `%flow params` form
and a `%%flow` cell), save, shut the kernel down, open the notebook again: the saved outputs
show the parameters table and the run's table, never "Error displaying widget: model not
found" (issue 17 point 6). Set FLOW_UPDATE_SCREENSHOTS=1 to refresh
docs/screenshots/flow-reopened-notebook.png."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from .conftest import running_lab

DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
WIDGET = "application/vnd.jupyter.widget-view+json"
CELLS = [
    "%load_ext jupyter_flow\nimport jupyter_flow as jf",
    'lr = jf.param("lr", 0.25, min=0, max=1, help="learning rate")',
    "%flow params",
    '%%flow doubled\nvalue = lr * 2\nprint("doubled is", value)',
]


def _kernel_ready(page) -> None:
    page.wait_for_function(
        "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
        " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
        " return !!k && k.status === 'idle'; }", timeout=90_000)


def _api(lab, path: str, method: str = "GET"):
    request = urllib.request.Request(f"{lab.url}{path}", method=method,
                                     headers={"Authorization": f"token {lab.token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
        return json.loads(body) if body else None


@pytest.mark.timeout(420)
def test_a_saved_and_reopened_notebook_shows_its_tables_not_widget_errors(tmp_path, dask_cluster, browser,
                                                                          screenshots):
    from playwright.sync_api import expect

    env = {"DASK_FLOW__DEFAULT_CLUSTER": dask_cluster.scheduler_address}
    with running_lab(tmp_path, args=("--LabApp.expose_app_in_browser=True",), env=env) as lab:
        path = lab.root / "reopen.ipynb"
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS],
                                                metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                         "language": "python"}}), path)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(60_000)
        page.goto(f"{lab.url}lab/tree/reopen.ipynb?token={lab.token}")
        _kernel_ready(page)
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        cells = page.locator(".jp-Notebook .jp-CodeCell")
        expect(cells.nth(3).locator(".jp-OutputArea")).to_contain_text("doubled is 0.5", timeout=120_000)
        expect(cells.nth(2).locator(".jupyter-widgets").first).to_be_visible()  # the live form
        page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            saved = nbformat.read(path, as_version=4)
            if saved.cells[3].get("outputs"):
                break
            time.sleep(0.5)
        form_output = saved.cells[2].outputs[0]
        assert WIDGET not in form_output.data and "lr" in form_output.data["text/html"]

        for session in _api(lab, "api/sessions"):  # what closing the notebook's kernel does
            _api(lab, f"api/sessions/{session['id']}", method="DELETE")
        page.close(run_before_unload=False)

        again = browser.new_page(viewport={"width": 1280, "height": 900})
        again.set_default_timeout(60_000)
        again.goto(f"{lab.url}lab/tree/reopen.ipynb?token={lab.token}")
        _kernel_ready(again)  # a new kernel: the old widget models are gone
        cells = again.locator(".jp-Notebook .jp-CodeCell")
        expect(cells.nth(3).locator(".jp-OutputArea")).to_contain_text("doubled is 0.5")
        expect(cells.nth(2).locator("table.jp-flow-params")).to_contain_text("0.25")
        expect(cells.nth(3).locator(".jp-OutputArea table").first).to_contain_text("SUCCESS")
        again.wait_for_timeout(3000)  # the widget manager has given up on missing models by now
        assert again.get_by_text("Error displaying widget").count() == 0
        again.screenshot(path=str(screenshots / "flow-reopened-notebook.png"))
        if os.environ.get("FLOW_UPDATE_SCREENSHOTS") == "1":
            shutil.copy(screenshots / "flow-reopened-notebook.png", DOCS_SCREENSHOTS / "flow-reopened-notebook.png")
        again.close(run_before_unload=False)
