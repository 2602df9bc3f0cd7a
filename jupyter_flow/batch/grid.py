"""Parameter points of a batch: ``-p NAME VALUE`` pairs and the cartesian product of a grid file."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from ..core.errors import FlowError


def parse_value(text: str) -> Any:
    """A ``-p`` value as YAML would read it: ``0.1`` → float, ``3`` → int, ``true`` → bool.

    >>> parse_value("0.1"), parse_value("3"), parse_value("adam")
    (0.1, 3, 'adam')
    """
    import yaml

    try:
        return yaml.safe_load(text) if text.strip() else text
    except yaml.YAMLError:
        return text


def load_grid(path: str | Path) -> dict[str, list]:
    """A grid file: a YAML mapping of parameter names to lists of values (or single values)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FlowError(f"grid file {str(path)!r} not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise FlowError(f"grid file {str(path)!r} is not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    if not isinstance(data, dict) or not data:
        raise FlowError(f"grid file {str(path)!r} must be a mapping of parameter names to lists of values")
    grid = {}
    for name, values in data.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise FlowError(f"grid file {str(path)!r}: {name!r} is not a parameter name")
        values = values if isinstance(values, list) else [values]
        if not values:
            raise FlowError(f"grid file {str(path)!r}: parameter {name!r} has an empty list of values")
        grid[name] = values
    return grid


def points(params: dict[str, Any] | None, grid: dict[str, list] | None) -> list[dict[str, Any]]:
    """Every point: the fixed params merged into each element of the grid's product.

    >>> points({"epochs": 3}, {"lr": [0.1, 0.01]})
    [{'epochs': 3, 'lr': 0.1}, {'epochs': 3, 'lr': 0.01}]
    """
    params = dict(params or {})
    if not grid:
        return [params]
    names = list(grid)
    return [{**params, **dict(zip(names, combo))} for combo in itertools.product(*(grid[n] for n in names))]
