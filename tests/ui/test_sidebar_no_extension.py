"""The sidebar in a lab whose jupyter_flow server extension is off (disabled in the config, as
after an install into the wrong environment): it says so, and it asks the server less and less
often (1 s, 2 s, 4 s … at most 30 s) instead of once a second forever (issue 17)."""

from __future__ import annotations

import time

import pytest

from tests.ui.conftest import running_lab


@pytest.fixture(scope="module")
def lab_without_extension(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp("lab-noext"), server_extension=False) as server:
        yield server


@pytest.mark.timeout(180)
def test_without_the_server_extension_the_sidebar_says_so_and_backs_off(lab_without_extension, browser):
    from playwright.sync_api import expect

    lab = lab_without_extension
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.set_default_timeout(30_000)
    requests: list[tuple[float, str]] = []
    page.on("request", lambda request: "/jupyter-flow/api/" in request.url
            and requests.append((time.monotonic(), request.url)))
    page.goto(f"{lab.url}lab?token={lab.token}")
    tab = page.locator('.jp-SideBar li[data-id="jupyter-flow-sidebar"]')
    expect(tab).to_have_attribute("title", "Flow", timeout=60_000)
    tab.click()
    message = page.locator("#jupyter-flow-sidebar .jp-flow-panel-message")
    expect(message).to_have_attribute("data-failure", "missing")
    expect(message).to_contain_text("jupyter_flow is not available")
    expect(message).to_contain_text("jupyter server extension list")

    # Over 20 s a 1 s poll asks 20 times; 1, 2, 4, 8 s pauses ask 5 or 6 times.
    start = time.monotonic()
    page.wait_for_timeout(20_000)
    asked = [url for at, url in requests if start <= at <= start + 20]
    assert 2 <= len(asked) <= 7, asked
    pauses = [b - a for (a, _), (b, _) in zip(requests, requests[1:]) if a >= start]
    assert pauses and max(pauses) >= 3.5, pauses
    # The panel says how long it waits now, and that the wait grows.
    expect(message.locator(".jp-flow-retry")).to_contain_text("twice as long, up to 30 seconds")
    waiting = int(message.locator(".jp-flow-retry").get_attribute("data-retry-ms"))
    assert 8_000 <= waiting <= 30_000, waiting
    # "Retry now" asks at once.
    before = len(requests)
    message.get_by_role("button", name="Retry now").click()
    page.wait_for_timeout(1_000)
    assert len(requests) == before + 1, requests[before:]
    page.close()
