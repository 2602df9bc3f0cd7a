"""%%flow --map cells behave like the loop a person would write in plain Jupyter."""

from __future__ import annotations

import re

from .conftest import text_of

LAST_RUN = "last_run()"


def each_status(kernel, name: str) -> dict:
    rows = kernel.value(f"[[t.name, t.index, t.status] for t in {LAST_RUN}.tasks]")
    return {index: status for task, index, status in rows if task == f"{name}.each"}


def printed_order(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"element (\d+)", text)]


def test_growing_an_ordinary_list_runs_only_the_new_element(kernel):
    kernel.ok("grow_items = [1, 2, 3]")
    cell = "%%flow grown --map grow_items\nprint('element', grow_items)\ntwice = grow_items * 2"
    kernel.ok(cell)
    assert each_status(kernel, "grown") == {0: "SUCCESS", 1: "SUCCESS", 2: "SUCCESS"}
    kernel.ok("grow_items = [1, 2, 3, 4]")
    kernel.ok(cell)
    assert each_status(kernel, "grown") == {0: "CACHED", 1: "CACHED", 2: "CACHED", 3: "SUCCESS"}
    assert kernel.value("twice") == [2, 4, 6, 8]
    restored = kernel.ok(cell)
    assert set(each_status(kernel, "grown").values()) == {"CACHED"}
    assert printed_order(restored) == [1, 2, 3, 4]


def test_a_fully_cached_map_cell_replays_every_element_in_order(kernel):
    kernel.ok("%%flow ordered_source\nordered_items = list(range(5))")
    cell = ("%%flow ordered_map --map ordered_items\nimport time\n"
            "time.sleep(0.05 * (5 - ordered_items))\nprint('element', ordered_items)\n"
            "seen = ordered_items")
    live = text_of(kernel.run(cell))
    assert printed_order(live) == [0, 1, 2, 3, 4]
    restored = kernel.ok(cell)
    assert kernel.value(f"[t.status for t in {LAST_RUN}.tasks if t.name == 'ordered_map']") == ["CACHED"]
    assert printed_order(restored) == [0, 1, 2, 3, 4]
    assert kernel.value("seen") == [0, 1, 2, 3, 4]
