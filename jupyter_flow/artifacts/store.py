"""A content-addressed artifact store on a local directory or any fsspec filesystem.

Every artifact is one file, ``{root}/{digest[:2]}/{digest}``, named by the sha256 of its
whole content::

    jupyter-flow-artifact/1\\n
    {"serializer":"json","serializer_version":"2.0.9","type":"builtins.dict"}\\n
    <payload written by the serializer>

Writers put a file under a ``.tmp-<uuid>`` name in the same directory and rename it, so
a reader never sees half an artifact, and concurrent writers of one digest are harmless
(they write identical bytes). Object stores get the whole file in one ``pipe_file``,
which is atomic there. Readers re-hash what they read: a file that no longer matches its
name raises :class:`ArtifactCorrupt` and is moved aside, so recomputing its producer
writes a good copy.

Local directories are driven with ``os`` directly (this runs once per op output on
every Dask worker); fsspec is imported only for other URLs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import reprlib
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_flow.artifacts import serializers
from jupyter_flow.core.errors import ArtifactCorrupt, ArtifactError, ArtifactMissing
from jupyter_flow.core.settings import resolve_artifacts_url

MAGIC = b"jupyter-flow-artifact/1\n"
HEADER_LIMIT = 4096  # magic + header line; type names longer than this are cut
TEMP_PREFIX = ".tmp-"
CORRUPT_PREFIX = ".corrupt-"
PREVIEW_ROWS = 20
PREVIEW_COLUMNS = 100
# Pickled artifacts are decoded whole to preview them; above this they are only described.
PREVIEW_DECODE_LIMIT = 64 * 2**20

_DIGEST_RE = re.compile(r"[0-9a-f]{64}")
_SHARD_RE = re.compile(r"[0-9a-f]{2}")
# Protocols whose single-object writes are atomic, so pipe_file needs no temp + rename.
_ATOMIC_PUT_PROTOCOLS = frozenset(
    {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oci", "oss", "r2", "memory"}
)
_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


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


def _header_line(serializer: str, version: str, type_name: str) -> bytes:
    header = {"serializer": serializer, "serializer_version": version, "type": type_name[:1000]}
    return MAGIC + json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\n"


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


class ArtifactStore:
    """Content-addressed storage for op outputs.

    ``url`` is a local path, ``file://``, ``memory://`` or any fsspec URL (default:
    :func:`resolve_artifacts_url`); ``storage_options`` go to fsspec.

    >>> import tempfile
    >>> store = ArtifactStore(tempfile.mkdtemp())
    >>> info = store.put({"accuracy": 0.93})
    >>> info.serializer, store.get(info.digest)
    ('json', {'accuracy': 0.93})
    """

    def __init__(self, url: str | None = None, **storage_options: Any):
        url = resolve_artifacts_url(url)
        self.storage_options = storage_options
        self._fs: Any = None
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

    def __reduce__(self):
        return (_rebuild, (self.url, self.storage_options))

    def __repr__(self) -> str:
        return f"ArtifactStore({self.url!r})"

    # --- names ---------------------------------------------------------------------

    def path(self, digest: str) -> str:
        """Where the artifact lives on the store's filesystem (no I/O)."""
        validate_digest(digest)
        return f"{self._root}/{digest[:2]}/{digest}"

    def uri(self, digest: str) -> str:
        """A URL for the artifact that other processes can open (``file://`` locally).

        >>> ArtifactStore("/data/art").uri("ab" * 32)
        'file:///data/art/ab/abababababababababababababababababababababababababababababababab'
        """
        path = self.path(digest)
        if self._local is not None:
            return Path(path).as_uri()
        return self._fs.unstrip_protocol(path)

    # --- writing -------------------------------------------------------------------

    def _encode_parts(self, value: object) -> tuple[list, ArtifactInfo]:
        serializer, payload = serializers.serialize(value)
        version = serializer.version()
        type_name = serializers.type_name(value)
        parts = [_header_line(serializer.name, version, type_name), *payload]
        hasher = hashlib.sha256()
        for part in parts:
            hasher.update(part)
        digest = hasher.hexdigest()
        info = ArtifactInfo(
            digest=digest,
            size=sum(memoryview(part).nbytes for part in parts),
            serializer=serializer.name,
            serializer_version=version,
            type=type_name,
            uri=self.uri(digest),
        )
        return parts, info

    def encode(self, value: object) -> tuple[bytes, ArtifactInfo]:
        """Serialize ``value`` into the bytes of an artifact file and describe it; no I/O.

        >>> data, info = ArtifactStore("/tmp/unused").encode([1, 2])
        >>> info.serializer, len(data) == info.size
        ('json', True)
        """
        parts, info = self._encode_parts(value)
        return b"".join(parts), info

    def put(self, value: object) -> ArtifactInfo:
        """Store ``value`` (once: an identical artifact already stored is kept) and describe it.

        Raises :class:`SerializationError` when no serializer can write the value.
        """
        parts, info = self._encode_parts(value)
        self._write(info.digest, parts, info.size)
        return info

    def put_encoded(self, data: bytes, digest: str, *, verify: bool = True) -> None:
        """Store bytes made by :meth:`encode` under their digest (checked unless ``verify=False``)."""
        validate_digest(digest)
        if verify and hashlib.sha256(data).hexdigest() != digest:
            raise ArtifactCorrupt(
                f"refusing to store data under {digest}: the data hashes to something else. "
                "Pass the digest that encode() returned with these bytes.",
                digest,
            )
        self._write(digest, (data,), len(data))

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

    @staticmethod
    def _write_local(path: str, parts: Sequence, size: int) -> None:
        try:
            # Same size means same bytes unless it was damaged; damage is caught on read,
            # which moves the bad file aside so the recomputed value lands here again.
            if os.stat(path).st_size == size:
                return
        except FileNotFoundError:
            pass
        directory = os.path.dirname(path)
        temp = os.path.join(directory, TEMP_PREFIX + uuid.uuid4().hex)
        try:
            file = open(temp, "xb")
        except FileNotFoundError:
            os.makedirs(directory, exist_ok=True)
            file = open(temp, "xb")
        try:
            with file:
                for part in parts:
                    file.write(part)
            os.replace(temp, path)  # atomic: readers see nothing or the whole file
        except BaseException:
            _ignore_missing(os.unlink, temp)
            raise

    # --- reading -------------------------------------------------------------------

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
            raise ArtifactMissing(
                f"artifact {digest} is not in the store at {self.url}; the op that produced it "
                "will be recomputed. If this keeps happening, check that the client and all "
                "workers use the same artifacts location (JUPYTER_FLOW_ARTIFACTS).",
                digest,
            ) from None

    def _verify(self, digest: str, data: bytes | bytearray) -> None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            moved = self._quarantine(digest)
            raise ArtifactCorrupt(
                f"artifact {digest} in {self.url} is corrupt (its bytes hash to {actual}); "
                + ("it was moved aside and " if moved else "")
                + "the op that produced it will be recomputed.",
                digest,
            )

    def get_bytes(self, digest: str, verify: bool = True) -> bytes:
        """The whole stored file (header and payload), re-hashed unless ``verify=False``."""
        data = self._read(digest)
        if verify:
            self._verify(digest, data)
        return data

    def get(self, digest: str) -> object:
        """Load a stored value, checking its integrity first.

        Raises :class:`ArtifactMissing` or :class:`ArtifactCorrupt` (both
        :class:`ArtifactError`) when the artifact cannot be trusted.
        """
        data = self._read(digest, writable=True)
        self._verify(digest, data)
        header, offset = _parse_header(data, digest)
        name = header.get("serializer")
        try:
            serializer = serializers.get_serializer(name)
        except KeyError:
            raise ArtifactError(
                f"artifact {digest} was written by serializer {name!r}, which is not registered "
                "in this process; register it with jupyter_flow.artifacts.register_serializer "
                "(or recompute the op).",
                digest,
            ) from None
        try:
            return serializer.loads(memoryview(data)[offset:], header.get("type", ""))
        except Exception as exc:  # e.g. a class that no longer exists: recompute
            raise ArtifactError(
                f"artifact {digest} ({header.get('type')}, written by {name} "
                f"{header.get('serializer_version')}; {serializer.version()} installed) cannot be "
                f"loaded here: {type(exc).__name__}: {exc}. The op that produced it will be "
                "recomputed; install matching library versions to reuse it.",
                digest,
            ) from exc

    def read_header(self, digest: str) -> dict[str, Any]:
        """The artifact's header: ``serializer``, ``serializer_version`` and ``type``."""
        header, _ = _parse_header(self._read(digest, HEADER_LIMIT), digest)
        return header

    def info(self, digest: str) -> ArtifactInfo:
        """Describe a stored artifact from its header (without reading the payload)."""
        header = self.read_header(digest)
        return ArtifactInfo(
            digest=digest,
            size=self.size(digest),
            serializer=str(header.get("serializer")),
            serializer_version=str(header.get("serializer_version")),
            type=str(header.get("type")),
            uri=self.uri(digest),
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

    def delete(self, digest: str) -> bool:
        """Remove an artifact; ``False`` if there was none."""
        path = self.path(digest)
        try:
            if self._local is not None:
                os.unlink(path)
            else:
                self._fs.rm_file(path)
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

    # --- listing and housekeeping --------------------------------------------------

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

    # --- preview -------------------------------------------------------------------

    def preview(self, digest: str, max_bytes: int = 65536) -> dict[str, Any]:
        """A bounded description of an artifact for UIs and the REST API.

        Returns ``{"type", "serializer", "size", "kind", "data", "truncated"}`` where
        ``kind`` is ``json`` (small plain data), ``text`` (a prefix of JSON or of
        text-like bytes), ``table`` (``data = {"columns", "records", "rows",
        "total_rows", "total_columns"}``, first 20 rows), ``image`` (``data = {"mime",
        "base64"}``) or ``repr`` (a truncated ``repr``). ``data`` stays within about
        ``max_bytes`` (a text prefix may grow by its JSON escapes). Plain data and bytes are
        read only as far as the preview needs; pickles are decoded whole, and not at all
        above ``PREVIEW_DECODE_LIMIT``.

        >>> import tempfile
        >>> store = ArtifactStore(tempfile.mkdtemp())
        >>> store.preview(store.put("x" * 100_000).digest, max_bytes=100)["data"][:5]
        '"xxxx'

        """
        limit = max(int(max_bytes), 64)
        head = self._read(digest, HEADER_LIMIT + limit)
        header, offset = _parse_header(head, digest)
        info = ArtifactInfo(
            digest=digest,
            size=self.size(digest),
            serializer=str(header.get("serializer")),
            serializer_version=str(header.get("serializer_version")),
            type=str(header.get("type")),
            uri=self.uri(digest),
        )
        base = {"type": info.type, "serializer": info.serializer, "size": info.size}

        if info.serializer in ("json", "bytes") and info.size - offset > limit:
            prefix = head[offset : offset + limit]
            return {**base, **_text_or_repr(prefix, limit), "truncated": True}
        if info.serializer == "bytes":
            payload = self.get(digest)
            return {**base, **_bytes_preview(bytes(payload), limit), "truncated": False}
        if info.serializer == "figure":
            # An op's figure is its PNG image: previewed as the image when it fits.
            if info.size - offset <= limit * 3 // 4:
                return {**base, **_bytes_preview(bytes(self.get(digest).png), limit), "truncated": False}
            text = f"<figure: a {info.size - offset} byte PNG image; too large to preview, download it>"
            return {**base, "kind": "repr", "data": text, "truncated": True}
        if info.serializer == "json":
            return {**base, "kind": "json", "data": self.get(digest), "truncated": False}
        if info.size > PREVIEW_DECODE_LIMIT:
            text = f"<{info.type}: {info.size} bytes stored by {info.serializer}; too large to preview>"
            return {**base, "kind": "repr", "data": text, "truncated": True}

        value = self.get(digest)
        if info.serializer == "pandas":
            table = _table_preview(value, limit)
            if table is not None:
                cut = table["rows"] < table["total_rows"] or len(table["columns"]) < table["total_columns"]
                return {**base, "kind": "table", "data": table, "truncated": cut}
        text, truncated = _bounded_repr(value, limit)
        return {**base, "kind": "repr", "data": text, "truncated": truncated}


# --- helpers -------------------------------------------------------------------------


def _rebuild(url: str, storage_options: dict[str, Any]) -> ArtifactStore:
    return ArtifactStore(url, **storage_options)


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


def _text_or_repr(prefix: bytes, limit: int) -> dict[str, Any]:
    prefix = prefix[:limit]
    try:
        text = prefix.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end is not a reason to call it binary.
        if exc.start < len(prefix) - 3:
            return {"kind": "repr", "data": repr(prefix[: limit // 4])}
        text = prefix[: exc.start].decode("utf-8")
    return {"kind": "text", "data": text}


def _bytes_preview(payload: bytes, limit: int) -> dict[str, Any]:
    for magic, mime in _IMAGE_MAGIC:
        if payload.startswith(magic) and (len(payload) + 2) // 3 * 4 <= limit:
            return {"kind": "image", "data": {"mime": mime, "base64": base64.b64encode(payload).decode()}}
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
    if len(text) > limit:
        return text[: limit - 3] + "...", True
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


# --- one store per URL per process ---------------------------------------------------

_STORES: dict[tuple[str, str], ArtifactStore] = {}
_STORES_LOCK = threading.Lock()


def artifact_store(url: str | None = None, **storage_options: Any) -> ArtifactStore:
    """The process-wide :class:`ArtifactStore` for ``url`` (created on first use).

    Workers call this with the URL each task carries, so repeated tasks reuse one store.

    >>> artifact_store("/tmp/jf-doc") is artifact_store("/tmp/jf-doc")
    True
    """
    resolved = resolve_artifacts_url(url)
    key = (resolved, repr(sorted(storage_options.items())))
    store = _STORES.get(key)
    if store is None:
        with _STORES_LOCK:
            store = _STORES.get(key)
            if store is None:
                store = _STORES[key] = ArtifactStore(resolved, **storage_options)
    return store


__all__ = ["ArtifactInfo", "ArtifactStore", "artifact_store", "validate_digest"]
