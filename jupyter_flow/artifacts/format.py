"""The artifact file format: a magic line, a JSON header, the serializer's payload.

::

    jupyter-flow-artifact/1\\n
    {"serializer":"json","serializer_version":"2.0.9","type":"builtins.dict"}\\n
    <payload written by the serializer>

The file is named by the sha256 of all of it. A signature (``"sig"`` in the header) covers
the header without ``sig`` and the payload (``_signed_message``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jupyter_flow.artifacts import serializers
from jupyter_flow.core.errors import ArtifactCorrupt

MAGIC = b"jupyter-flow-artifact/1\n"
HEADER_LIMIT = 4096  # magic + header line; type names longer than this are cut
SEALED = "fernet"  # the header's "sealed" value: the payload is a Fernet token
_SIG_CONTEXT = b"jupyter-flow-artifact-sig/2\n"
_DIGEST_RE = re.compile(r"[0-9a-f]{64}")


def validate_digest(digest: object) -> str:
    """Return ``digest`` if it is 64 lowercase hex characters, else raise ``ValueError``.

    Every digest that reaches a path goes through here, so no caller-supplied string can
    point outside the store.

    >>> validate_digest("0" * 64) == "0" * 64
    True
    >>> validate_digest("../etc/passwd")
    Traceback (most recent call last):
    ...
    ValueError: '../etc/passwd' is not an artifact hash (64 lowercase hex characters)
    """
    if type(digest) is not str or not _DIGEST_RE.fullmatch(digest):
        raise ValueError(f"{digest!r:.80} is not an artifact hash (64 lowercase hex characters)")
    return digest


@dataclass(frozen=True)
class ArtifactInfo:
    """What the store knows about one artifact (``size`` counts the whole stored file)."""

    digest: str
    size: int
    serializer: str
    serializer_version: str
    type: str
    uri: str
    signer: str | None = None  # key id of the producer, for values that are pickled


def _header_json(header: dict[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def _header_line(header: dict[str, Any]) -> bytes:
    return MAGIC + _header_json(header) + b"\n"


def _signed_start(header: dict[str, Any]) -> Any:
    """A sha256 fed the header without its ``sig``; the payload follows."""
    unsigned = {name: value for name, value in header.items() if name != "sig"}
    return hashlib.sha256(_SIG_CONTEXT + _header_json(unsigned) + b"\n")


def _signed_message(header: dict[str, Any], payload: Sequence) -> bytes:
    """What a signature covers: the sha256 of the header (without ``sig``) and the payload."""
    digest = _signed_start(header)
    for part in payload:
        digest.update(part)
    return digest.digest()


def _needs_signature(header: dict[str, Any]) -> bool:
    """Sealed artifacts, and those whose serializer may run code when loading (or is unknown)."""
    if header.get("sealed"):
        return True
    try:
        return serializers.get_serializer(str(header.get("serializer"))).executes_code
    except KeyError:
        return True


def _parse_header(data: bytes, digest: str) -> tuple[dict[str, Any], int]:
    """The header dict and the offset where the payload starts."""
    end = data.find(b"\n", len(MAGIC), HEADER_LIMIT)
    if not data.startswith(MAGIC) or end < 0:
        raise ArtifactCorrupt(
            f"artifact {digest} has no jupyter_flow header; it was not written by this store. "
            "Delete it; its producer will be recomputed.",
            digest,
        )
    try:
        header = json.loads(data[len(MAGIC) : end])
    except ValueError as exc:
        raise ArtifactCorrupt(f"artifact {digest} has an unreadable header ({exc})", digest) from exc
    return header, end + 1
