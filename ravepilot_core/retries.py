"""When a failed webhook delivery is tried again, and when an endpoint is given up on.

The schedule is the seed's: 1m → 5m → 30m → 2h → 6h, so six attempts in all. Each delay is
stretched by up to 10 % random jitter (so a recovering endpoint is not hit by every retry at
once) and never shorter than the ``Retry-After`` the endpoint asked for, capped at 6 h.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

__all__ = [
    "DISABLE_AFTER",
    "MAX_ATTEMPTS",
    "RETRY_AFTER_CAP",
    "RETRY_SCHEDULE",
    "next_attempt_at",
    "parse_retry_after",
]

RETRY_SCHEDULE: tuple[timedelta, ...] = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=6),
)
MAX_ATTEMPTS = len(RETRY_SCHEDULE) + 1
JITTER = 0.10
RETRY_AFTER_CAP = timedelta(hours=6)
DISABLE_AFTER = 25  # consecutive failed attempts, across deliveries


def next_attempt_at(
    attempt: int,
    now: datetime,
    *,
    retry_after: timedelta | None = None,
    random_fraction: Callable[[], float] = random.random,
) -> datetime | None:
    """Return when to try again after failed attempt number ``attempt``, or None after the last.

    ``random_fraction`` returns a number in [0, 1); tests inject a fixed one.
    """
    if attempt >= MAX_ATTEMPTS:
        return None
    delay = RETRY_SCHEDULE[attempt - 1] * (1 + JITTER * random_fraction())
    if retry_after is not None:
        delay = max(delay, min(retry_after, RETRY_AFTER_CAP))
    # Storage keeps milliseconds; round here so what is stored is what was decided.
    return now + timedelta(milliseconds=int(delay / timedelta(milliseconds=1)))


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """Read a ``Retry-After`` header: delay-seconds or an HTTP date; None if absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=int(value))
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # an HTTP date is GMT by definition
        return None
    return max(moment - now, timedelta(0))
