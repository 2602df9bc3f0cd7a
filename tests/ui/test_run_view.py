"""A run's tab in a real browser: clicking op after op (graph nodes and lineage chips, in any
order) shows each op's details, keeps the graph readable, and keeps one poll loop per view;
the op details show what a person expects (rendered displays, a cached op's logs).

The run is made by a real ``jf.run`` in a child process on the session's cluster, in the
lab's store. Set FLOW_UPDATE_SCREENSHOTS=1 to refresh docs/screenshots/flow-run-view.png.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from tests.ui.conftest import open_lab, run_script, show_flow_sidebar

DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

# Six ops: a diamond with a tail, each printing; `report` displays HTML and a figure.
RUN_SCRIPT = r'''
import sys
import jupyter_flow as jf

@jf.op
def load(n):
    print("loaded", n, "rows")
    return list(range(n))

@jf.op
def evens(rows):
    print("kept the even rows")
    return [x for x in rows if x % 2 == 0]

@jf.op
def odds(rows):
    print("kept the odd rows")
    return [x for x in rows if x % 2]

@jf.op
def merge(a, b):
    print("merged", len(a), "and", len(b))
    return sorted(a + b)

@jf.op
def total(rows):
    print("total is", sum(rows))
    return sum(rows)

@jf.op
def report(value, rows):
    from IPython.display import HTML, display
    import matplotlib.pyplot as plt  # on jupyter_flow's backend: plt.show() shows the figure
    display(HTML("<b class='flow-test-bold'>total</b> <script>window.flowTestScript = 1</script>" + str(value)))
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot(rows)
    plt.show()
    print("report written")
    return f"total={value}"

rows = load(int(sys.argv[2]))
merged = merge(evens(rows), odds(rows))
run = jf.run(report(total(merged), merged), name=sys.argv[3], cluster=sys.argv[1])
assert run.status == "SUCCESS", run.error
print(run.id)
'''

OPS = ["load", "evens", "odds", "merge", "total", "report"]


def make_run(lab, scheduler: str, n: int, name: str) -> str:
    """A finished run of the six ops in the lab's store; returns its id."""
    return run_script(lab, "six_ops.py", RUN_SCRIPT, scheduler, str(n), name)


@pytest.fixture(scope="module")
def runs(lab, dask_cluster):
    """Two runs of the same graph: the first computes, the second (same input) is all cached
    except nothing: every op CACHED; a third with another input computes again."""
    first = make_run(lab, dask_cluster.scheduler_address, 10, "six-ops")
    cached = make_run(lab, dask_cluster.scheduler_address, 10, "six-ops-again")
    return {"first": first, "cached": cached}


def open_run(page, run_id: str, name: str):
    from playwright.sync_api import expect

    show_flow_sidebar(page)
    row = page.locator(f'#jupyter-flow-sidebar li.jp-flow-run-row[data-run-id="{run_id}"]')
    expect(row).to_have_attribute("data-status", "SUCCESS")
    row.locator(".jp-flow-run-open").click()
    view = page.locator(f"#jupyter-flow-run-{run_id}")
    expect(view.locator(".jp-flow-node")).to_have_count(len(OPS))
    return view


def node(view, name: str):
    return view.locator(".jp-flow-node").filter(has=view.page.locator(".jp-flow-node-label", has_text=name)).first


def assert_graph_readable(view) -> None:
    """All six nodes drawn, each at least 100 px wide (180 px at zoom 1; labels readable)."""
    nodes = view.locator(".jp-flow-node")
    assert nodes.count() == len(OPS)
    graph = view.locator(".jp-flow-run-graph").bounding_box()
    assert graph and graph["width"] > 300 and graph["height"] > 200, graph
    for index in range(len(OPS)):
        box = nodes.nth(index).bounding_box()
        assert box is not None and box["width"] >= 100, (index, box)


@pytest.mark.timeout(300)
def test_clicking_many_ops_in_any_order_shows_each_and_polls_once(lab, runs, browser, screenshots):
    from playwright.sync_api import expect

    page = open_lab(browser, lab)
    view = open_run(page, runs["first"], "six-ops")
    requests: list[tuple[float, str]] = []
    page.on("request", lambda request: requests.append((time.monotonic(), request.url)))
    details = view.locator(".jp-flow-details")
    title = details.locator(".jp-flow-details-title")

    def shows(name: str, printed: str) -> None:
        # Each op's own details: its name, its source and its stdout.
        expect(title).to_have_text(name, timeout=10_000)
        expect(details.locator(".jp-flow-source")).to_contain_text(f"def {name}(", timeout=10_000)
        expect(details.locator(".jp-flow-stdout")).to_contain_text(printed, timeout=10_000)
        assert_graph_readable(view)

    node(view, "merge").click()
    shows("merge", "merged 5 and 5")
    node(view, "load").click()
    shows("load", "loaded 10 rows")
    details.get_by_role("button", name="select downstream op odds").click()
    shows("odds", "kept the odd rows")
    node(view, "report").click()
    shows("report", "report written")
    details.get_by_role("button", name="select upstream op total").click()
    shows("total", "total is 45")
    node(view, "evens").click()
    shows("evens", "kept the even rows")
    details.get_by_role("button", name="select upstream op load").click()
    shows("load", "loaded 10 rows")
    node(view, "report").click()
    shows("report", "report written")
    page.screenshot(path=str(screenshots / "flow-run-view.png"))
    if os.environ.get("FLOW_UPDATE_SCREENSHOTS") == "1":
        shutil.copy(screenshots / "flow-run-view.png", DOCS_SCREENSHOTS / "flow-run-view.png")

    # Idle: every op has finished, so nothing about them should be fetched again; one
    # poll loop at 1 s would make at most ~4 requests here, the storm made dozens.
    page.wait_for_timeout(1500)  # let the last click's fetches settle
    start = time.monotonic()
    page.wait_for_timeout(4000)
    idle = [url for at, url in requests if at >= start and "/jupyter-flow/api/tasks/" in url]
    assert len(idle) <= 4, idle
    assert_graph_readable(view)
    page.close()


@pytest.mark.timeout(300)
def test_displayed_outputs_render_as_html_and_images_untrusted(lab, runs, browser, screenshots):
    """An op's "displayed outputs" show as the notebook showed them (HTML, a figure), through
    JupyterLab's renderers as untrusted output (no script runs); they were raw JSON with base64."""
    from playwright.sync_api import expect

    page = open_lab(browser, lab)
    view = open_run(page, runs["first"], "six-ops")
    node(view, "report").click()
    details = view.locator(".jp-flow-details")
    expect(details.locator(".jp-flow-details-title")).to_have_text("report")
    details.get_by_role("button", name="preview output __displays__").click()
    shown = details.locator('[aria-label="displayed outputs"]')
    image = shown.locator(".jp-RenderedImage img")
    expect(image).to_be_visible()
    assert image.evaluate("img => img.naturalWidth") > 100
    expect(shown.locator("b.flow-test-bold")).to_have_text("total")
    expect(shown.locator(".jp-RenderedText")).to_contain_text("report written")
    assert "iVBOR" not in details.inner_text() and '"image/png"' not in details.inner_text()
    assert page.evaluate("() => window.flowTestScript") is None  # sanitized: the script never ran
    shown.scroll_into_view_if_needed()
    page.screenshot(path=str(screenshots / "flow-run-view-rendered-output.png"))
    page.close()


@pytest.mark.timeout(300)
def test_a_cached_op_shows_the_logs_of_the_execution_that_computed_it(lab, runs, browser):
    from playwright.sync_api import expect

    page = open_lab(browser, lab)
    view = open_run(page, runs["cached"], "six-ops-again")
    first_tasks = {task["name"]: task["id"] for task in lab.api(f"runs/{runs['first']}/tasks")["tasks"]}
    for name, printed in [("load", "loaded 10 rows"), ("merge", "merged 5 and 5")]:
        node(view, name).click()
        details = view.locator(".jp-flow-details")
        expect(details.locator(".jp-flow-details-title")).to_have_text(name)
        expect(details.locator(".jp-flow-badge").first).to_have_text("CACHED")
        expect(details.locator(".jp-flow-stdout")).to_contain_text(printed)
        expect(details.locator(".jp-flow-logs-from")).to_contain_text(
            f"printed by task {first_tasks[name]} of run {runs['first']}")
        expect(details).not_to_contain_text("No output.")
    page.close()


BIG_SCRIPT = r'''
import sys
import jupyter_flow as jf

@jf.op
def source(n):
    return list(range(n))

@jf.op
def square(rows, i):
    return rows[i] ** 2

@jf.op
def gather(*values):
    return sum(values)

rows = source(18)
run = jf.run(gather(*[square(rows, i) for i in range(18)]), name="fan-out-20", cluster=sys.argv[1])
assert run.status == "SUCCESS", run.error
print(run.id)
'''


@pytest.mark.timeout(300)
def test_op_details_keep_a_large_graph_readable_and_the_minimap_shows_its_nodes(lab, dask_cluster, browser,
                                                                               screenshots):
    """20 ops (a fan-out of 18): with op details open the nodes stay at least 80% of their
    size (labels over 10 px), the minimap draws every node (it was an empty box), and a
    narrow tab puts the details under the graph."""
    from playwright.sync_api import expect

    run_id = run_script(lab, "fan_out.py", BIG_SCRIPT, dask_cluster.scheduler_address)

    page = open_lab(browser, lab, width=1280, height=800)
    show_flow_sidebar(page)
    page.locator(f'#jupyter-flow-sidebar li.jp-flow-run-row[data-run-id="{run_id}"] .jp-flow-run-open').click()
    view = page.locator(f"#jupyter-flow-run-{run_id}")
    nodes = view.locator(".jp-flow-node")
    expect(nodes).to_have_count(20)
    minimap = view.locator(".react-flow__minimap")
    expect(minimap.locator(".react-flow__minimap-node")).to_have_count(20)
    sizes = minimap.locator(".react-flow__minimap-node").evaluate_all(
        "rects => rects.map(r => [Number(r.getAttribute('width')), Number(r.getAttribute('height'))])")
    assert all(w > 0 and h > 0 for w, h in sizes), sizes
    node(view, "gather").click()
    details = view.locator(".jp-flow-details")
    expect(details.locator(".jp-flow-details-title")).to_have_text("gather")
    page.wait_for_timeout(500)  # the refit after the details took their space
    visible = [box for box in (nodes.nth(i).bounding_box() for i in range(20)) if box]
    assert visible and min(box["width"] for box in visible) >= 0.8 * 180 - 2, visible
    label_px = view.locator(".jp-flow-node-label").first.evaluate(
        "el => parseFloat(getComputedStyle(el).fontSize) * el.getBoundingClientRect().width / el.offsetWidth")
    assert label_px >= 10, label_px
    page.screenshot(path=str(screenshots / "flow-run-view-large.png"))

    # A narrow tab: the details go under the graph, which keeps the tab's width.
    page.set_viewport_size({"width": 900, "height": 900})
    graph = view.locator(".jp-flow-run-graph")
    expect(details).to_be_visible()
    page.wait_for_timeout(500)
    graph_box, details_box = graph.bounding_box(), view.locator(".jp-flow-run-details").bounding_box()
    assert details_box["y"] >= graph_box["y"] + graph_box["height"] - 2, (graph_box, details_box)
    assert graph_box["width"] >= details_box["width"] - 2, (graph_box, details_box)
    page.screenshot(path=str(screenshots / "flow-run-view-narrow.png"))
    page.close()
