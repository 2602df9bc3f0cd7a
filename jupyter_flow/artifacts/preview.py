"""Bounded previews of artifact values, and of pickled ones for a process that never unpickles.

The sidebar and the REST API show a value as text, an image, a table or its repr, cut to a
size (``ArtifactStore.preview``, with the helpers here).

A Jupyter server never unpickles: it checks the artifact's signature itself (hash and Ed25519: nothing is decoded),
then hands a *trusted* pickle to a throwaway ``python -m jupyter_flow.artifacts.preview``
child: a fresh interpreter with a scrubbed environment (no Jupyter tokens, no server
state), a time limit and a memory limit, which applies the same trust rule again with the
user's keyring and prints the preview as JSON. What runs there is what the user's own
kernel would run on ``result()``; an untrusted pickle is never decoded anywhere.
"""

from __future__ import annotations

import base64
import json
import os
import reprlib
import subprocess
import sys
import tempfile
from typing import Any

PREVIEW_ROWS = 20
PREVIEW_COLUMNS = 100
_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)

PREVIEW_TIMEOUT_S = 30.0
PREVIEW_MEMORY_BYTES = 4 * 2**30
# What the child inherits: enough to find Python, the package and the user's keys.
_KEPT_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "PYTHONPATH", "TZ",
             "VIRTUAL_ENV", "CONDA_PREFIX", "TMPDIR")
# And where an S3 store's credentials and endpoint are (botocore's standard variables): the
# child reads the artifact from the store itself, as the user (who has ~/.aws anyway).
_KEPT_PREFIXES = ("AWS_",)


def _limit_memory() -> None:
    """In the child, before anything is decoded: a runaway value cannot take the machine."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (PREVIEW_MEMORY_BYTES, PREVIEW_MEMORY_BYTES))
    except (ImportError, ValueError, OSError):
        pass


def preview_elsewhere(store, digest: str, limit: int) -> dict[str, Any]:
    """``store.preview(digest)`` for a pickle, computed in a child process."""
    base = {"type": None, "serializer": None, "size": None}
    try:
        info = store.info(digest)
        base = {"type": info.type, "serializer": info.serializer, "size": info.size}
    except Exception:  # described as well as it can be below
        pass
    request = {"url": store.url, "storage_options": store.storage_options, "digest": digest, "limit": limit,
               "keys": str(store.keyring.path) if store.keyring is not None and store.keyring.path else None}
    env = {name: value for name, value in os.environ.items() if name in _KEPT_ENV or name.startswith(_KEPT_PREFIXES)}
    with tempfile.TemporaryDirectory(prefix="jupyter-flow-preview-") as scratch:
        try:
            done = subprocess.run(
                [sys.executable, "-m", "jupyter_flow.artifacts.preview"],
                input=json.dumps(request).encode(), capture_output=True, env=env, cwd=scratch,
                timeout=PREVIEW_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            text = f"<{base['type']}: {base['size']} bytes; decoding it for a preview took over {PREVIEW_TIMEOUT_S:g} s>"
            return {**base, "kind": "repr", "data": text, "truncated": True}
    try:
        return json.loads(done.stdout)
    except ValueError:
        why = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        text = f"<{base['type']}: {base['size']} bytes; it could not be decoded for a preview ({why[0][:300]})>"
        return {**base, "kind": "repr", "data": text, "truncated": True}


def _main() -> None:
    _limit_memory()
    request = json.loads(sys.stdin.buffer.read())
    from jupyter_flow.artifacts.keyring import load_keyring
    from jupyter_flow.artifacts.store import ArtifactStore
    from jupyter_flow.core.errors import ArtifactError

    keyring = load_keyring(request["keys"], create=False) if request.get("keys") else None
    store = ArtifactStore(request["url"], keyring=keyring, **(request.get("storage_options") or {}))
    try:
        preview = store.preview(request["digest"], max_bytes=int(request["limit"]))
    except ArtifactError as err:
        preview = {"type": None, "serializer": None, "size": None, "kind": "untrusted", "data": str(err),
                   "truncated": False}
    sys.stdout.write(json.dumps(preview, default=str))


if __name__ == "__main__":
    _main()


def _fit_encoded(text: str, limit: int) -> str:
    """The longest prefix of ``text`` whose JSON encoding (what the REST API sends) stays
    within ``limit`` characters: a NUL is 1 byte stored but 6 characters sent (``\\u0000``).

    >>> len(json.dumps(_fit_encoded("\\x00" * 1000, 600))) <= 600
    True
    """
    if len(json.dumps(text)) <= limit:
        return text
    low, high = 0, min(len(text), limit)  # the longest prefix that fits is in [low, high)
    while low + 1 < high:
        middle = (low + high) // 2
        if len(json.dumps(text[:middle])) <= limit:
            low = middle
        else:
            high = middle
    return text[:low]


def _text_or_repr(prefix: bytes, limit: int) -> dict[str, Any]:
    prefix = prefix[:limit]
    try:
        text = prefix.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end is not a reason to call it binary.
        if exc.start < len(prefix) - 3:
            return {"kind": "repr", "data": _fit_encoded(repr(prefix[: limit // 4]), limit), "truncated": True}
        text = prefix[: exc.start].decode("utf-8")
    fitted = _fit_encoded(text, limit)
    return {"kind": "text", "data": fitted, "truncated": fitted != text}


def _bytes_preview(payload: bytes, limit: int) -> dict[str, Any]:
    for magic, mime in _IMAGE_MAGIC:
        if payload.startswith(magic) and (len(payload) + 2) // 3 * 4 <= limit:
            return {"kind": "image", "data": {"mime": mime, "base64": base64.b64encode(payload).decode()},
                    "truncated": False}
    return _text_or_repr(payload, limit)


def _bounded_repr(value: object, limit: int) -> tuple[str, bool]:
    shortener = reprlib.Repr()
    shortener.maxstring = shortener.maxother = min(limit, 2000)
    shortener.maxlist = shortener.maxtuple = shortener.maxdict = shortener.maxset = 50
    if type(value).__module__.partition(".")[0] == "numpy":
        import numpy as np

        with np.printoptions(threshold=200, edgeitems=5):
            text = repr(value)
    else:
        text = shortener.repr(value)
    fitted = _fit_encoded(text, limit)
    if fitted != text:
        return _fit_encoded(text, limit - 3) + "...", True
    return text, False


def _table_preview(value: object, limit: int) -> dict[str, Any] | None:
    import pandas as pd

    frame = value.to_frame() if isinstance(value, pd.Series) else value
    if not isinstance(frame, pd.DataFrame):
        return None
    head = frame.iloc[:PREVIEW_ROWS, :PREVIEW_COLUMNS]
    columns = [str(column) for column in head.columns]
    records = json.loads(
        head.set_axis(columns, axis=1).to_json(orient="records", date_format="iso", default_handler=str)
    )
    records = [{key: _shorten(cell) for key, cell in row.items()} for row in records]
    while True:
        table = {
            "columns": columns,
            "records": records,
            "rows": len(records),
            "total_rows": int(frame.shape[0]),
            "total_columns": int(frame.shape[1]),
        }
        if len(json.dumps(table)) <= limit:
            return table
        if not records:
            return None
        records = records[: len(records) // 2]


def _shorten(cell: Any) -> Any:
    if isinstance(cell, str) and len(cell) > 200:
        return cell[:197] + "..."
    return cell
