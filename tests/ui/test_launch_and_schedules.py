"""The launch form, run-ended notifications and the Schedules view in a real browser.

A notebook declaring three ``jf.param`` parameters sits in the lab's root. The user opens
"Launch with parameters…" from the notebook's toolbar, types a value the server refuses
(the server's message is shown, nothing starts), runs it with valid values (the batch ends
SUCCESS and the notification area says so, with "Open run"), then schedules it every 3 s
(the lab's own scheduler fires it), and pauses, resumes and removes the schedule. A link
with ``?flow-run=<id>`` opens that run. Set FLOW_UPDATE_SCREENSHOTS=1 to refresh
docs/screenshots/flow-launch.png and flow-schedules.png from it.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.notebook_files import write_notebook
from tests.ui.conftest import running_lab
from tests.waiting import wait_for

DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
NOTEBOOK = "tune.ipynb"
CELLS = [
    ("%load_ext jupyter_flow\nimport jupyter_flow as jf", None),
    ("epochs = jf.param('epochs', 3, min=1, max=10, help='passes over the data')\n"
     "model = jf.param('model', 'small', choices=['small', 'large'])\n"
     "lr = jf.param('lr', 0.1, min=0.0, max=1.0)", ["parameters"]),
    ("jf.record('score', epochs * lr)\nprint(model)", None),
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory, dask_cluster):
    """A lab whose scheduler ticks twice a second and whose batches use the session cluster."""
    with running_lab(tmp_path_factory.mktemp("lab"), args=("--FlowApp.scheduler_interval=0.5",),
                     env={"DASK_FLOW__DEFAULT_CLUSTER": dask_cluster.scheduler_address}) as server:
        write_notebook(server.root / NOTEBOOK, CELLS)
        yield server


def batches(lab) -> list[dict]:
    return lab.api("runs?kind=batch")["runs"]


def keep_for_docs(shot: Path) -> None:
    if os.environ.get("FLOW_UPDATE_SCREENSHOTS") == "1":
        shutil.copy(shot, DOCS_SCREENSHOTS / shot.name)


@pytest.mark.timeout(240)
def test_launch_form_runs_and_schedules_a_notebook_with_notifications(lab, browser, screenshots):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.set_default_timeout(30_000)
    page.goto(f"{lab.url}lab/tree/{NOTEBOOK}?token={lab.token}")
    notebook = page.locator(".jp-NotebookPanel")
    expect(notebook.locator(".jp-Cell")).to_have_count(3, timeout=60_000)

    # The notebook's toolbar opens the form: one field per declared parameter.
    notebook.locator(".jp-flow-launch-button").first.click()
    form = page.locator("form.jp-flow-launch")
    expect(form.locator(".jp-flow-param")).to_have_count(3)
    epochs = form.locator('input[name="epochs"]')
    expect(epochs).to_have_value("3")
    expect(epochs).to_have_attribute("min", "1")
    expect(epochs).to_have_attribute("max", "10")
    expect(epochs).to_have_attribute("step", "1")
    expect(form.locator('.jp-flow-param[data-param="epochs"] .jp-flow-field-help')).to_have_text(
        "passes over the data · 1 to 10")
    expect(form.locator('select[name="model"] option')).to_have_text(["small", "large"])
    expect(form.locator('input[name="lr"]')).to_have_value("0.1")

    # Out of bounds: a hint as the user types, then the server's own message; nothing starts.
    epochs.fill("99")
    expect(form.locator('.jp-flow-param[data-param="epochs"] .jp-flow-field-hint')).to_contain_text(
        "above its maximum 10")
    form.get_by_role("button", name="Run now").click()
    error = form.locator(".jp-flow-launch-error")
    expect(error).to_contain_text("epochs")
    expect(error).to_contain_text("10")
    page.screenshot(path=str(screenshots / "flow-launch-refused.png"))
    form.screenshot(path=str(screenshots / "flow-launch.png"))
    keep_for_docs(screenshots / "flow-launch.png")
    assert batches(lab) == []

    # Valid values: a batch starts, its run view opens, and its end is announced.
    epochs.fill("4")
    form.locator('select[name="model"]').select_option("large")
    form.get_by_role("button", name="Run now").click()
    expect(form.locator(".jp-flow-launch-done")).to_contain_text("Started batch")
    batch = wait_for(lambda: batches(lab), timeout=10)[0]
    run_view = page.locator(f"#jupyter-flow-run-{batch['id']}")
    expect(run_view).to_be_visible()
    # Closed while the batch runs, the run view comes back from the notification's "Open run".
    page.locator(".lm-DockPanel .lm-TabBar-tab", has_text=f"Flow: {batch['name']}").locator(
        ".lm-TabBar-tabCloseIcon").click()
    expect(run_view).to_have_count(0)
    toast = page.locator(".jp-Notification-Toast-success").filter(has_text="succeeded")
    expect(toast.locator(".jp-toast-message")).to_have_text(f"Run {batch['name']} succeeded", timeout=90_000)
    page.screenshot(path=str(screenshots / "flow-run-notification.png"))
    toast.get_by_role("button", name="Open run").click()
    expect(run_view).to_be_visible()
    expect(run_view.locator(".jp-flow-run-header .jp-flow-badge")).to_have_text("SUCCESS")
    assert lab.api(f"runs/{batch['id']}")["status"] == "SUCCESS"
    (execution,) = lab.api(f"runs?parent_id={batch['id']}")["runs"]
    assert execution["params"]["epochs"] == 4 and execution["params"]["model"] == "large"

    # Schedule it every 3 s: the Schedules view shows it, with a last result once it fires.
    page.get_by_role("tab", name=re.compile(f"Launch: {NOTEBOOK}")).click()
    form.get_by_role("radio", name="Schedule").check()
    form.locator('input[name="name"]').fill("tune-every-3s")
    form.locator('input[name="cron"]').fill("*/3 * * * * *")
    form.locator('select[name="misfire"]').select_option("skip")
    form.get_by_role("button", name="Create schedule").click()
    (schedule,) = wait_for(lambda: lab.api("schedules")["schedules"], timeout=10)
    assert (schedule["name"], schedule["cron"], schedule["misfire"]) == ("tune-every-3s", "*/3 * * * * *", "skip")
    assert schedule["params"] == {"epochs": 4, "model": "large"}
    sidebar = page.locator("#jupyter-flow-sidebar")
    expect(sidebar.get_by_role("tab", name="Schedules")).to_have_attribute("aria-selected", "true")
    row = sidebar.locator(f'li.jp-flow-schedule-row[data-schedule-id="{schedule["id"]}"]')
    expect(row.locator(".jp-flow-run-name")).to_have_text("tune-every-3s")
    expect(row.locator(".jp-flow-cron")).to_have_text("*/3 * * * * *")
    expect(row.locator(".jp-flow-misfire")).to_have_text("misfire: skip")
    expect(row.locator(".jp-flow-next-fire")).to_have_text(re.compile(r"next: (in \d+ s|due now|now)"))
    last = row.locator(".jp-flow-last-result .jp-flow-badge")
    expect(last).to_have_text(re.compile("PENDING|RUNNING|SUCCESS"), timeout=30_000)

    # Pause: the schedule stops firing; the row says so.
    row.get_by_role("button", name="pause schedule tune-every-3s").click()
    expect(row).to_have_attribute("data-paused", "true")
    expect(row.locator(".jp-flow-next-fire")).to_have_text("next: paused")
    assert lab.api(f"schedules/{schedule['id']}")["paused"] is True
    # The firing it started ends SUCCESS, and its badge opens that run.
    expect(last).to_have_text("SUCCESS", timeout=90_000)
    sidebar.screenshot(path=str(screenshots / "flow-schedules.png"))
    keep_for_docs(screenshots / "flow-schedules.png")
    fired = lab.api(f"schedules/{schedule['id']}")["last_run"]
    row.get_by_role("button", name="open the last run of tune-every-3s, SUCCESS").click()
    expect(page.locator(f"#jupyter-flow-run-{fired['id']}")).to_be_visible()
    assert lab.api(f"runs/{fired['id']}")["schedule_id"] == schedule["id"]

    # Resume, then remove (after confirming).
    row.get_by_role("button", name="resume schedule tune-every-3s").click()
    expect(row).to_have_attribute("data-paused", "false")
    assert lab.api(f"schedules/{schedule['id']}")["paused"] is False
    row.get_by_role("button", name="remove schedule tune-every-3s").click()
    page.locator(".jp-Dialog").get_by_role("button", name="Remove").click()
    expect(row).to_have_count(0)
    assert lab.api("schedules")["schedules"] == []

    # A link with ?flow-run=<id> (as the notification hooks send) opens that run.
    linked = browser.new_page(viewport={"width": 1200, "height": 800})
    linked.goto(f"{lab.url}lab?token={lab.token}&flow-run={batch['id']}")
    expect(linked.locator(f"#jupyter-flow-run-{batch['id']}")).to_be_visible(timeout=60_000)
    expect(linked.locator(f"#jupyter-flow-run-{batch['id']} .jp-flow-run-title")).to_contain_text(batch["name"])
    linked.close()
    page.close()
