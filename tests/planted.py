"""A malicious pickle planted in an artifact store, for the tests that prove it never runs."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

from jupyter_flow.artifacts.store import MAGIC

SECRET = b"s3cr3t"


class Planted:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant(artifacts_dir, marker, serializer: str = "cloudpickle") -> str:
    """Write the pickle in the artifact file format under its correct sha256 name (as someone
    with write access to the artifact directory could); return its digest."""
    header = {"serializer": serializer, "serializer_version": "3.1.1", "type": "builtins.set"}
    data = (MAGIC + json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\n"
            + pickle.dumps(Planted(marker)))
    digest = hashlib.sha256(data).hexdigest()
    path = Path(artifacts_dir) / digest[:2] / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


def files_holding(root, needle: bytes = SECRET) -> list[str]:
    """Every file under ``root`` (database, WAL, artifacts…) whose raw bytes contain ``needle``."""
    return [str(p) for p in Path(root).rglob("*") if p.is_file() and needle in p.read_bytes()]
