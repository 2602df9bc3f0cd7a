"""A user's keys: who may run code in whose process through a pickled artifact.

Unpickling runs code chosen by whoever wrote the pickle. So a process unpickles an artifact
only when it is signed by a key its user holds, or by a key its user decided to trust:

- ``signing.key`` — the user's Ed25519 key. Kernels and their Dask workers sign every
  pickled artifact with it; its public half is published in the store (``signers``) so
  that teammates can choose to trust it.
- ``seal.key`` — 32 random bytes that encrypt graph snapshots (which may hold captured
  secrets): only their owner can open them.
- ``trusted.json`` — public keys of other users this user trusts, pinned by
  ``jupyter flow trust add USER`` (or ``--group``), with who added them and when.

They live in :func:`keys_dir` (``JUPYTER_FLOW_KEYS``, default ``jupyter_data_dir()/flow-keys``),
in the user's home, never in the shared database or artifact store: files 0600 in a
directory 0700, refused if anyone else can read them. Anyone who can write the shared
store can plant files or rows, but cannot sign as you.

>>> import tempfile
>>> ring = load_keyring(tempfile.mkdtemp())
>>> signature = ring.sign(b"some bytes")
>>> ring.verify(ring.key_id, b"some bytes", signature), ring.trusts(ring.key_id)
(True, True)
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jupyter_flow.core.errors import FlowError
from jupyter_flow.core.settings import keys_dir

SIGNING_FILE = "signing.key"
SEAL_FILE = "seal.key"
TRUST_FILE = "trusted.json"
SIG_PREFIX = "ed25519:"


class KeyringError(FlowError):
    """The user's key files cannot be used (unsafe permissions, damaged, unwritable)."""


def key_id(public: bytes) -> str:
    """The short name of a public key: the first 16 hex digits of its sha256.

    >>> key_id(bytes(32))
    '66687aadf862bd77'
    """
    return hashlib.sha256(public).hexdigest()[:16]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise KeyringError(f"{what} is not base64") from None


def _public_key(raw: bytes):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(raw)


class Keyring:
    """One user's signing key, seal key and trusted public keys (see the module docstring).

    Picklable: a task carries its submitter's keyring to the worker, which signs what the
    op returns and checks what it loads. ``path`` is where it was loaded from (None on a
    worker's copy, which never rereads ``trusted.json``).
    """

    def __init__(self, user: str, signing: bytes, seal: bytes | None, trusted: dict[str, dict] | None = None,
                 path: Path | None = None):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        self.user = user
        self._signing_raw = signing
        self._private = Ed25519PrivateKey.from_private_bytes(signing)
        self.public = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = key_id(self.public)
        self.seal_key = seal
        self.path = path
        self._trusted: dict[str, dict] = dict(trusted or {})
        self._verifiers: dict[str, Any] = {self.key_id: self._private.public_key()}
        self._trust_mtime: tuple | None = None
        self._lock = threading.Lock()

    def __reduce__(self):
        # A worker's copy signs and verifies; it gets no seal key (snapshots are sealed and
        # opened by the submitting process only).
        return (_rebuild, (self.user, self._signing_raw, None, self._trusted))

    def __repr__(self) -> str:
        return f"Keyring(user={self.user!r}, key={self.key_id}, trusted={len(self._trusted)})"

    @property
    def public_b64(self) -> str:
        return _b64(self.public)

    # --- signing -------------------------------------------------------------------

    def sign(self, message: bytes) -> str:
        """``ed25519:<base64>`` over ``message`` (deterministic: same key, same bytes)."""
        return SIG_PREFIX + _b64(self._private.sign(message))

    def verify(self, signer: str, message: bytes, signature: str) -> bool:
        """Whether ``signature`` over ``message`` is valid *and* made by a key this user
        holds or trusts (``signer`` is the key id the signature claims)."""
        verifier = self._verifier(signer)
        if verifier is None or not isinstance(signature, str) or not signature.startswith(SIG_PREFIX):
            return False
        from cryptography.exceptions import InvalidSignature

        try:
            verifier.verify(base64.b64decode(signature[len(SIG_PREFIX):]), message)
        except (InvalidSignature, ValueError):
            return False
        return True

    # --- trust ---------------------------------------------------------------------

    def trusts(self, signer: str | None) -> bool:
        """Whether artifacts signed by key ``signer`` may be unpickled by this user."""
        return signer is not None and self._verifier(signer) is not None

    def trusted_user(self, signer: str | None) -> str | None:
        """The user a trusted key belongs to (this user for their own key)."""
        if signer == self.key_id:
            return self.user
        entry = self._trusted.get(signer or "")
        return entry.get("user") if entry else None

    def trusted(self) -> dict[str, dict]:
        """Key id -> ``{"user", "public", "via", "added"}`` of every trusted key (not one's own)."""
        self._reload()
        return dict(self._trusted)

    def _verifier(self, signer: str):
        if signer == self.key_id:
            return self._verifiers[signer]
        # `jupyter flow trust add/rm` in another process is seen without a restart (one
        # stat of trusted.json per check; the file is reread only when it changed).
        self._reload()
        verifier = self._verifiers.get(signer)
        if verifier is None and signer in self._trusted:
            try:
                verifier = _public_key(_unb64(self._trusted[signer]["public"], f"trusted key {signer}"))
            except (KeyringError, ValueError, KeyError):
                return None
            self._verifiers[signer] = verifier
        return verifier

    def _reload(self) -> None:
        if self.path is None:
            return
        mtime = _mtime(self.path / TRUST_FILE)
        with self._lock:
            if mtime == self._trust_mtime:
                return
            self._trust_mtime = mtime
            trusted = _read_trust(self.path)
            self._trusted = trusted
            self._verifiers = {k: v for k, v in self._verifiers.items() if k == self.key_id or k in trusted}


def _rebuild(user: str, signing: bytes, seal: bytes | None, trusted: dict) -> Keyring:
    cache_key = (signing, json.dumps(trusted, sort_keys=True))
    ring = _REBUILT.get(cache_key)
    if ring is None:
        ring = _REBUILT[cache_key] = Keyring(user, signing, seal, trusted)
    return ring


_REBUILT: dict[tuple, Keyring] = {}  # a worker gets the same keyring with every task

# --- files ---------------------------------------------------------------------------


def _check_private(path: Path) -> None:
    """Refuse a key file or directory others can read or write (as ssh does)."""
    info = path.stat()
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyringError(
            f"{path} can be read by other users (mode {stat.filemode(info.st_mode)}); jupyter_flow uses "
            f"keys only when they are private to you: run `chmod {'700' if path.is_dir() else '600'} {path}`"
        )
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise KeyringError(f"{path} belongs to another user (uid {info.st_uid}); keys must be your own")


def _private_dir(directory: Path) -> None:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        raise KeyringError(f"cannot create the keys directory {directory}: {err}; set JUPYTER_FLOW_KEYS "
                           "to a private directory you can write") from None
    _check_private(directory)


def _write_private(path: Path, data: bytes, *, replace: bool) -> bool:
    """Write ``data`` to ``path`` as 0600 via a temp file; without ``replace``, only if
    ``path`` does not exist (the first of several racing processes wins). Returns whether
    this call wrote it."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        if replace:
            os.replace(temp, path)
            return True
        try:
            os.link(temp, path)  # atomic and never overwrites
        except FileExistsError:
            return False
        return True
    finally:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass


def _key_file(directory: Path, name: str, size: int, create: bool) -> bytes:
    path = directory / name
    if not path.exists():
        if not create:
            raise KeyringError(f"no {name} in {directory}")
        _write_private(path, _b64(os.urandom(size)).encode() + b"\n", replace=False)
    _check_private(path)
    raw = _unb64(path.read_text().strip(), str(path))
    if len(raw) != size:
        raise KeyringError(f"{path} is damaged (expected {size} bytes); move it away to make a new key "
                           "(artifacts you signed with it will then be recomputed)")
    return raw


def _read_trust(directory: Path) -> dict[str, dict]:
    path = directory / TRUST_FILE
    try:
        _check_private(path)
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as err:
        raise KeyringError(f"{path} is not valid JSON ({err}); fix or remove it") from None
    keys = data.get("keys") if isinstance(data, dict) else None
    return {k: v for k, v in (keys or {}).items() if isinstance(v, dict) and "public" in v}


def _trust_document(directory: Path) -> dict:
    path = directory / TRUST_FILE
    if not path.exists():
        return {"keys": {}, "groups": {}}
    _check_private(path)
    data = json.loads(path.read_text())
    data.setdefault("keys", {})
    data.setdefault("groups", {})
    return data


_RINGS: dict[str, Keyring] = {}
_RINGS_LOCK = threading.Lock()


def load_keyring(directory: str | os.PathLike | None = None, *, create: bool = True) -> Keyring:
    """This user's keyring from ``directory`` (default :func:`keys_dir`), its keys made on
    first use (``create``). One object per directory per process.

    Raises :class:`KeyringError` naming the file when a key is unsafe or damaged.
    """
    from jupyter_flow.core.provenance import current_user

    path = Path(directory).expanduser() if directory is not None else keys_dir()
    path = path.resolve() if path.exists() else path.absolute()
    name = str(path)
    ring = _RINGS.get(name)
    if ring is not None:
        return ring
    with _RINGS_LOCK:
        ring = _RINGS.get(name)
        if ring is None:
            if create:
                _private_dir(path)
            elif not path.is_dir():
                raise KeyringError(f"no keys in {path} (JUPYTER_FLOW_KEYS): run any flow once to make them")
            else:
                _check_private(path)
            signing = _key_file(path, SIGNING_FILE, 32, create)
            seal = _key_file(path, SEAL_FILE, 32, create)
            ring = Keyring(current_user(), signing, seal, _read_trust(path), path=path)
            ring._trust_mtime = _mtime(path / TRUST_FILE)
            _RINGS[name] = ring
    return ring


def _mtime(path: Path) -> tuple | None:
    """What tells that a file changed: it is replaced (a new inode) by every write."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_size)


def trust(ring: Keyring, user: str, keys: dict[str, str], *, via: str = "user") -> list[str]:
    """Pin ``keys`` (key id -> base64 public key) as belonging to ``user`` in ``ring``'s
    ``trusted.json``; returns the key ids that were new. Each public key must match its id."""
    if ring.path is None:
        raise KeyringError("this keyring was not loaded from a directory; trust is changed where it lives")
    for ident, public in keys.items():
        if key_id(_unb64(public, f"public key of {user}")) != ident:
            raise KeyringError(f"the public key given for {user} does not match its id {ident}")
        _public_key(_unb64(public, f"public key of {user}"))  # a valid Ed25519 key
    with _RINGS_LOCK:
        document = _trust_document(ring.path)
        added = [k for k in keys if k not in document["keys"] and k != ring.key_id]
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for ident in added:
            document["keys"][ident] = {"user": user, "public": keys[ident], "via": via, "added": now}
        if via.startswith("group:"):
            group = via.split(":", 1)[1]
            members = document["groups"].setdefault(group, [])
            if user not in members:
                members.append(user)
        _write_private(ring.path / TRUST_FILE, json.dumps(document, indent=1, sort_keys=True).encode(), replace=True)
    ring._reload()
    return added


def untrust(ring: Keyring, name: str, *, group: bool = False) -> list[str]:
    """Forget every key pinned for user ``name`` (or, with ``group``, every key pinned
    through that group); returns the key ids removed."""
    if ring.path is None:
        raise KeyringError("this keyring was not loaded from a directory; trust is changed where it lives")
    with _RINGS_LOCK:
        document = _trust_document(ring.path)
        if group:
            gone = [k for k, v in document["keys"].items() if v.get("via") == f"group:{name}"]
            document["groups"].pop(name, None)
        else:
            gone = [k for k, v in document["keys"].items() if v.get("user") == name]
        for ident in gone:
            del document["keys"][ident]
        _write_private(ring.path / TRUST_FILE, json.dumps(document, indent=1, sort_keys=True).encode(), replace=True)
    ring._reload()
    return gone


def trusted_groups(ring: Keyring) -> dict[str, list[str]]:
    """Groups trusted with ``jupyter flow trust add --group``: name -> members pinned."""
    if ring.path is None:
        return {}
    return dict(_trust_document(ring.path)["groups"])


__all__ = ["Keyring", "KeyringError", "key_id", "keys_dir", "load_keyring", "trust", "trusted_groups", "untrust"]
