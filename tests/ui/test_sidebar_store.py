"""The Flow sidebar when the server cannot open its store: it says why, names the file and
what to do, and shows the runs once the user has done it, without a reload."""

from __future__ import annotations

import os

import pytest

from tests.ui.conftest import running_lab


@pytest.fixture
def corrupt_lab(tmp_path):
    """A lab whose store file is garbage (a disk error, a bad copy)."""
    (tmp_path / "flow").mkdir()
    (tmp_path / "flow" / "flow.db").write_bytes(os.urandom(16384))
    with running_lab(tmp_path, healthy=False) as server:
        yield server


@pytest.mark.timeout(240)
def test_sidebar_says_the_store_is_corrupt_and_recovers_once_it_is_moved_aside(corrupt_lab, browser, screenshots):
    from playwright.sync_api import expect

    store = corrupt_lab.flow_home / "flow.db"
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.set_default_timeout(30_000)
    page.goto(f"{corrupt_lab.url}lab?token={corrupt_lab.token}")
    tab = page.locator('.jp-SideBar li[data-id="jupyter-flow-sidebar"]')
    expect(tab).to_have_attribute("title", "Flow", timeout=60_000)
    tab.click()

    sidebar = page.locator("#jupyter-flow-sidebar")
    notice = sidebar.locator('.jp-flow-panel-message[data-failure="store"]')
    expect(notice.locator("h3")).to_have_text("The jupyter_flow store cannot be opened")
    expect(notice.locator(".jp-flow-panel-reason")).to_contain_text(f"mv {store} {store}.corrupt")
    expect(notice.locator(".jp-flow-store-name")).to_have_text(str(store))
    expect(sidebar.locator("li.jp-flow-run-row")).to_have_count(0)
    sidebar.screenshot(path=str(screenshots / "flow-store-corrupt.png"))

    store.rename(store.with_name("flow.db.corrupt"))  # what the message says to do
    # The server retries every 5 s and so does the sidebar: the empty list of a new store.
    expect(sidebar.locator(".jp-flow-empty")).to_contain_text("No runs yet", timeout=30_000)
    expect(notice).to_have_count(0)
    assert corrupt_lab.api("health")["status"] == "ok"
