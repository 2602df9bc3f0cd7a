"""Values whose names look secret, and what may be stored of them: a marker, never the value.

A name looks secret when it contains one of ``SECRET_WORDS`` (``api_token``,
``DB_PASSWORD``, ``aws_secret_access_key`` …). Cache keys keep only a hash of such values
(``core.keys.named_token``); run parameters and REST responses keep :data:`REDACTED`.

>>> redact({"lr": 0.1, "api_token": "s3cr3t", "db": {"password": "pw", "host": "h"}})
{'lr': 0.1, 'api_token': '***', 'db': {'password': '***', 'host': 'h'}}
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

SECRET_WORDS = ("token", "password", "passwd", "secret", "key", "credential", "apikey")
#: What is stored in place of a secret-named value.
REDACTED = "***"


@lru_cache(maxsize=4096)
def looks_secret(name: str) -> bool:
    """Whether a variable or parameter name looks like it holds a secret.

    >>> looks_secret("API_TOKEN"), looks_secret("lr")
    (True, False)
    """
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS)


def _worth_hiding(value: Any) -> bool:
    # None, "" and booleans reveal nothing (``use_token=True``); everything else may.
    return value is not None and value != "" and not isinstance(value, bool)


def redact(value: Any, name: str = "") -> Any:
    """A copy of ``value`` with every value under a secret-looking key replaced by
    :data:`REDACTED`, through nested dicts and lists (``name`` is the key ``value`` is under).
    """
    if name and looks_secret(name) and _worth_hiding(value):
        return REDACTED
    if isinstance(value, dict):
        return {key: redact(item, str(key)) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(item) for item in value]
    return value


def redacted_names(params: dict[str, Any]) -> list[str]:
    """Secret-looking names whose value is the :data:`REDACTED` marker (or a list holding
    it): a stored run's parameters passed back, which no longer hold the secret.

    >>> redacted_names({"api_token": "***", "lr": "***", "password": ["***"]})
    ['api_token', 'password']
    """
    found = []
    for name, value in params.items():
        if not looks_secret(str(name)):
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(item, str) and item == REDACTED for item in values):
            found.append(str(name))
    return found
