"""Remote tracebacks that name the files their frames came from.

cloudpickle ships functions that workers cannot import (those defined in notebooks, and
the user's own modules) by value, and names their code ``<dynamic-code>``, so a worker's
traceback through a helper reads ``File "<dynamic-code>", line 3, in helper``. The
submitting process still has those functions: :func:`localize` finds the function by name
and line among those the op reaches, and writes its real file name and source line back.
"""

from __future__ import annotations

import inspect
import linecache
import re
import types
from typing import Any

_DYNAMIC = re.compile(r'^(?P<indent>\s*)File "<dynamic-code>", line (?P<line>\d+), in (?P<name>.+?)\s*$')
_MAX_CODES = 2000  # enough for any real op; bounds the walk through its globals


def localize(text: str | None, op: Any) -> str | None:
    """``text`` with ``<dynamic-code>`` frames renamed to the file of the matching function.

    >>> localize('  File "x.py", line 1, in f\\n', None)
    '  File "x.py", line 1, in f\\n'
    """
    if not text or "<dynamic-code>" not in text or op is None:
        return text
    try:
        index = _code_index(getattr(op, "func", None))
    except Exception:  # an odd object in the op's globals: keep the traceback as it came
        return text
    out: list[str] = []
    lines = text.splitlines(keepends=True)
    for position, line in enumerate(lines):
        match = _DYNAMIC.match(line)
        if not match:
            out.append(line)
            continue
        number, name = int(match.group("line")), match.group("name")
        filename = _find(index, name, number)
        if filename is None:
            out.append(line)
            continue
        out.append(f'{match.group("indent")}File "{filename}", line {number}, in {name}\n')
        following = lines[position + 1] if position + 1 < len(lines) else ""
        source = linecache.getline(filename, number).strip()
        indented = following.startswith(match.group("indent") + "  ")
        source_follows = indented and not following.strip().startswith("File ")
        if source and not source_follows:
            out.append(f'{match.group("indent")}  {source}\n')
    return "".join(out)


def _find(index: dict[str, list[tuple[str, int, int]]], name: str, number: int) -> str | None:
    for filename, first, last in index.get(name, ()):
        if first <= number <= last:
            return filename
    return None


def _code_index(func: Any) -> dict[str, list[tuple[str, int, int]]]:
    """co_name -> [(file, first line, last line)] of the code ``func`` can reach."""
    index: dict[str, list[tuple[str, int, int]]] = {}
    seen: set[int] = set()
    stack: list[Any] = [func]
    count = 0
    while stack and count < _MAX_CODES:
        obj = stack.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (staticmethod, classmethod)):
            stack.append(obj.__func__)
        elif isinstance(obj, property):
            stack.extend((obj.fget, obj.fset, obj.fdel))
        elif isinstance(obj, types.MethodType):
            stack.append(obj.__func__)
        elif isinstance(obj, types.FunctionType):
            if not _shipped_by_value(obj):
                continue  # importable code: its frames already carry their file
            count += 1
            _add_code(obj.__code__, index)
            stack.extend(cell.cell_contents for cell in (obj.__closure__ or ()) if _filled(cell))
            names = _all_names(obj.__code__)
            globals_ = obj.__globals__
            stack.extend(globals_[name] for name in names if name in globals_)
        elif inspect.isclass(obj) and _shipped_by_value(obj):
            count += 1
            stack.extend(vars(obj).values())
    return index


def _add_code(code: types.CodeType, index: dict) -> None:
    lines = [line for _, _, line in code.co_lines() if line is not None]
    last = max(lines, default=code.co_firstlineno)
    index.setdefault(code.co_name, []).append((code.co_filename, code.co_firstlineno, last))
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _add_code(const, index)


def _all_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _all_names(const)
    return names


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def _shipped_by_value(obj: Any) -> bool:
    """Defined in a notebook or in the user's own modules (what cloudpickle sends by value)."""
    from ..core.keys import is_local_module

    module = getattr(obj, "__module__", None)
    if module in (None, "__main__", "__mp_main__"):
        return True
    if module == "builtins" or module.partition(".")[0] == "jupyter_flow":
        return False
    return is_local_module(module)
