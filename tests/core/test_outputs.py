"""The reserved output names (core/outputs.py) that the worker writes and the kernel reads."""

from __future__ import annotations

import json

from jupyter_flow.core.outputs import DISPLAYS, VALUE, restore_modules, stored_outputs


def test_what_a_task_showed_is_not_one_of_its_results():
    outputs = {"return": "ab12", DISPLAYS: "cd34"}
    assert stored_outputs(outputs) == {"return": "ab12"}
    assert stored_outputs(None) == {}
    assert VALUE == "_"  # what a cell's last expression is bound to: shown, never stored


def test_module_outputs_are_imported_again_by_name():
    restored = restore_modules({"outputs": [], "modules": {"js": "json"}})
    assert restored == {"js": json}
    assert restore_modules(None) == {}
