"""Identifiers that sort by creation time (ULID-like: 48-bit ms clock + 80 random bits).

Ids made in the same millisecond count up from one random value, so a block of ids (the
tasks of a run) costs one clock read and one random draw, and random bytes are taken
from the OS a few kilobytes at a time: a run of 10,000 tasks makes no 10,000 system calls.
"""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # 10 bits -> two digits
_MASK80 = (1 << 80) - 1
_ENTROPY_BYTES = 4096
_lock = threading.Lock()
_last_ms = -1
_last_rand = 0
_prefix_ms = -1
_prefix = ""
_entropy = b""
_entropy_at = 0


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def _random79() -> int:
    """79 random bits (the top bit of the 80 stays clear: room to count up)."""
    global _entropy, _entropy_at
    if _entropy_at + 10 > len(_entropy):
        _entropy, _entropy_at = os.urandom(_ENTROPY_BYTES), 0
    chunk = _entropy[_entropy_at:_entropy_at + 10]
    _entropy_at += 10
    return int.from_bytes(chunk, "big") >> 1


def _forget_in_child() -> None:
    # A forked child must not count on from its parent's last id (it would make the same
    # ids in the same millisecond) nor reuse its parent's random bytes.
    global _last_ms, _entropy, _entropy_at
    _last_ms, _entropy, _entropy_at = -1, b"", 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def _reserve(count: int) -> tuple[str, int]:
    """The time prefix and the first of ``count`` consecutive random values."""
    global _last_ms, _last_rand, _prefix_ms, _prefix
    with _lock:
        now = time.time_ns() // 1_000_000
        if now <= _last_ms:
            # Same millisecond (or the clock stepped back): keep order by counting up.
            now = _last_ms
            first = _last_rand + 1
        else:
            first = _random79()
        _last_ms = now
        _last_rand = first + count - 1
        if now != _prefix_ms:
            _prefix_ms, _prefix = now, _encode(now, 10)
        return _prefix, first


def new_id() -> str:
    """Return a 26-character id; ids made later in this process sort after earlier ones.

    >>> a, b = new_id(), new_id()
    >>> a < b and len(a) == 26
    True
    """
    prefix, value = _reserve(1)
    value &= _MASK80
    return prefix + "".join(_PAIRS[(value >> shift) & 1023] for shift in (70, 60, 50, 40, 30, 20, 10, 0))


def new_ids(count: int) -> list[str]:
    """``count`` ids at once, in increasing order, as if made by ``count`` calls of :func:`new_id`.

    >>> ids = new_ids(3)
    >>> ids == sorted(ids) and len(set(ids)) == 3 and new_id() > ids[-1]
    True
    """
    if count <= 0:
        return []
    prefix, first = _reserve(count)
    out = []
    high, head = -1, ""
    for value in range(first, first + count):
        value &= _MASK80
        if value >> 20 != high:  # the first 12 random digits change once per 2**20 ids
            high = value >> 20
            head = prefix + "".join(_PAIRS[(high >> shift) & 1023] for shift in (50, 40, 30, 20, 10, 0))
        low = value & 0xFFFFF
        out.append(head + _PAIRS[low >> 10] + _PAIRS[low & 1023])
    return out


def id_time_ms(identifier: str) -> int:
    """Milliseconds since the epoch at which ``identifier`` was made."""
    value = 0
    for char in identifier[:10]:
        value = value * 32 + _ALPHABET.index(char)
    return value
