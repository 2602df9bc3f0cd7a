"""A notebook's declared parameters, read without running it, and the check of given values.

Declarations are ``jf.param(...)`` calls anywhere in the notebook (``jf.param``,
``jupyter_flow.param``, or ``param`` imported from jupyter_flow) and plain assignments in
its ``parameters``-tagged cell(s) (``lr = 0.1``: a float parameter). Values are checked
with ``Parameter.coerce`` — the rule ``jf.param`` applies to the value papermill injects —
so the CLI, the REST API, schedules and the launch form accept exactly what a run accepts.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from ..core.errors import FlowError
from ..kernel.params import Parameter

#: Declared types the form and the API know, by their names.
TYPES: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str}
_TYPE_NAMES = {kind: name for name, kind in TYPES.items()}
_FIELDS = ("name", "type", "default", "min", "max", "choices", "help")


def read_notebook(notebook: str | Path):
    """``(absolute path, nbformat notebook)``; FlowError if missing or unreadable."""
    import nbformat

    path = Path(notebook)
    if not path.is_file():
        raise FlowError(f"notebook {str(path)!r} not found")
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as err:  # nbformat raises several kinds for a bad file
        raise FlowError(f"{str(path)!r} is not a readable notebook: {err}") from None
    return path.resolve(), nb


def _python_source(source: str) -> str | None:
    """A cell's source with IPython syntax blanked out (line numbers kept); None when the
    cell is a cell magic whose body is not Python (``%%bash``)."""
    lines = source.splitlines()
    if lines and lines[0].lstrip().startswith("%%"):
        if not lines[0].lstrip().startswith("%%flow"):
            return None
        lines = [""] + lines[1:]   # a %%flow body is Python
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in lines)


def _parse(source: str) -> ast.Module | None:
    text = _python_source(source)
    if text is None:
        return None
    try:
        return ast.parse(text)
    except SyntaxError:
        return None


def _literal(node: ast.AST | None, known: dict[str, Any]) -> tuple[bool, Any]:
    """(True, value) for a literal, or a name assigned a literal earlier; (False, None) else."""
    if node is None:
        return False, None
    if isinstance(node, ast.Name) and node.id in known:
        return True, known[node.id]
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _kind(default: Any, given: Any, low: Any, high: Any) -> type | None:
    """The parameter's type as ``jf.param`` decides it (explicit ``type=``, else the
    default's class; an int with a float bound is a float)."""
    kind = given if given is not None else type(default)
    if kind is int and any(isinstance(bound, float) for bound in (low, high)):
        kind = float
    return kind if kind in _TYPE_NAMES else None


class _Aliases:
    """Names under which a notebook reaches ``jupyter_flow`` and ``jupyter_flow.param``."""

    def __init__(self):
        self.modules = {"jf", "jupyter_flow"}   # the documented spellings, imported or not
        self.functions: set[str] = set()

    def learn(self, tree: ast.Module) -> None:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "jupyter_flow":
                        self.modules.add(alias.asname or alias.name)
            elif isinstance(node, ast.ImportFrom) and node.module in ("jupyter_flow", "jupyter_flow.kernel.params"):
                for alias in node.names:
                    if alias.name == "param":
                        self.functions.add(alias.asname or alias.name)

    def is_param(self, call: ast.Call) -> bool:
        func = call.func
        if isinstance(func, ast.Attribute):
            return func.attr == "param" and isinstance(func.value, ast.Name) and func.value.id in self.modules
        return isinstance(func, ast.Name) and func.id in self.functions


def _from_call(call: ast.Call, known: dict[str, Any]) -> dict | None:
    """A declaration from a ``jf.param(name, default, min=…, …)`` call; None if its name
    is not a literal string."""
    args = {kw.arg: kw.value for kw in call.keywords if kw.arg}
    for position, field in enumerate(("name", "default")):
        if position < len(call.args):
            args.setdefault(field, call.args[position])
    ok, name = _literal(args.get("name"), {})
    if not ok or not isinstance(name, str) or not name.isidentifier():
        return None
    _, default = _literal(args.get("default"), known)
    low = _literal(args.get("min"), known)[1]
    high = _literal(args.get("max"), known)[1]
    choices = _literal(args.get("choices"), known)[1]
    given = args.get("type")
    given = TYPES.get(given.id) if isinstance(given, ast.Name) else None
    kind = _kind(default, given, low, high)
    help_text = _literal(args.get("help"), known)[1]
    return {"name": name, "type": kind, "default": default, "min": low, "max": high,
            "choices": list(choices) if isinstance(choices, (list, tuple)) else None,
            "help": help_text if isinstance(help_text, str) else None}


def _assignments(tree: ast.Module) -> list[tuple[str, ast.AST | None]]:
    """Names a cell assigns at top level, in order, with the value assigned (None when it
    is one part of an unpacking: ``a, b = 1, 2``) — what papermill's injected cell can
    override."""
    found: list[tuple[str, ast.AST | None]] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value = [stmt.target], stmt.value
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Name):
                found.append((target.id, value))
            else:
                found.extend((node.id, None) for node in ast.walk(target) if isinstance(node, ast.Name))
    return found


def scan(nb) -> tuple[bool, list[dict]]:
    """(whether the notebook has a ``parameters`` cell, its declarations with Python types)."""
    cells = []
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        tree = _parse(cell.source)
        if tree is not None:
            cells.append(("parameters" in cell.get("metadata", {}).get("tags", []), tree))
    aliases = _Aliases()
    for _, tree in cells:
        aliases.learn(tree)
    declared: dict[str, dict] = {}
    known: dict[str, Any] = {}   # names assigned a literal in a parameters cell
    for is_parameters, tree in cells:
        if is_parameters:
            for name, value in _assignments(tree):
                if isinstance(value, ast.Call) and aliases.is_param(value):
                    continue   # `lr = jf.param("lr", 0.1)`: the call below declares it
                ok, literal = _literal(value, known)
                if not ok:
                    literal = None
                else:
                    known[name] = literal
                declared.setdefault(name, {"name": name, "type": _kind(literal, None, None, None),
                                           "default": literal, "min": None, "max": None, "choices": None,
                                           "help": None})
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and aliases.is_param(node):
                found = _from_call(node, known)
                if found is not None:
                    # A later declaration replaces an earlier one, as when the cells run.
                    declared[found["name"]] = {**declared.get(found["name"], {}), **found}
    has_parameters = any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells)
    return has_parameters, list(declared.values())


def declared_params(notebook: str | Path) -> list[dict]:
    """The parameters a notebook declares, for forms and for checking values.

    Each is ``{name, type, default, min, max, choices, help}`` with ``type`` one of
    "int", "float", "bool", "str", or None when the default is no such literal (any value
    is accepted then).

    >>> declared_params("train.ipynb")     # doctest: +SKIP
    [{'name': 'lr', 'type': 'float', 'default': 0.1, 'min': 0, 'max': 1, 'choices': None, 'help': None}]
    """
    _, nb = read_notebook(notebook)
    _, declared = scan(nb)
    return [
        {**{key: _jsonable(entry.get(key)) for key in _FIELDS}, "type": _TYPE_NAMES.get(entry["type"])}
        for entry in declared
    ]


def check_names(path: Path, has_parameters: bool, declared: set[str], names: set[str]) -> None:
    """FlowError if values are given for names the notebook cannot take."""
    if not names:
        return
    if not has_parameters:
        raise FlowError(
            f"notebook {path.name!r} has no cell tagged 'parameters', so it takes no parameters "
            f"(got {sorted(names)}); tag the cell that sets the defaults"
        )
    unknown = sorted(names - declared)
    if unknown:
        raise FlowError(
            f"unknown parameter(s) {unknown} for notebook {path.name!r}; its parameters cell "
            f"defines {sorted(declared)}"
        )


def _parameter(entry: dict) -> Parameter | None:
    if entry["type"] is None:
        return None
    choices = entry.get("choices")
    return Parameter(entry["name"], entry.get("default"), entry["type"], entry.get("min"), entry.get("max"),
                     tuple(choices) if choices is not None else None, entry.get("help"))


def validate_params(
    notebook: str | Path, params: dict[str, Any] | None = None, grid: dict[str, list] | None = None
) -> tuple[dict[str, Any], dict[str, list]]:
    """Check ``params`` and every ``grid`` value against the notebook's declarations.

    Returns ``(params, grid)`` with each value coerced to its parameter's type; raises
    FlowError naming the parameter (an unknown name, a value of the wrong type, out of
    bounds or not among the choices, or a secret passed back redacted).

    >>> validate_params("train.ipynb", {"lr": "0.5"}, {"epochs": [1, 2]})    # doctest: +SKIP
    ({'lr': 0.5}, {'epochs': [1, 2]})
    >>> validate_params("train.ipynb", {"lr": 5})                            # doctest: +SKIP
    Traceback (most recent call last):
    jupyter_flow.core.errors.FlowError: parameter 'lr' = 5 is above its maximum 1
    """
    from .secrets import check_not_redacted

    path, nb = read_notebook(notebook)
    params, grid = dict(params or {}), dict(grid or {})
    for name, values in grid.items():
        if not isinstance(values, list):
            raise FlowError(f"grid: parameter {name!r} needs a list of values, got {values!r}")
        if not values:
            raise FlowError(f"grid: parameter {name!r} has an empty list of values")
    has_parameters, declared = scan(nb)
    by_name = {entry["name"]: entry for entry in declared}
    check_names(path, has_parameters, set(by_name), set(params) | set(grid))
    check_not_redacted(params, grid)
    checked = {}
    for name, value in params.items():
        parameter = _parameter(by_name[name])
        checked[name] = value if parameter is None else parameter.coerce(value)
    checked_grid = {}
    for name, values in grid.items():
        parameter = _parameter(by_name[name])
        if parameter is None:
            checked_grid[name] = list(values)
            continue
        try:
            checked_grid[name] = [parameter.coerce(value) for value in values]
        except FlowError as err:
            raise FlowError(f"grid: {err}") from None
    return checked, checked_grid
