"""Previews of pickled artifacts for a process that never unpickles (the Jupyter server).

The server checks the artifact's signature itself (hash and Ed25519: nothing is decoded),
then hands a *trusted* pickle to a throwaway ``python -m jupyter_flow.artifacts.preview``
child: a fresh interpreter with a scrubbed environment (no Jupyter tokens, no server
state), a time limit and a memory limit, which applies the same trust rule again with the
user's keyring and prints the preview as JSON. What runs there is what the user's own
kernel would run on ``result()``; an untrusted pickle is never decoded anywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any

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
