"""A batch's tab in a real browser: after `jupyter flow batch`, the tab shows its executions
(params, status, metrics, counts) as a sortable table, as `jupyter flow compare` prints them,
and a row opens that execution, whose tab lists its cell runs. Before, the tab said "This run
has no ops yet · 0 ops" after SUCCESS.

Set FLOW_UPDATE_SCREENSHOTS=1 to refresh docs/screenshots/flow-batch-view.png."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.batch.test_batch import write_sweep_notebook
from tests.ui.conftest import open_lab, show_flow_sidebar

DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def run_batch(lab, scheduler: str, tmp_path) -> dict:
    """`jupyter flow batch` of a three-point sweep, in the lab's store; its JSON summary."""
    notebook = write_sweep_notebook(tmp_path / "sweep.ipynb")
    grid = tmp_path / "grid.yaml"
    grid.write_text("lr: [0.5, 0.1, 0.25]\n")
    env = dict(os.environ, JUPYTER_FLOW_HOME=str(lab.flow_home), DASK_FLOW__DEFAULT_CLUSTER=scheduler)
    for var in ("JUPYTER_FLOW_DB", "JUPYTER_FLOW_ARTIFACTS", "JUPYTER_FLOW_RUN_ID"):
        env.pop(var, None)
    done = subprocess.run([sys.executable, "-m", "jupyter_flow.cli", "batch", str(notebook), "--grid", str(grid),
                           "--parallel", "3", "--cluster", scheduler, "--json"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.timeout(600)
def test_a_batch_tab_shows_its_executions_sorted_and_opens_each(lab, dask_cluster, browser, screenshots, tmp_path):
    from playwright.sync_api import expect

    summary = run_batch(lab, dask_cluster.scheduler_address, tmp_path)
    assert summary["status"] == "SUCCESS", summary
    batch_id = summary["batch"]
    page = open_lab(browser, lab)
    show_flow_sidebar(page)
    row = page.locator(f'#jupyter-flow-sidebar li.jp-flow-run-row[data-run-id="{batch_id}"]')
    expect(row).to_have_attribute("data-status", "SUCCESS")
    row.locator(".jp-flow-run-open").click()
    view = page.locator(f"#jupyter-flow-run-{batch_id}")
    rows = view.locator("tr.jp-flow-child-row")
    expect(rows).to_have_count(3)
    expect(view).not_to_contain_text("no ops yet")
    headers = view.locator(".jp-flow-children-table th")
    expect(headers).to_contain_text(["execution", "status", "lr", "accuracy", "duration", "ran / cached / failed"])
    # The parent counts its executions' ops (one %%flow cell each), not "ran 0".
    expect(view.locator('[aria-label="task counts"]')).to_contain_text("ran 3")

    def column(name: str) -> list[str]:
        index = [h.strip().rstrip(" ▲▼") for h in headers.all_inner_texts()].index(name)
        return [r.locator("td").nth(index).inner_text() for r in rows.all()]

    assert sorted(column("accuracy")) == ["0.5", "0.75", "0.9"]
    view.get_by_role("button", name="accuracy").click()
    expect(rows.first).to_contain_text("0.5")
    assert column("accuracy") == ["0.5", "0.75", "0.9"]
    view.get_by_role("button", name="accuracy ▲").click()
    expect(rows.first).to_contain_text("0.9")
    assert column("accuracy") == ["0.9", "0.75", "0.5"] and column("lr") == ["0.1", "0.25", "0.5"]
    page.screenshot(path=str(screenshots / "flow-batch-view.png"))
    if os.environ.get("FLOW_UPDATE_SCREENSHOTS") == "1":
        shutil.copy(screenshots / "flow-batch-view.png", DOCS_SCREENSHOTS / "flow-batch-view.png")

    # A row opens that execution; a notebook run's tab lists its cell runs.
    execution = rows.first.get_attribute("data-run-id")
    rows.first.click()
    child = page.locator(f"#jupyter-flow-run-{execution}")
    expect(child.locator("tr.jp-flow-child-row")).to_have_count(1)
    expect(child.locator("tr.jp-flow-child-row")).to_contain_text("train")
    child.locator("tr.jp-flow-child-row").click()
    # ...and a cell run's tab shows its op.
    expect(page.locator(".jp-flow-node-label", has_text="train").first).to_be_visible()
    page.close()


@pytest.mark.timeout(600)
def test_a_batch_execution_opens_its_executed_notebook_and_rerun_asks_plainly(lab, dask_cluster, browser,
                                                                               tmp_path):
    """Each execution row offers its executed notebook: "open" writes it under the server
    root (flow-executed/) and opens it in JupyterLab with its outputs. An execution's "Rerun as
    batch" question answers "Don't rerun" / "Rerun" (its other button said "Keep running")."""
    from playwright.sync_api import expect

    summary = run_batch(lab, dask_cluster.scheduler_address, tmp_path)
    batch_id = summary["batch"]
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.set_default_timeout(30_000)
    page.goto(f"{lab.url}lab?token={lab.token}")
    sidebar = show_flow_sidebar(page)
    sidebar.locator(f'li.jp-flow-run-row[data-run-id="{batch_id}"] .jp-flow-run-open').click()
    view = page.locator(f"#jupyter-flow-run-{batch_id}")
    rows = view.locator("tr.jp-flow-child-row")
    expect(rows).to_have_count(3)
    execution = rows.first.get_attribute("data-run-id")
    rows.first.get_by_role("button", name=f"open the executed notebook of {execution}").click()
    path = f"flow-executed/sweep.{execution}.ipynb"
    notebook = page.locator(".jp-NotebookPanel").filter(has=page.locator(".jp-Cell"))
    expect(page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")).to_contain_text(f"sweep.{execution}")
    expect(notebook.locator(".jp-OutputArea-output").first).to_be_visible()
    assert (lab.root / path).exists()
    written = json.loads((lab.root / path).read_text())
    assert any(cell.get("outputs") for cell in written["cells"] if cell["cell_type"] == "code")
    # The row's own click (open the run) did not fire as well.
    expect(page.locator(f"#jupyter-flow-run-{execution}")).to_have_count(0)

    # The execution's tab: "Rerun as batch" asks, and "Don't rerun" starts nothing.
    sidebar.locator(f'li.jp-flow-run-row[data-run-id="{batch_id}"] .jp-flow-run-open').click()  # back to the batch
    rows.nth(1).click()
    other = rows.nth(1).get_attribute("data-run-id")
    child = page.locator(f"#jupyter-flow-run-{other}")
    expect(child.get_by_role("button", name=f"open the executed notebook of {other}")).to_be_visible()
    batches = len(lab.api("runs?kind=batch")["runs"])
    child.get_by_role("button", name="as a batch").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog.locator(".jp-Dialog-button")).to_have_text(["Don't rerun", "Rerun"])
    dialog.get_by_role("button", name="Don't rerun").click()
    expect(dialog).to_have_count(0)
    assert len(lab.api("runs?kind=batch")["runs"]) == batches
    page.close()
