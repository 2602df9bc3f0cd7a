"""The one rule for secrets: which names and values are secret, and what may be stored of them.

**Names.** A name is split into words (``api_token``, ``API-TOKEN``, ``apiToken`` and
``db.password`` all split the same way) and looks secret when

- a word is one of ``SECRET_WORDS`` (``password``, ``pwd``, ``creds``, ``dsn``, ``auth`` …),
  or the name contains one of ``SECRET_PARTS`` anywhere (``DBPASSWORD``, ``myapikey``);
- a word is ``token``/``tokens`` (or ends in ``token``: ``authtoken``), unless another word
  says the name counts tokens (``max_tokens``, ``num_tokens``, ``token_count``);
- a word is ``key`` right after a word that makes it a secret key (``api_key``,
  ``private_key``, ``aws_secret_access_key``, ``ssh_key``); ``key`` alone, ``keys``,
  ``sort_key``, ``primary_key`` and ``monkey`` are ordinary names.

**Values.** Whatever its name, a string holding a URL with a password
(``postgresql://u:pw@host/db``), a ``name=value`` pair whose name looks secret
(``…?token=abc``, ``Pwd=…;``, ``--password=…``) or an ``Authorization`` scheme
(``Bearer abc…``) has those parts replaced by :data:`REDACTED` (:func:`redact_text`).

**What is stored.** Run parameters, task provenance, shell command lines and REST responses
keep :data:`REDACTED` in place of a secret (:func:`redact`). Cache keys need to change when a
secret changes, so they carry :func:`keyed_hash` of it: an HMAC whose key is kept in a
private file of the user's (``secret-hash.key`` in ``$JUPYTER_FLOW_KEYS``), never in the
store, so someone who reads the store cannot test guesses against it.

>>> redact({"lr": 0.1, "api_token": "s3cr3t", "db": {"password": "pw", "host": "h"}})
{'lr': 0.1, 'api_token': '***', 'db': {'password': '***', 'host': 'h'}}
>>> redact({"url": "postgresql://app:hunter2@db/prod"})
{'url': 'postgresql://app:***@db/prod'}
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets as _random
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import FlowError

#: Words that make a name secret (compared with the name's words, lower-cased).
SECRET_WORDS = frozenset({
    "password", "passwd", "pwd", "pass", "passphrase", "secret", "secrets", "credential",
    "credentials", "cred", "creds", "apikey", "auth", "oauth", "authorization", "dsn",
    "cookie", "cookies", "privatekey",
})
#: Parts that make a name secret wherever they appear in it (names written without separators).
SECRET_PARTS = ("password", "passwd", "passphrase", "secret", "credential", "apikey", "privatekey",
                "accesskey", "authtoken", "apitoken")
#: Words before ``key`` that make it a secret key.
KEY_QUALIFIERS = frozenset({
    "api", "access", "secret", "private", "signing", "encryption", "ssh", "master", "client",
    "license", "app", "auth", "service", "account", "storage", "sas", "subscription", "hmac",
    "session", "decryption", "crypto", "deploy",
})
#: Words that say a name counts tokens rather than holding one.
_COUNT_WORDS = frozenset({
    "max", "min", "num", "n", "count", "counts", "limit", "total", "budget", "length", "len",
    "size", "per", "maximum", "minimum", "number",
})
#: What is stored in place of a secret.
REDACTED = "***"
#: Strings longer than this are not searched for secret-looking parts (their cache key token
#: is a hash anyway); a secret is short.
MAX_SCANNED_LENGTH = 1 << 20
#: Shorter values would be replaced by accident all over a text (``scrub_text``); their
#: names still hide them where they are shown by name.
MIN_SCRUB_LENGTH = 4

_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


@lru_cache(maxsize=4096)
@lru_cache(maxsize=4096)  # the same few parameter names, for every node of a big graph
def looks_secret(name: str) -> bool:
    """Whether a variable or parameter name looks like it holds a secret.

    >>> [looks_secret(n) for n in ("API_TOKEN", "dbPassword", "creds", "pg_dsn", "api-key", "private_key")]
    [True, True, True, True, True, True]
    >>> [looks_secret(n) for n in ("lr", "key", "keys", "sort_key", "monkey", "max_tokens", "author")]
    [False, False, False, False, False, False, False]
    """
    lowered = name.lower()
    if any(part in lowered for part in SECRET_PARTS):
        return True
    words = [w.lower() for w in _WORDS.findall(name)]
    counted = any(w in _COUNT_WORDS for w in words)
    for i, word in enumerate(words):
        if word in SECRET_WORDS:
            return True
        if (word in ("token", "tokens") or word.endswith("token")) and not counted:
            return True
        if word == "key" and i > 0 and words[i - 1] in KEY_QUALIFIERS:
            return True
    return False


# A URL's authority (user:password@host): the password is what lies between the first ':'
# and the last '@' (passwords are often written with a raw '@').
_URL_AUTHORITY = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<authority>[^\s/?#'\"]+)")
# name=value / name: value, where the name decides (query strings, ODBC DSNs, options, JSON).
_PAIR = re.compile(
    r"(?<![\w.])(?P<name>[A-Za-z_][\w\-.]{0,63})(?P<sep>['\"]?\s*(?:=|:(?!//))\s*)"
    r"(?P<value>'[^'\n]*'|\"[^\"\n]*\"|(?:(?:Bearer|Basic|Token)\s+)?[^\s&;,'\"]+)"
)
_AUTH_SCHEME = re.compile(r"\b(?P<scheme>Bearer|Basic)\s+(?P<value>[A-Za-z0-9\-._~+/]{8,}=*)")


def _hide_url_password(match: re.Match) -> str:
    authority = match.group("authority")
    userinfo, at, host = authority.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not at or not colon or not password or password == REDACTED:
        return match.group(0)
    return f"{match.group('scheme')}{user}:{REDACTED}@{host}"


def _hide_pair(match: re.Match) -> str:
    value = match.group("value")
    if not looks_secret(match.group("name")) or value.strip("'\"") in (REDACTED, ""):
        return match.group(0)
    quote = value[0] if value[0] in "'\"" else ""
    return f"{match.group('name')}{match.group('sep')}{quote}{REDACTED}{quote}"


def redact_text(text: str) -> str:
    """``text`` with the secret-looking parts of it replaced by :data:`REDACTED`: URL
    passwords, values of secret-named ``name=value`` pairs, ``Bearer``/``Basic`` credentials.

    >>> redact_text("psql postgresql://u:p@ss@db:5432/x?sslmode=require --password=pw")
    'psql postgresql://u:***@db:5432/x?sslmode=require --password=***'
    >>> redact_text("curl -H 'Authorization: Bearer abcdefgh12345' https://h/api?api_key=k1&n=2")
    "curl -H 'Authorization: ***' https://h/api?api_key=***&n=2"
    """
    if len(text) > MAX_SCANNED_LENGTH or not any(c in text for c in ":="):
        return text
    text = _URL_AUTHORITY.sub(_hide_url_password, text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m.group('scheme')} {REDACTED}", text)
    return _PAIR.sub(_hide_pair, text)


def looks_secret_value(value: Any) -> bool:
    """Whether ``value`` is a string with a secret-looking part (see :func:`redact_text`).

    >>> looks_secret_value("postgresql://u:pw@host/db"), looks_secret_value("postgresql://host/db")
    (True, False)
    """
    return isinstance(value, str) and redact_text(value) != value


def _worth_hiding(value: Any) -> bool:
    # None, "" and booleans reveal nothing (``use_token=True``); everything else may.
    return value is not None and value != "" and not isinstance(value, bool)


def is_secret(name: str, value: Any) -> bool:
    """Whether ``value`` (under ``name``) must not be stored as it is: a secret-named value
    worth hiding, or a secret-looking string, or a container holding either."""
    if name and looks_secret(name) and _worth_hiding(value):
        return True
    if isinstance(value, str):
        return looks_secret_value(value)
    if isinstance(value, dict):
        return any(is_secret(str(k), v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(is_secret("", v) for v in value)
    return False


def redact(value: Any, name: str = "") -> Any:
    """A copy of ``value`` with every value under a secret-looking key replaced by
    :data:`REDACTED` and the secret-looking parts of strings hidden, through nested dicts
    and lists (``name`` is the key ``value`` is under).
    """
    if name and looks_secret(name) and _worth_hiding(value):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: redact(item, str(key)) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(item) for item in value]
    return value


def scrub_text(text: str, secrets: dict[str, Any]) -> str:
    """``text`` with every secret string value (and its escaped forms) replaced by ``***``.

    >>> scrub_text('token = "s3cr3t"', {"token": "s3cr3t"})
    'token = "***"'
    """
    for value in secrets.values():
        if not isinstance(value, str) or len(value) < MIN_SCRUB_LENGTH:
            continue
        forms = {value, json.dumps(value)[1:-1], repr(value)[1:-1], value.replace('"', '\\"')}
        for form in sorted(forms, key=len, reverse=True):
            text = text.replace(form, REDACTED)
    return text


def redacted_names(params: dict[str, Any]) -> list[str]:
    """Names whose value is a stored, redacted one passed back: the :data:`REDACTED` marker
    under a secret-looking name (or a list holding it), or a string whose secret part is
    the marker (``postgresql://u:***@h/db``). Such values no longer hold the secret.

    >>> redacted_names({"api_token": "***", "lr": "***", "password": ["***"], "db": "pg://u:***@h/x"})
    ['api_token', 'password', 'db']
    """
    found = []
    for name, value in params.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        strings = [item for item in values if isinstance(item, str)]
        if looks_secret(str(name)) and REDACTED in strings:
            found.append(str(name))
        elif any(REDACTED in item and _with_secret(item) == item for item in strings):
            found.append(str(name))
    return found


def _with_secret(text: str) -> str:
    # What redact_text makes of ``text`` once its REDACTED markers are secrets again: equal
    # to ``text`` when every marker sits where a secret goes.
    return redact_text(text.replace(REDACTED, "\x00secret\x00")).replace("\x00secret\x00", "?")


# ----------------------------------------------------------------- keyed hashes

_key_lock = threading.Lock()
_keys: dict[str, bytes] = {}


def hash_key_path() -> Path:
    """The file holding this user's secret-hashing key, beside their signing keys."""
    from .settings import keys_dir

    return keys_dir() / "secret-hash.key"


def _hash_key() -> bytes:
    path = hash_key_path()
    with _key_lock:
        key = _keys.get(str(path))
        if key is None:
            key = _load_or_create_key(path)
            _keys[str(path)] = key
        return key


def _load_or_create_key(path: Path) -> bytes:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            # Write a fresh key beside it, then link it into place: of two processes
            # starting at once, one key wins and both read it.
            temp = path.with_name(f".{path.name}.{os.getpid()}.{_random.token_hex(4)}")
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, _random.token_hex(32).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(temp, path)
            except FileExistsError:
                pass
            finally:
                os.unlink(temp)
        key = path.read_bytes().strip()
    except OSError as err:
        raise FlowError(
            f"cannot read or create the key that hashes secret values for cache keys, {path}: "
            f"{err.strerror or err}. It must be a file only you can read: give JUPYTER_FLOW_KEYS a "
            "directory of your own (the store can stay shared)"
        ) from None
    if len(key) < 32:
        raise FlowError(f"the secret-hashing key {path} is empty or truncated: remove it and a new one "
                        "is made (results that depended on secrets are then computed again once)")
    return key


def keyed_hash(text: str) -> str:
    """HMAC-SHA256 of ``text`` with this user's secret-hashing key (hex): what cache keys
    carry of a secret, and nothing someone reading the store can test guesses against.

    ``keyed_hash("hunter2")`` differs from user to user, and from ``sha256("hunter2")``.
    """
    return hmac.new(_hash_key(), text.encode(), hashlib.sha256).hexdigest()
