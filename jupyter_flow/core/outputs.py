"""The names an op's stored outputs reserve, shared by the worker that writes them and the
kernel, engine and CLI that read them back.

Besides its own outputs, a task stores what it showed while running (its printed text,
displays and figures, as Jupyter outputs) under :data:`DISPLAYS`; an output named
:data:`VALUE` is the displayed value of a cell's last expression, shown and never stored.

>>> stored_outputs({"return": "ab12", DISPLAYS: "cd34"})
{'return': 'ab12'}
"""

from __future__ import annotations

import importlib
import types
from typing import Any

DISPLAYS = "__displays__"  # reserved output name: the task's recorded outputs (a JSON artifact)
VALUE = "_"  # an output named "_" is the op's displayed value: shown, never stored
RESERVED = frozenset({DISPLAYS})


def stored_outputs(outputs: dict | None) -> dict:
    """An op's outputs without the reserved record entries (what ``result()`` and hydration use)."""
    return {name: digest for name, digest in (outputs or {}).items() if name not in RESERVED}


def restore_modules(payload: Any) -> dict[str, types.ModuleType]:
    """The module outputs a record names, imported here."""
    return {name: importlib.import_module(module) for name, module in ((payload or {}).get("modules") or {}).items()}
