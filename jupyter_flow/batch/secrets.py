"""Secret parameters of a batch execution, kept out of what is stored about it.

The kernel gets the real values; the stored output notebook (papermill's injected cell,
``metadata.papermill.parameters``, and any output that printed a value) and the recorded
error get ``***`` instead. Run parameters are redacted by the store itself.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..core.errors import FlowError
from ..core.secrets import REDACTED, is_secret, looks_secret, redact, redacted_names, scrub_text
_ASSIGNMENT = re.compile(r"^(\w+)\s*=")


def check_not_redacted(params: dict[str, Any] | None, grid: dict[str, Any] | None) -> None:
    """FlowError if a stored run's redacted parameters are passed back as values.

    >>> check_not_redacted({"api_token": "***"}, None)
    Traceback (most recent call last):
    ...
    jupyter_flow.core.errors.FlowError: parameter 'api_token' is secret and was not stored; pass its value again
    """
    names = redacted_names({**(grid or {}), **(params or {})})
    if len(names) == 1:
        raise FlowError(f"parameter {names[0]!r} is secret and was not stored; pass its value again")
    if names:
        listed = ", ".join(repr(n) for n in names)
        raise FlowError(f"parameters {listed} are secret and were not stored; pass their values again")


def secret_values(point: dict[str, Any]) -> dict[str, Any]:
    """The point's secret values: under names that look secret, or looking secret
    themselves (a URL with a password), by the one rule of ``core.secrets``."""
    return {name: value for name, value in point.items() if is_secret(name, value)}


def _scrub(node: Any, secrets: dict[str, Any]) -> Any:
    if isinstance(node, str):
        return scrub_text(node, secrets)
    if isinstance(node, list):
        return [_scrub(item, secrets) for item in node]
    if isinstance(node, dict):
        return {key: _scrub(item, secrets) for key, item in node.items()}
    return node


def _injected_source(source: str | list[str]) -> str:
    """Papermill's injected-parameters cell with secret assignments replaced."""
    text = "".join(source) if isinstance(source, list) else source
    lines, inside_secret = [], False
    for line in text.splitlines():
        match = _ASSIGNMENT.match(line)
        if match:
            inside_secret = looks_secret(match.group(1))
            if inside_secret:
                lines.append(f"{match.group(1)} = {REDACTED!r}  # secret: not stored")
                continue
        elif inside_secret and line.strip() and not line.startswith("#"):
            continue  # continuation of a secret's value
        lines.append(line)
    return "\n".join(lines)


def redact_notebook(data: bytes, point: dict[str, Any]) -> bytes:
    """An executed notebook (``.ipynb`` bytes) without the point's secret values."""
    if not any(is_secret(name, value) for name, value in point.items()):
        return data
    nb = json.loads(data)
    for cell in nb.get("cells", []):
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            cell["source"] = _injected_source(cell.get("source", ""))
    papermill = nb.get("metadata", {}).get("papermill")
    if isinstance(papermill, dict) and isinstance(papermill.get("parameters"), dict):
        papermill["parameters"] = redact(papermill["parameters"])
    nb = _scrub(nb, secret_values(point))
    return (json.dumps(nb, indent=1, ensure_ascii=False) + "\n").encode()
