"""A content-addressed artifact store on a local directory or any fsspec filesystem.

Every artifact is one file, ``{root}/{digest[:2]}/{digest}``, named by the sha256 of its
whole content::

    jupyter-flow-artifact/1\\n
    {"serializer":"json","serializer_version":"2.0.9","type":"builtins.dict"}\\n
    <payload written by the serializer>

Values whose serializer runs code when loading (pickles: ``pandas``, ``cloudpickle``) are
signed by their producer: the header carries ``"signer"`` (the id of the producer's
Ed25519 key), ``"signed_by"`` (their user name) and ``"sig"`` over the rest of the header
and the payload. Keys are per user and live outside the store (``artifacts/keyring.py``).
Readers check, before the payload reaches ``pickle``, that the signature is valid *and*
made by a key their user holds or trusts: a planted pickle raises :class:`ArtifactUntrusted`
and a teammate's value whom the reader does not trust raises :class:`ArtifactForeign`;
neither runs. ``unpickle=False`` (the Jupyter server) checks signatures but never
deserializes a pickle. The same value signed by the same key gives the same bytes, so
identical outputs still share one file. ``put(value, seal=True)`` also encrypts the payload
(Fernet, with the producer's seal key): graph snapshots, which can hold secrets captured
from the notebook, are stored that way and open only for the user who wrote them.

Files and directories are created private to their owner (0600/0700); in a directory that
an administrator made group-accessible (a team store, ``chmod 2770``) they are readable by
that group (0640, directories 2770).

Writers put a file under a ``.tmp-<uuid>`` name in the same directory and rename it, so
a reader never sees half an artifact, and concurrent writers of one digest are harmless
(they write identical bytes). Object stores get the whole file in one ``pipe_file``,
which is atomic there. Readers re-hash what they read: a file that no longer matches its
name raises :class:`ArtifactCorrupt` and is moved aside, so recomputing its producer
writes a good copy.

Local directories are driven with ``os`` directly (this runs once per op output on
every Dask worker); fsspec is imported only for other URLs.

This module holds the values' side (encode, sign, seal, check, decode, preview); the
header format is ``format.py``, the files themselves ``files.py`` (``ArtifactFiles``, the
base class), the preview helpers ``preview.py``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from typing import Any, BinaryIO

from jupyter_flow.artifacts import serializers
from jupyter_flow.artifacts.files import ArtifactFiles
from jupyter_flow.artifacts.format import (
    HEADER_LIMIT,
    MAGIC,  # noqa: F401 (the file format's first line, imported from here)
    SEALED,
    ArtifactInfo,
    _header_line,
    _needs_signature,
    _parse_header,
    _signed_message,
    _signed_start,
    validate_digest,
)
from jupyter_flow.artifacts.keyring import Keyring
from jupyter_flow.artifacts.preview import _bounded_repr, _bytes_preview, _table_preview, _text_or_repr
from jupyter_flow.core.errors import ArtifactCorrupt, ArtifactError, ArtifactForeign, ArtifactUntrusted
from jupyter_flow.core.settings import resolve_artifacts_url

# Pickled artifacts are decoded whole to preview them; above this they are only described.
PREVIEW_DECODE_LIMIT = 64 * 2**20
# Downloads are hashed and sent in pieces of this size.
STREAM_CHUNK = 2**20

_SEAL_CONTEXT = b"jupyter-flow-artifact-seal/2"
_SIGNATURE_FIELDS = ("sig",)


class ArtifactStore(ArtifactFiles):
    """Content-addressed storage for op outputs.

    ``url`` is a local path, ``file://``, ``memory://`` or any fsspec URL (default:
    :func:`resolve_artifacts_url`); ``storage_options`` go to fsspec. ``keyring`` (the
    user's :class:`~jupyter_flow.artifacts.keyring.Keyring`) signs pickled artifacts and
    decides which signatures to trust; without it the store reads and writes only plain
    data (JSON, bytes, numpy). ``unpickle=False`` checks signatures but never unpickles
    (what the Jupyter server uses: no artifact runs code in it).

    >>> import tempfile
    >>> from jupyter_flow.artifacts.keyring import load_keyring
    >>> store = ArtifactStore(tempfile.mkdtemp(), keyring=load_keyring(tempfile.mkdtemp()))
    >>> info = store.put({"accuracy": 0.93})
    >>> info.serializer, store.get(info.digest)
    ('json', {'accuracy': 0.93})
    >>> store.get(store.put({1, 2}).digest)   # a set is pickled, signed and checked
    {1, 2}
    """

    def __init__(self, url: str | None = None, *, keyring: Keyring | None = None, unpickle: bool = True,
                 **storage_options: Any):
        url = resolve_artifacts_url(url)
        if keyring is not None and not isinstance(keyring, Keyring):
            raise TypeError(f"keyring must be a Keyring (jupyter_flow.artifacts.keyring.load_keyring()), "
                            f"got {type(keyring).__name__}")
        self.keyring = keyring
        self.unpickle = unpickle
        self._fernet: Any = None
        super().__init__(url, **storage_options)

    def __reduce__(self):
        return (_rebuild, (self.url, self.storage_options, self.keyring, self.unpickle))

    @property
    def signed(self) -> bool:
        """Whether this store has a keyring (and so writes pickles and may read them)."""
        return self.keyring is not None

    def __repr__(self) -> str:
        return f"ArtifactStore({self.url!r})"

    # --- names ---------------------------------------------------------------------

    # --- writing -------------------------------------------------------------------

    def _require_keyring(self, action: str) -> Keyring:
        if self.keyring is None:
            raise ArtifactError(
                f"the artifact store at {self.url} was opened without a keyring, so it cannot "
                f"{action}. Open it with artifact_store(url, keyring=load_keyring()) "
                "(the engine and the CLI do)."
            )
        return self.keyring

    def _sealer(self):
        if self._fernet is None:
            from cryptography.fernet import Fernet

            seal_key = self._require_keyring("seal or unseal values").seal_key
            if seal_key is None:
                raise ArtifactError("this copy of the keyring (a Dask worker's) holds no seal key: snapshots are "
                                    "sealed and opened by the process that submitted the run")
            derived = hmac.new(seal_key, _SEAL_CONTEXT, hashlib.sha256).digest()
            self._fernet = Fernet(base64.urlsafe_b64encode(derived))
        return self._fernet

    def _encode_parts(self, value: object, seal: bool = False) -> tuple[list, ArtifactInfo]:
        serializer, payload = serializers.serialize(value)
        version = serializer.version()
        type_name = serializers.type_name(value)
        header: dict[str, Any] = {"serializer": serializer.name, "serializer_version": version,
                                  "type": type_name[:1000]}
        signer = None
        if seal or serializer.executes_code:
            ring = self._require_keyring(f"store a value of type {type_name} (it is pickled by {serializer.name!r})")
            if seal:
                payload = [self._sealer().encrypt(b"".join(payload))]
                header["sealed"] = SEALED
            header["signer"], header["signed_by"] = ring.key_id, ring.user
            header["sig"] = ring.sign(_signed_message(header, payload))
            signer = ring.key_id
        parts = [_header_line(header), *payload]
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
            signer=signer,
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

    def put(self, value: object, *, seal: bool = False) -> ArtifactInfo:
        """Store ``value`` (once: an identical artifact already stored is kept) and describe it.

        ``seal=True`` encrypts the payload with a key derived from the signing key (a
        sealed artifact gets a new digest each time). Raises :class:`SerializationError`
        when no serializer can write the value.
        """
        parts, info = self._encode_parts(value, seal)
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

    def _verify(self, digest: str, data: bytes | bytearray, actual: str | None = None) -> None:
        """ArtifactCorrupt (the file moved aside) unless ``data`` (or its sha256 ``actual``) matches."""
        actual = actual or hashlib.sha256(data).hexdigest()
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

    def _authenticate(self, digest: str, header: dict[str, Any], payload: memoryview,
                      streamed: Any = None) -> None:
        """Check the signature of an artifact that must have one: valid, and by a key this
        user holds or trusts. Raises ArtifactUntrusted (or ArtifactForeign) if not.
        ``streamed``: a sha256 from :func:`_signed_start` already fed the payload, used instead."""
        if not _needs_signature(header):
            return
        what = f"artifact {digest} ({header.get('type')}, {header.get('serializer')}"
        what += ", sealed)" if header.get("sealed") else ")"
        if self.keyring is None:
            raise ArtifactUntrusted(
                f"{what} holds a pickle, and this artifact store was opened without a keyring, so it was "
                "not loaded. Open it with artifact_store(url, keyring=load_keyring()).",
                digest,
            )
        signer, signature = header.get("signer"), header.get("sig")
        if not isinstance(signer, str) or not isinstance(signature, str):
            raise ArtifactUntrusted(
                f"{what} has no signature: it may have been planted in the artifact directory or written "
                "by a jupyter_flow older than per-user keys, so it was not unpickled; its op will be "
                "recomputed.",
                digest,
            )
        producer = str(header.get("signed_by") or "an unknown user")[:100]
        if header.get("sealed") and signer != self.keyring.key_id:
            raise ArtifactForeign(
                f"{what} is sealed with the key of {producer} (key {signer}), not yours ({self.keyring.user}): "
                f"only {producer} can open it (e.g. resume that run)",
                digest, signer=signer, producer=producer,
            )
        if not self.keyring.trusts(signer):
            raise ArtifactForeign(
                f"{what} was made by {producer} (key {signer}), whom you ({self.keyring.user}) do not "
                "trust, so it was not unpickled: unpickling runs code its producer chose. Recompute it "
                f"yourself, or, if you trust {producer} to run code in your processes, run "
                f"`jupyter flow trust add {producer}`.",
                digest, signer=signer, producer=producer,
            )
        message = streamed.digest() if streamed is not None else _signed_message(header, [payload])
        if not self.keyring.verify(signer, message, signature):
            raise ArtifactUntrusted(
                f"{what} claims to be signed by {producer} (key {signer}), but its signature does not "
                "match: it was modified or planted, so it was not unpickled; its op will be recomputed.",
                digest,
            )

    def _load_checked(self, digest: str, writable: bool = False) -> tuple[bytes | bytearray, dict[str, Any], int]:
        """The file, its header and the payload offset, after the hash and signature checks."""
        data = self._read(digest, writable=writable)
        self._verify(digest, data)
        header, offset = _parse_header(data, digest)
        self._authenticate(digest, header, memoryview(data)[offset:])
        return data, header, offset

    def verify(self, digest: str) -> dict[str, Any]:
        """Check that an artifact can be loaded safely (hash, and signature where one is
        needed) without deserializing it; returns its header.

        Raises :class:`ArtifactMissing`, :class:`ArtifactCorrupt` or :class:`ArtifactUntrusted`.
        """
        return self._load_checked(digest)[1]

    def payload(self, digest: str) -> tuple[dict[str, Any], bytes]:
        """The header and payload (what the serializer wrote) of an artifact that passed
        :meth:`verify`; sealed payloads stay encrypted."""
        data, header, offset = self._load_checked(digest)
        return header, bytes(memoryview(data)[offset:])

    def open_payload(self, digest: str, chunk_size: int = STREAM_CHUNK) -> tuple[dict[str, Any], BinaryIO, int]:
        """The header, an open file positioned at the payload, and the payload's length,
        after the same hash and signature checks as :meth:`verify`, made in ``chunk_size``
        pieces: a download of a large artifact never holds it in memory. The caller closes
        the file. Both passes read one open file, which a writer only ever replaces (by a
        rename), so what is streamed is what was checked.

        >>> import tempfile
        >>> store = ArtifactStore(tempfile.mkdtemp())
        >>> header, file, length = store.open_payload(store.put(b"abc").digest)
        >>> header["serializer"], file.read(), length
        ('bytes', b'abc', 3)
        >>> file.close()
        """
        path = self.path(digest)
        try:
            file = open(path, "rb") if self._local is not None else self._fs.open(path, "rb")
        except FileNotFoundError:
            raise self._missing(digest) from None
        try:
            header, offset = _parse_header(file.read(HEADER_LIMIT), digest)
            streamed = _signed_start(header) if self.keyring is not None and _needs_signature(header) else None
            whole = hashlib.sha256()
            file.seek(0)
            position = 0
            while chunk := file.read(chunk_size):
                whole.update(chunk)
                if streamed is not None and position + len(chunk) > offset:
                    streamed.update(memoryview(chunk)[max(offset - position, 0) :])
                position += len(chunk)
            self._verify(digest, b"", whole.hexdigest())
            self._authenticate(digest, header, memoryview(b""), streamed)
            file.seek(offset)
            return header, file, position - offset
        except BaseException:
            file.close()
            raise

    def get(self, digest: str) -> object:
        """Load a stored value, checking its integrity (and, for pickles, its signature) first.

        Raises :class:`ArtifactMissing`, :class:`ArtifactCorrupt` or
        :class:`ArtifactUntrusted` (all :class:`ArtifactError`) when the artifact cannot be
        trusted; nothing of an untrusted artifact is deserialized.
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
        payload = memoryview(data)[offset:]
        self._authenticate(digest, header, payload)
        if serializer.executes_code and not self.unpickle:
            raise ArtifactUntrusted(
                f"artifact {digest} ({header.get('type')}) is a pickle, and this process (the Jupyter "
                "server) never unpickles artifacts; load it in a kernel with jf.get_run(...).result()",
                digest,
            )
        if header.get("sealed"):
            payload = memoryview(self._unseal(digest, header, payload))
        try:
            return serializer.loads(payload, header.get("type", ""))
        except Exception as exc:  # e.g. a class that no longer exists: recompute
            raise ArtifactError(
                f"artifact {digest} ({header.get('type')}, written by {name} "
                f"{header.get('serializer_version')}; {serializer.version()} installed) cannot be "
                f"loaded here: {type(exc).__name__}: {exc}. The op that produced it will be "
                "recomputed; install matching library versions to reuse it.",
                digest,
            ) from exc

    def _unseal(self, digest: str, header: dict[str, Any], payload: memoryview) -> bytes:
        from cryptography.fernet import InvalidToken

        if header.get("sealed") != SEALED:
            raise ArtifactError(f"artifact {digest} is sealed with {header.get('sealed')!r}, unknown here", digest)
        try:
            return self._sealer().decrypt(bytes(payload))
        except InvalidToken:
            owner = str(header.get("signed_by") or "another user")[:100]
            raise ArtifactUntrusted(f"artifact {digest} is sealed with the key of {owner} (key {header.get('signer')}), "
                                    "not yours: only they can open it", digest) from None

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
            signer=header.get("signer") if isinstance(header.get("signer"), str) else None,
        )

    # --- preview -------------------------------------------------------------------

    def preview(self, digest: str, max_bytes: int = 65536) -> dict[str, Any]:
        """A bounded description of an artifact for UIs and the REST API.

        Returns ``{"type", "serializer", "size", "kind", "data", "truncated"}`` where
        ``kind`` is ``json`` (small plain data), ``text`` (a prefix of JSON or of
        text-like bytes), ``table`` (``data = {"columns", "records", "rows",
        "total_rows", "total_columns"}``, first 20 rows), ``image`` (``data = {"mime",
        "base64"}``), ``repr`` (a truncated ``repr``) or ``untrusted`` (a pickle without
        a valid signature of a trusted key, never decoded; ``data`` says why). In a store
        opened with ``unpickle=False`` a trusted pickle is decoded in a child process. ``data`` stays within about
        ``max_bytes`` (a text prefix may grow by its JSON escapes). Plain data and bytes are
        read only as far as the preview needs; pickles are decoded whole once their
        signature checks out, and not at all above ``PREVIEW_DECODE_LIMIT``; sealed
        artifacts are never decrypted for a preview.

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

        if header.get("sealed"):
            text = f"<{info.type}: {info.size} bytes, sealed (encrypted with its owner's key); not previewed>"
            return {**base, "kind": "repr", "data": text, "truncated": False}
        if info.serializer in ("json", "bytes") and info.size - offset > limit:
            prefix = head[offset : offset + limit]
            return {**base, **_text_or_repr(prefix, limit), "truncated": True}
        if info.serializer == "bytes":
            payload = self.get(digest)
            return {**base, **_bytes_preview(bytes(payload), limit)}
        if info.serializer == "figure":
            # An op's figure is its PNG image: previewed as the image when it fits.
            if info.size - offset <= limit * 3 // 4:
                return {**base, **_bytes_preview(bytes(self.get(digest).png), limit)}
            text = f"<figure: a {info.size - offset} byte PNG image; too large to preview, download it>"
            return {**base, "kind": "repr", "data": text, "truncated": True}
        if info.serializer == "json":
            return {**base, "kind": "json", "data": self.get(digest), "truncated": False}
        if info.size > PREVIEW_DECODE_LIMIT:
            text = f"<{info.type}: {info.size} bytes stored by {info.serializer}; too large to preview>"
            return {**base, "kind": "repr", "data": text, "truncated": True}

        try:
            self.verify(digest)  # hash and signature: nothing is deserialized yet
        except ArtifactUntrusted as err:
            return {**base, "kind": "untrusted", "data": str(err), "truncated": False}
        if not self.unpickle:
            # A trusted pickle is decoded in a throwaway process that holds none of this one's
            # state (the Jupyter server's tokens, sessions, database connections).
            from jupyter_flow.artifacts.preview import preview_elsewhere

            return preview_elsewhere(self, digest, limit)
        value = self.get(digest)
        if info.serializer == "pandas":
            table = _table_preview(value, limit)
            if table is not None:
                cut = table["rows"] < table["total_rows"] or len(table["columns"]) < table["total_columns"]
                return {**base, "kind": "table", "data": table, "truncated": cut}
        text, truncated = _bounded_repr(value, limit)
        return {**base, "kind": "repr", "data": text, "truncated": truncated}


# --- helpers -------------------------------------------------------------------------


def _rebuild(url: str, storage_options: dict[str, Any], keyring: Keyring | None = None,
             unpickle: bool = True) -> ArtifactStore:
    return ArtifactStore(url, keyring=keyring, unpickle=unpickle, **storage_options)


# --- one store per URL per process ---------------------------------------------------

_STORES: dict[tuple[str, str, int, bool], ArtifactStore] = {}
_STORES_LOCK = threading.Lock()


def artifact_store(url: str | None = None, *, keyring: Keyring | None = None, unpickle: bool = True,
                   **storage_options: Any) -> ArtifactStore:
    """The process-wide :class:`ArtifactStore` for ``url`` and ``keyring`` (created on
    first use).

    Workers call this with the URL and keyring each task carries, so repeated tasks reuse
    one store.

    >>> artifact_store("/tmp/jf-doc") is artifact_store("/tmp/jf-doc")
    True
    """
    resolved = resolve_artifacts_url(url)
    key = (resolved, repr(sorted(storage_options.items())), id(keyring), unpickle)
    store = _STORES.get(key)
    if store is None or store.keyring is not keyring:
        with _STORES_LOCK:
            store = _STORES.get(key)
            if store is None or store.keyring is not keyring:
                store = _STORES[key] = ArtifactStore(resolved, keyring=keyring, unpickle=unpickle,
                                                     **storage_options)
    return store


__all__ = ["ArtifactInfo", "ArtifactStore", "artifact_store", "validate_digest"]

