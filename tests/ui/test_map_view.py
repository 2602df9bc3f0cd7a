"""A run of jf.map and jf.funnel in its tab: the graph names each mapped element by its index
and each collector after the call that made it (no anonymous `parallel` nodes), and the
upstream chips of a collector tell its elements apart (issue 17 point 8).

The run is made by a real ``jf.run`` in a child process on the session's cluster, in the
lab's store.
"""

from __future__ import annotations

import pytest

from tests.ui.conftest import open_lab, run_script, show_flow_sidebar

MAP_SCRIPT = r'''
import sys
import jupyter_flow as jf

@jf.op
def square(x):
    return x * x

@jf.op
def total(values):
    return sum(values)

run = jf.run([jf.map(square, [1, 2, 3]), jf.funnel([square(10), square(20)], into=total)],
             name="map-and-funnel", cluster=sys.argv[1])
assert run.status == "SUCCESS", run.error
print(run.id)
'''


@pytest.mark.timeout(300)
def test_mapped_elements_and_collectors_are_named_in_the_graph_and_chips(lab, dask_cluster, browser):
    from playwright.sync_api import expect

    run_id = run_script(lab, "map_and_funnel.py", MAP_SCRIPT, dask_cluster.scheduler_address)

    page = open_lab(browser, lab)
    show_flow_sidebar(page)
    row = page.locator(f'#jupyter-flow-sidebar li.jp-flow-run-row[data-run-id="{run_id}"]')
    expect(row).to_have_attribute("data-status", "SUCCESS")
    row.locator(".jp-flow-run-open").click()
    view = page.locator(f"#jupyter-flow-run-{run_id}")
    labels = view.locator(".jp-flow-node-label")
    expect(labels).to_have_count(8)  # 3 squares + map, 2 squares + funnel collector + total
    names = sorted(labels.all_inner_texts())
    assert names == sorted(["square[0]", "square[1]", "square[2]", "map:square",
                            "square", "square", "funnel:total", "total"]), names

    view.locator(".jp-flow-node").filter(
        has=page.locator(".jp-flow-node-label", has_text="map:square")).first.click()
    details = view.locator(".jp-flow-details")
    expect(details.locator(".jp-flow-details-title")).to_have_text("map:square")
    for index in range(3):
        chip = details.get_by_role("button", name=f"select upstream op square[{index}]")
        expect(chip).to_have_text(f"square[{index}]")
    details.get_by_role("button", name="select upstream op square[2]").click()
    expect(details.locator(".jp-flow-details-title")).to_have_text("square[2]")
    page.close()
