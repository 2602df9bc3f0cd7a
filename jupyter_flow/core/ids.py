"""Identifiers that sort by creation time (ULID-like: 48-bit ms clock + 80 random bits)."""

from __future__ import annotations

import base64
import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
_lock = threading.Lock()
_last_ms = -1
_last_rand = 0


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


_B32 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET)
_prefix_ms = -1
_prefix = ""


def new_id() -> str:
    """Return a 26-character id; ids made later in this process sort after earlier ones.

    >>> a, b = new_id(), new_id()
    >>> a < b and len(a) == 26
    True
    """
    global _last_ms, _last_rand, _prefix_ms, _prefix
    with _lock:
        now = time.time_ns() // 1_000_000
        if now <= _last_ms:
            # Same millisecond (or the clock stepped back): keep order by counting up.
            now = _last_ms
            _last_rand += 1
        else:
            _last_rand = int.from_bytes(os.urandom(10), "big") >> 1
        _last_ms = now
        if now != _prefix_ms:
            _prefix_ms, _prefix = now, _encode(now, 10)
        # 80 bits are exactly 16 base32 digits: the standard codec, mapped to Crockford's.
        rand = (_last_rand & ((1 << 80) - 1)).to_bytes(10, "big")
        return _prefix + base64.b32encode(rand).decode().translate(_B32)


def id_time_ms(identifier: str) -> int:
    """Milliseconds since the epoch at which ``identifier`` was made."""
    value = 0
    for char in identifier[:10]:
        value = value * 32 + _ALPHABET.index(char)
    return value
