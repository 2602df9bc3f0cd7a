"""Where artifacts live and how their files are written, read, listed and removed.

``{root}/{digest[:2]}/{digest}`` on a local directory (driven with ``os`` directly: this
runs once per op output on every Dask worker) or on any fsspec filesystem (imported only
for other URLs). Writers put a file under a ``.tmp-<uuid>`` name in the same directory and
rename it, so a reader never sees half an artifact; object stores get the whole file in
one ``pipe_file``, which is atomic there. Files and directories are created private to
their owner (0600/0700), or readable by the group of a group-accessible root (a team store).
"""

from __future__ import annotations

import os
import re
import stat
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jupyter_flow.artifacts.format import _DIGEST_RE, validate_digest
from jupyter_flow.core.errors import ArtifactMissing

TEMP_PREFIX = ".tmp-"
CORRUPT_PREFIX = ".corrupt-"
_SHARD_RE = re.compile(r"[0-9a-f]{2}")
# Protocols whose single-object writes are atomic, so pipe_file needs no temp + rename.
_ATOMIC_PUT_PROTOCOLS = frozenset(
    {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oci", "oss", "r2", "memory"}
)


class ArtifactFiles:
    """The files of an artifact store: names, atomic writes, reads, listing, removal.

    ``url`` is a local path, ``file://``, ``memory://`` or any fsspec URL;
    ``storage_options`` go to fsspec. What the bytes mean is ``ArtifactStore``'s business.
    """

    def __init__(self, url: str, **storage_options: Any):
        self.storage_options = storage_options
        self._fs: Any = None
        self._modes: tuple[int, int] | None = None
        if _is_local_url(url) and not storage_options:
            if url.startswith(("file://", "local://")):
                url = url.split("://", 1)[1]
            self._local: str | None = os.path.abspath(os.path.expanduser(url))
            # Workers may run elsewhere with another cwd: hand them an absolute path.
            self.url = self._local
            self._root = self._local
        else:
            self._local = None
            self.url = url
            from fsspec.core import url_to_fs

            self._fs, self._root = url_to_fs(url, **storage_options)
            self._root = self._root.rstrip("/")

    def path(self, digest: str) -> str:
        """Where the artifact lives on the store's filesystem (no I/O)."""
        validate_digest(digest)
        return f"{self._root}/{digest[:2]}/{digest}"

    def uri(self, digest: str) -> str:
        """A URL for the artifact that other processes can open (``file://`` locally).

        >>> ArtifactFiles("/data/art").uri("ab" * 32)
        'file:///data/art/ab/abababababababababababababababababababababababababababababababab'
        """
        path = self.path(digest)
        if self._local is not None:
            return Path(path).as_uri()
        return self._fs.unstrip_protocol(path)

    def _write(self, digest: str, parts: Sequence, size: int) -> None:
        path = self.path(digest)
        if self._local is not None:
            self._write_local(path, parts, size)
            return
        try:
            if self._fs.size(path) == size:
                return
        except FileNotFoundError:
            pass
        if _protocols(self._fs) & _ATOMIC_PUT_PROTOCOLS:
            self._fs.pipe_file(path, b"".join(parts))
            return
        directory = path.rpartition("/")[0]
        self._fs.makedirs(directory, exist_ok=True)
        temp = f"{directory}/{TEMP_PREFIX}{uuid.uuid4().hex}"
        try:
            with self._fs.open(temp, "wb") as file:
                for part in parts:
                    file.write(part)
            self._fs.mv(temp, path)
        except BaseException:
            _ignore_missing(self._fs.rm_file, temp)
            raise

    def _local_modes(self) -> tuple[int, int]:
        """(directory mode, file mode) for new files: private to their owner, unless an
        administrator made the store's root group-accessible (a team store), whose group
        may then read them. The root is created 0700 when it does not exist."""
        if self._modes is None:
            try:
                root_mode = os.stat(self._root).st_mode
            except FileNotFoundError:
                _make_private_dirs(self._root, 0o700)
                root_mode = os.stat(self._root).st_mode
            self._modes = (0o2770, 0o640) if root_mode & stat.S_IRWXG else (0o700, 0o600)
        return self._modes

    def _write_local(self, path: str, parts: Sequence, size: int) -> None:
        try:
            # Same size means same bytes unless it was damaged; damage is caught on read,
            # which moves the bad file aside so the recomputed value lands here again.
            if os.stat(path).st_size == size:
                return
        except FileNotFoundError:
            pass
        dir_mode, file_mode = self._local_modes()
        directory = os.path.dirname(path)
        temp = os.path.join(directory, TEMP_PREFIX + uuid.uuid4().hex)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(temp, flags, file_mode)
        except FileNotFoundError:
            _make_private_dirs(directory, dir_mode)
            fd = os.open(temp, flags, file_mode)
        try:
            os.fchmod(fd, file_mode)  # whatever the umask
            with os.fdopen(fd, "wb") as file:
                for part in parts:
                    file.write(part)
            os.replace(temp, path)  # atomic: readers see nothing or the whole file
        except BaseException:
            _ignore_missing(os.unlink, temp)
            raise

    def _read(self, digest: str, length: int | None = None, writable: bool = False) -> bytes | bytearray:
        """The file's bytes (the first ``length`` only, if given); ``writable`` asks for a
        bytearray so that decoders (numpy) can use the buffer without copying it."""
        path = self.path(digest)
        try:
            if self._local is not None:
                with open(path, "rb") as file:
                    if length is not None:
                        return file.read(length)
                    if not writable:
                        return file.read()
                    data = bytearray(os.fstat(file.fileno()).st_size)
                    del data[file.readinto(data) :]
                    data += file.read()  # in case it grew: the hash check decides
                    return data
            if length is None:
                return self._fs.cat_file(path)
            return self._fs.cat_file(path, start=0, end=length)
        except FileNotFoundError:
            raise self._missing(digest) from None

    def _missing(self, digest: str) -> ArtifactMissing:
        return ArtifactMissing(
            f"artifact {digest} is not in the store at {self.url}; the op that produced it "
            "will be recomputed. If this keeps happening, check that the client and all "
            "workers use the same artifacts location (JUPYTER_FLOW_ARTIFACTS).",
            digest,
        )

    def exists(self, digest: str) -> bool:
        path = self.path(digest)
        if self._local is not None:
            return os.path.isfile(path)
        return self._fs.isfile(path)

    def size(self, digest: str) -> int:
        """Bytes of the stored file (what the digest covers)."""
        path = self.path(digest)
        try:
            if self._local is not None:
                return os.stat(path).st_size
            return self._fs.size(path)
        except FileNotFoundError:
            raise ArtifactMissing(f"artifact {digest} is not in the store at {self.url}", digest) from None

    def modified(self, digest: str) -> datetime:
        """When the artifact's file was last written (UTC)."""
        path = self.path(digest)
        try:
            if self._local is not None:
                stamp = os.stat(path).st_mtime
            else:
                stamp = _detail_mtime(self._fs.info(path))
        except FileNotFoundError:
            raise ArtifactMissing(f"artifact {digest} is not in the store at {self.url}", digest) from None
        # A filesystem that keeps no times: treat the file as new rather than ancient.
        return datetime.fromtimestamp(stamp if stamp is not None else time.time(), timezone.utc)

    def delete(self, digest: str) -> bool:
        """Remove an artifact; ``False`` if there was none."""
        path = self.path(digest)
        try:
            if self._local is not None:
                os.unlink(path)
            elif self._fs.exists(path):
                self._fs.rm_file(path)
            else:
                return False  # S3 deletes a missing key without a word: ask first
        except FileNotFoundError:
            return False
        return True

    def _quarantine(self, digest: str) -> bool:
        """Move a corrupt file out of the way so a recomputed value can be stored."""
        path = self.path(digest)
        aside = f"{path.rpartition('/')[0]}/{CORRUPT_PREFIX}{digest}-{uuid.uuid4().hex[:8]}"
        try:
            if self._local is not None:
                os.replace(path, aside)
            else:
                self._fs.mv(path, aside)
        except FileNotFoundError:
            return False
        return True


    def _entries(self) -> Iterator[tuple[str, str, float | None]]:
        """(shard, file name, mtime or None) for every file in a shard directory."""
        if self._local is not None:
            try:
                shards = sorted(e.name for e in os.scandir(self._root) if e.is_dir())
            except FileNotFoundError:
                return
            for shard in shards:
                if not _SHARD_RE.fullmatch(shard):
                    continue
                try:
                    entries = sorted(os.scandir(os.path.join(self._root, shard)), key=lambda e: e.name)
                except FileNotFoundError:
                    continue
                for entry in entries:
                    yield shard, entry.name, None if entry.name[0] != "." else _mtime(entry)
            return
        try:
            found = self._fs.find(self._root, maxdepth=2, detail=True)
        except FileNotFoundError:
            return
        for path, detail in sorted(found.items()):
            shard, _, name = path[len(self._root) :].strip("/").rpartition("/")
            if _SHARD_RE.fullmatch(shard):
                yield shard, name, _detail_mtime(detail)

    def digests(self) -> Iterator[str]:
        """Every stored artifact's digest (temporary and quarantined files excluded)."""
        for shard, name, _ in self._entries():
            if name.startswith(shard) and _DIGEST_RE.fullmatch(name):
                yield name

    def cleanup_temp(self, older_than_s: float = 3600) -> int:
        """Remove temp files of writers that died (and quarantined corrupt files) older than
        ``older_than_s`` seconds; returns how many were removed."""
        cutoff = time.time() - older_than_s
        removed = 0
        for shard, name, mtime in self._entries():
            if not name.startswith((TEMP_PREFIX, CORRUPT_PREFIX)):
                continue
            if mtime is None or mtime > cutoff:
                continue  # possibly a live writer (or a filesystem without mtimes)
            path = f"{self._root}/{shard}/{name}"
            if self._local is not None:
                removed += _ignore_missing(os.unlink, path)
            else:
                removed += _ignore_missing(self._fs.rm_file, path)
        return removed


def _make_private_dirs(directory: str, mode: int) -> None:
    """``os.makedirs`` with ``mode`` on each directory it creates, whatever the umask."""
    missing = []
    path = directory
    while path and not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for path in reversed(missing):
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            continue
        os.chmod(path, mode)


def _is_local_url(url: str) -> bool:
    if "::" in url:
        return False
    return "://" not in url or url.startswith(("file://", "local://"))


def _protocols(fs: Any) -> set[str]:
    protocol = fs.protocol
    return {protocol} if isinstance(protocol, str) else set(protocol)


def _ignore_missing(remove, path: str) -> bool:
    try:
        remove(path)
    except FileNotFoundError:
        return False
    return True


def _mtime(entry: os.DirEntry) -> float | None:
    try:
        return entry.stat().st_mtime
    except FileNotFoundError:
        return None


def _detail_mtime(detail: dict[str, Any]) -> float | None:
    for key in ("mtime", "LastModified", "last_modified", "created", "updated"):
        value = detail.get(key)
        if value is None:
            continue
        if isinstance(value, (int, float)):
            return float(value)
        if hasattr(value, "timestamp"):
            return value.timestamp()
    return None
