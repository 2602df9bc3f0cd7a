"""``jf.file``: a path whose content hash enters cache keys."""

from __future__ import annotations

import hashlib
import os
import threading

from .errors import FlowError

_hash_cache: dict[tuple[str, int, int], str] = {}
_lock = threading.Lock()


class FlowFile(str):
    """A path (a ``str``, so ``open(path)`` works in ops) tracked by content.

    >>> isinstance(FlowFile("data.csv"), str)
    True
    """

    def __new__(cls, path: str | os.PathLike):
        return super().__new__(cls, os.fspath(path))

    def __reduce__(self):
        return (FlowFile, (str(self),))

    def content_hash(self) -> str:
        """sha256 of the file's bytes (remembered while size and mtime are unchanged)."""
        return file_hash(str(self))


def file(path: str | os.PathLike) -> FlowFile:
    """Mark a path as an input whose content is part of the cache key: ``jf.file("data.csv")``."""
    flow_file = FlowFile(path)
    if not os.path.exists(flow_file):
        raise FlowError(f"jf.file: {str(flow_file)!r} does not exist; check the path")
    return flow_file


def file_hash(path: str) -> str:
    try:
        stat = os.stat(path)
    except OSError as err:
        raise FlowError(f"jf.file {path!r} cannot be read: {err.strerror}") from None
    stamp = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    with _lock:
        cached = _hash_cache.get(stamp)
    if cached:
        return cached
    digest = hashlib.sha256()
    if os.path.isdir(path):
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                digest.update(os.path.relpath(full, path).encode())
                with open(full, "rb") as handle:
                    for chunk in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(chunk)
    else:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    value = digest.hexdigest()
    with _lock:
        _hash_cache[stamp] = value
    return value
