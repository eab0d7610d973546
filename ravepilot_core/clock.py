"""The real clock; tests inject :class:`ravepilot_core.testing.FrozenClock` instead."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["SystemClock", "utc_from_ms"]


class SystemClock:
    """Wall-clock time in UTC, truncated to milliseconds (what storage keeps)."""

    def now(self) -> datetime:
        """Return the current UTC time with millisecond precision."""
        moment = datetime.now(UTC)
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def utc_from_ms(ms: int) -> datetime:
    """Return the aware UTC datetime for Unix milliseconds."""
    return datetime.fromtimestamp(ms / 1000, UTC)
