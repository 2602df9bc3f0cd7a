"""What a request may carry and how much a response gives: every limit of the REST API.

Kept in one place so the handlers, the service and openapi.json agree (a test checks the
document against these values). Bodies are checked before anything is written, so a
request over a limit gets a 4xx naming the field and the limit, and records nothing.

>>> parse_json_body(b'{"name": "sweep"}')
{'name': 'sweep'}
>>> parse_json_body(b'{"name": "a\\\\u0000b"}')
Traceback (most recent call last):
...
jupyter_flow.server.errors.Unprocessable: 'name' contains a NUL character (\\u0000); remove it
"""

from __future__ import annotations

import json
import math
from typing import Any

from jupyter_flow.server.errors import PayloadTooLarge, Unprocessable

#: Request bodies: a batch request is a few KiB; anything near this is a mistake.
MAX_BODY_BYTES = 1024 * 1024
#: Nesting of objects and arrays in a request body (a parameter value is rarely 3 deep).
MAX_JSON_DEPTH = 32
#: Names stored in String(255) columns: run names, cluster profiles, parameter names.
MAX_NAME_LENGTH = 255
#: Schedule names (String(200) in the store).
MAX_SCHEDULE_NAME_LENGTH = 200
#: Cron expressions and IANA time zone names (String(120), String(64) in the store).
MAX_CRON_LENGTH = 120
MAX_TIMEZONE_LENGTH = 64
#: Notebook paths (PATH_MAX on Linux).
MAX_PATH_LENGTH = 4096
#: Run, task and graph ids in URLs (ids are 26 characters; artifact hashes 64).
MAX_ID_LENGTH = 128
#: Free-text query parameters (the ``name`` and ``notebook`` filters, cursors).
MAX_QUERY_LENGTH = 1024
#: Notebook executions one batch request may start (the grid's cartesian product).
MAX_BATCH_POINTS = 10_000
#: Concurrent notebook executions of one batch.
MAX_BATCH_PARALLEL = 64
#: ``limit`` of one page of runs or graphs.
MAX_PAGE = 500
#: Artifact previews: default and largest ``max_bytes``.
PREVIEW_DEFAULT = 64 * 1024
PREVIEW_MAX = 1024 * 1024
#: Characters of each task log (stdout, stderr, traceback) one response carries.
LOG_LIMIT = 256 * 1024
#: Tasks in one lineage answer.
LINEAGE_LIMIT = 2000


def field_name(path: tuple[str | int, ...]) -> str:
    """``('grid', 'lr', 2)`` -> ``grid.lr[2]``; the body itself is ``(body)``."""
    if not path:
        return "(body)"
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            shown = part if len(part) <= 40 else part[:40] + "…"
            text += f".{shown}" if text else shown
    return text


def _reject_constant(name: str) -> Any:
    raise Unprocessable(f"the request body contains {name}, which JSON does not allow; send a number or null")


def parse_json_body(raw: bytes, *, max_bytes: int = MAX_BODY_BYTES) -> Any:
    """The JSON value of a request body, checked against the limits above.

    Refused: bodies over ``max_bytes`` (413), bodies that are not UTF-8 JSON, nested deeper
    than ``MAX_JSON_DEPTH``, or holding NaN/Infinity or a NUL character anywhere (422; a
    PostgreSQL store cannot hold NUL in text or NaN in JSON). An empty body is ``None``.
    """
    if len(raw) > max_bytes:
        raise PayloadTooLarge(
            f"the request body has {len(raw)} bytes; the limit is {max_bytes} bytes"
        )
    if not raw.strip():
        return None
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        # The C parser gives up near Python's recursion limit, long before the body ends.
        raise Unprocessable(
            f"the request body is nested too deeply; the limit is {MAX_JSON_DEPTH} levels"
        ) from None
    except (ValueError, UnicodeDecodeError) as err:
        raise Unprocessable(f"the request body is not valid JSON ({str(err)[:120]})") from None
    check_json_value(value)
    return value


def check_json_value(value: Any, path: tuple[str | int, ...] = ()) -> None:
    """Walk a parsed JSON value without recursion: depth, NUL characters, finite numbers."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, (dict, list)):
            if len(where) >= MAX_JSON_DEPTH:
                raise Unprocessable(
                    f"{field_name(where)!r} is nested too deeply; the limit is {MAX_JSON_DEPTH} levels"
                )
            if isinstance(item, dict):
                for key, child in item.items():
                    problem = _text_problem(key)
                    if problem:
                        raise Unprocessable(f"a key in {field_name(where)!r} {problem}")
                    stack.append((child, (*where, key)))
            else:
                stack.extend((child, (*where, index)) for index, child in enumerate(item))
        elif isinstance(item, str):
            problem = _text_problem(item)
            if problem:
                raise Unprocessable(f"{field_name(where)!r} {problem}")
        elif isinstance(item, float) and not math.isfinite(item):
            raise Unprocessable(f"{field_name(where)!r} is a number too large for JSON ({item})")


def _text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored as text (SQLite and PostgreSQL take UTF-8 without NUL)."""
    if "\x00" in text:
        return "contains a NUL character (\\u0000); remove it"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "contains an unpaired surrogate (\\ud800-\\udfff), which is not text; remove it"
    return None


def check_length(value: str, field: str, limit: int) -> str:
    """``value`` if it has at most ``limit`` characters; else a 422 naming ``field``."""
    if len(value) > limit:
        raise Unprocessable(
            f"{field!r} has {len(value)} characters; the limit is {limit}"
        )
    return value
