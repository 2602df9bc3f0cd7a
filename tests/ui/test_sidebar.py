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
from tests.ui.conftest import open_lab, show_flow_sidebar

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

    page = open_lab(browser, lab)
    show_flow_sidebar(page)

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



def open_sidebar(lab, browser):
    """The lab at 1440 x 900 with the Flow sidebar open at its default width."""
    page = open_lab(browser, lab)
    return page, show_flow_sidebar(page)


@pytest.mark.timeout(240)
def test_run_rows_are_two_lines_at_the_default_sidebar_width(lab, kernel, browser, screenshots):
    from playwright.sync_api import expect

    kernel.ok("%%flow\nfirst_hour_rows = list(range(5))\nprint('rows', first_hour_rows)")
    kernel.ok("%%flow\nfirst_hour_long_name_of_a_cell_result = sum(first_hour_rows)")
    page, sidebar = open_sidebar(lab, browser)
    rows = sidebar.locator("li.jp-flow-run-row")
    named = rows.filter(has=page.locator(".jp-flow-run-name", has_text="first_hour_long_name_of_a_cell_result"))
    expect(named).to_have_attribute("data-status", "SUCCESS")
    width = sidebar.bounding_box()["width"]
    assert width < 400, width  # JupyterLab's default sidebar width, not widened by the test
    name_line = rows.first.locator(".jp-flow-run-name").bounding_box()["height"]
    heights = [rows.nth(i).bounding_box()["height"] for i in range(rows.count())]
    # Two lines (name, then kind · duration · counts · start) plus padding; rows that wrapped
    # to four lines were about 90 px high.
    assert rows.count() >= 3 and max(heights) <= 2.6 * name_line, (width, name_line, heights)
    # The badge and the name share the first line; counts and duration are on the second.
    badge, name = named.locator(".jp-flow-badge").bounding_box(), named.locator(".jp-flow-run-name").bounding_box()
    assert abs((badge["y"] + badge["height"] / 2) - (name["y"] + name["height"] / 2)) < 4, (badge, name)
    expect(named.locator(".jp-flow-counts")).to_have_text("ran 1 · cached 1 · failed 0")
    # What no longer fits is in the tooltip.
    tooltip = named.locator(".jp-flow-run-open").get_attribute("title")
    run_id = named.get_attribute("data-run-id")
    assert f"id {run_id}" in tooltip and "duration " in tooltip and "ran 1 · cached 1 · failed 0" in tooltip, tooltip
    assert "notebook flow_demo.ipynb" in tooltip, tooltip
    sidebar.screenshot(path=str(screenshots / "flow-run-list-compact.png"))
    if os.environ.get("FLOW_UPDATE_SCREENSHOTS") == "1":
        shutil.copy(screenshots / "flow-run-list-compact.png", DOCS_SCREENSHOT.parent / "flow-run-list-compact.png")
    page.close()


@pytest.mark.timeout(240)
def test_an_idle_notebook_run_shows_idle_without_cancel_until_a_cell_runs(lab, kernel, browser):
    from playwright.sync_api import expect

    kernel.ok("%%flow\nidle_check = 1")
    notebook_id = next(run["id"] for run in lab.api("runs?kind=notebook")["runs"] if run["status"] == "RUNNING"
                       and any(child["name"] == "idle_check" and child["parent_id"] == run["id"]
                               for child in lab.api("runs?limit=200")["runs"]))
    page, sidebar = open_sidebar(lab, browser)
    notebook_row = sidebar.locator(f'li.jp-flow-run-row[data-run-id="{notebook_id}"]')
    # The kernel is alive, no cell runs: idle, and nothing to cancel.
    expect(notebook_row).to_have_attribute("data-status", "RUNNING")
    expect(notebook_row).to_have_attribute("data-idle", "true")
    expect(notebook_row.locator(".jp-flow-badge")).to_have_text("idle")
    expect(notebook_row.locator(".jp-flow-badge")).to_have_attribute("title", "idle: kernel is alive; no cell running")
    expect(notebook_row.get_by_role("button", name="cancel run flow_demo")).to_have_count(0)
    # Its tab says the same.
    notebook_row.locator(".jp-flow-run-open").click()
    view = page.locator(f"#jupyter-flow-run-{notebook_id}")
    expect(view.locator(".jp-flow-run-header .jp-flow-badge")).to_have_text("idle")
    expect(view.get_by_role("button", name="cancel run flow_demo")).to_have_count(0)

    # While a cell runs, the notebook run is busy and can be canceled.
    kernel.ok("%%flow busy_cell --background\nimport time\ntime.sleep(8)\nbusy_cell = 1")
    expect(notebook_row).not_to_have_attribute("data-idle", "true", timeout=10_000)
    expect(notebook_row.locator(".jp-flow-badge")).to_have_text("RUNNING")
    expect(notebook_row.get_by_role("button", name="cancel run flow_demo")).to_be_visible()
    expect(view.get_by_role("button", name="cancel run flow_demo")).to_be_visible()
    # ...and idle again once it ends.
    busy_row = sidebar.locator("li.jp-flow-run-row").filter(has=page.locator(".jp-flow-run-name", has_text="busy_cell"))
    expect(busy_row).to_have_attribute("data-status", "SUCCESS", timeout=60_000)
    expect(notebook_row).to_have_attribute("data-idle", "true")
    expect(view.get_by_role("button", name="cancel run flow_demo")).to_have_count(0)
    page.close()


@pytest.mark.timeout(240)
def test_the_cancel_question_closes_when_the_run_ends_by_itself(lab, kernel, browser):
    from playwright.sync_api import expect

    page, sidebar = open_sidebar(lab, browser)
    kernel.ok("%%flow ends_alone --background\nimport time\ntime.sleep(6)\nends_alone = 1")
    row = sidebar.locator("li.jp-flow-run-row").filter(has=page.locator(".jp-flow-run-name", has_text="ends_alone"))
    expect(row).to_have_attribute("data-status", "RUNNING")
    row.get_by_role("button", name="cancel run ends_alone").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Cancel run ends_alone")
    expect(dialog.get_by_role("button", name="Keep running")).to_be_visible()
    # Nobody answers; the op finishes by itself: the question goes and says why.
    expect(row).to_have_attribute("data-status", "SUCCESS", timeout=60_000)
    expect(dialog).to_have_count(0, timeout=5_000)
    expect(page.locator(".jp-Notification-Toast-info")).to_contain_text(
        "Run ends_alone already ended (SUCCESS); there is nothing to cancel.")
    assert lab.api(f"runs/{row.get_attribute('data-run-id')}")["status"] == "SUCCESS"
    page.close()
