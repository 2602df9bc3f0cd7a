"""The Flow sidebar in a real browser, against runs made by a real kernel on a real cluster.

One test walks what a user does: run three ``%%flow`` cells, open the Flow tab, open the
run, click an op, watch a new run appear, cancel a long one. Set FLOW_UPDATE_SCREENSHOTS=1
to refresh docs/screenshots/flow-sidebar.png from it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nbformat
import pytest

from tests.kernel.conftest import NotebookKernel, kernel_env

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "flow-sidebar.png"
NOTEBOOK = "flow_demo.ipynb"
CELLS = [
    "%%flow\nraw = list(range(10))\nprint('loaded', len(raw), 'rows')",
    "%%flow\nclean = [x * 2 for x in raw if x % 3]\nprint('kept', len(clean))",
    "%%flow\ntotal = sum(clean)\nprint('total is', total)",
]


@pytest.fixture
def kernel(lab, dask_cluster):
    """A kernel using the lab's store and the session's cluster, as if opened from the lab."""
    env = kernel_env(lab.flow_home, dask_cluster.scheduler_address, JPY_SESSION_NAME=NOTEBOOK)
    nb = NotebookKernel(env, str(lab.root))
    try:
        nb.ok(f"%load_ext jupyter_flow\n%flow cluster {dask_cluster.scheduler_address}")
        yield nb
    finally:
        nbformat.write(nb.nb, lab.root / NOTEBOOK)
        nb.close()


@pytest.mark.timeout(240)
def test_flow_sidebar_shows_runs_ops_logs_live_updates_and_cancels(lab, kernel, browser, screenshots):
    from playwright.sync_api import expect

    for source in CELLS:
        kernel.ok(source)
    runs = {run["name"]: run for run in lab.api("runs")["runs"]}
    assert {"raw", "clean", "total"} <= set(runs)

    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.set_default_timeout(30_000)
    page.goto(f"{lab.url}lab?token={lab.token}")
    tab = page.locator('.jp-SideBar li[data-id="jupyter-flow-sidebar"]')
    expect(tab).to_have_attribute("title", "Flow", timeout=60_000)
    tab.click()

    sidebar = page.locator("#jupyter-flow-sidebar")
    rows = sidebar.locator("li.jp-flow-run-row")
    total_row = rows.filter(has=page.locator(".jp-flow-run-name", has_text="total"))
    expect(total_row).to_have_attribute("data-status", "SUCCESS")
    # The kernel's notebook run first, its cell runs under it newest first; each row says
    # ran / cached / failed.
    expect(rows.locator(".jp-flow-run-name")).to_have_text(["flow_demo", "total", "clean", "raw"])
    notebook_row = rows.first
    expect(notebook_row.locator(".jp-flow-kind")).to_have_text("notebook")
    expect(notebook_row.get_by_role("button", name="hide 3 child runs of flow_demo")).to_be_visible()
    expect(total_row.locator(".jp-flow-counts")).to_have_text("ran 1 · cached 2 · failed 0")
    sidebar.screenshot(path=str(screenshots / "flow-runs-list.png"))

    # The run's graph: its three ops, the two upstream ones restored from cache.
    total_row.locator(".jp-flow-run-open").click()
    view = page.locator(f"#jupyter-flow-run-{runs['total']['id']}")
    nodes = view.locator(".jp-flow-node")
    expect(nodes).to_have_count(3)
    for name, status in {"raw": "CACHED", "clean": "CACHED", "total": "SUCCESS"}.items():
        expect(nodes.filter(has=page.locator(".jp-flow-node-label", has_text=name))).to_have_attribute(
            "data-status", status)

    # Clicking an op shows its source and its logs.
    nodes.filter(has=page.locator(".jp-flow-node-label", has_text="total")).click()
    details = view.locator(".jp-flow-details")
    expect(details.locator(".jp-flow-source")).to_contain_text("total = sum(clean)")
    expect(details.locator(".jp-flow-stdout")).to_contain_text("total is 54")
    expect(details.locator(".jp-flow-details-title")).to_have_text("total")
    page.screenshot(path=str(screenshots / "flow-graph.png"))
    if os.environ.get("FLOW_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshots / "flow-graph.png", DOCS_SCREENSHOT)

    # "Go to cell" opens the notebook; its `%flow graph` output renders with the same graph view.
    kernel.ok("%flow graph")
    kernel.nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(kernel.nb, lab.root / NOTEBOOK)
    details.get_by_role("button", name=f"go to the cell of total in {NOTEBOOK}").click()
    notebook = page.locator(".jp-NotebookPanel").filter(has=page.locator(".jp-flow-mime"))
    expect(notebook.locator(".jp-flow-mime .jp-flow-node")).to_have_count(3)
    expect(notebook.locator(".jp-flow-mime .jp-flow-node").first).to_have_attribute("data-status", "CACHED")
    # nbclient sends no cell id, so this finds the cell by its execution count.
    expect(notebook.locator(".jp-Cell.jp-mod-active")).to_contain_text("total = sum(clean)")

    # A run made now appears without a reload.
    kernel.ok("%%flow\nreport = f'total={total}'\nprint(report)")
    # (right under its notebook run, newest first)
    expect(rows.nth(1).locator(".jp-flow-run-name")).to_have_text("report", timeout=10_000)
    expect(rows.nth(1)).to_have_attribute("data-status", "SUCCESS")

    # A long run, cancelled from the panel, ends CANCELED.
    kernel.ok("%%flow slow --background\nimport time\nfor _ in range(300):\n    time.sleep(0.1)\nslow = 1")
    slow_row = rows.filter(has=page.locator(".jp-flow-run-name", has_text="slow"))
    expect(slow_row).to_have_attribute("data-status", "RUNNING")
    slow_row.get_by_role("button", name="cancel run slow").click()
    page.locator(".jp-Dialog").get_by_role("button", name="Cancel run").click()
    expect(slow_row).to_have_attribute("data-status", "CANCELED", timeout=20_000)
    assert lab.api(f"runs/{slow_row.get_attribute('data-run-id')}")["status"] == "CANCELED"

