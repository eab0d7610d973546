"""Prefixed, time-sortable identifiers (``sub_01JD...``).

An id is a prefix, an underscore and 26 Crockford base32 characters: 48 bits of milliseconds since
the epoch followed by 80 random bits, as in ULID. Ids made in the same millisecond by one process
increase monotonically, so ``ORDER BY id`` is creation order and keyset pagination can use the id
alone.
"""

from __future__ import annotations

import secrets
import threading
from datetime import datetime

__all__ = ["new_id", "timestamp_ms"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80
_lock = threading.Lock()
_last_ms = -1
_last_random = 0


def timestamp_ms(moment: datetime) -> int:
    """Return the Unix time of ``moment`` in whole milliseconds."""
    return int(moment.timestamp() * 1000)


_PAIRS = [first + second for first in _ALPHABET for second in _ALPHABET]  # 10 bits each


def _encode(value: int) -> str:
    """The 130-bit value as 26 base32 characters, most significant first."""
    return "".join(_PAIRS[(value >> shift) & 1023] for shift in range(120, -10, -10))


def new_id(prefix: str, moment: datetime) -> str:
    """Return a new id with ``prefix`` whose time part is ``moment``."""
    global _last_ms, _last_random
    ms = timestamp_ms(moment)
    with _lock:
        if ms == _last_ms:
            _last_random = (_last_random + 1) & ((1 << _RANDOM_BITS) - 1)
        else:
            _last_ms = ms
            _last_random = secrets.randbits(_RANDOM_BITS - 1)  # headroom for increments
        random_part = _last_random
    return f"{prefix}_{_encode((ms << _RANDOM_BITS) | random_part)}"
