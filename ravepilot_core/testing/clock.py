"""A clock that stands still until a test moves it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["DEFAULT_START", "FrozenClock"]

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


def _to_ms_utc(moment: datetime) -> datetime:
    """Return ``moment`` in UTC truncated to milliseconds, as storage keeps it."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"FrozenClock needs an aware datetime, got the naive {moment!r}")
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class FrozenClock:
    """A :class:`~ravepilot_core.protocols.Clock` whose time only changes when told to.

    Times are aware UTC datetimes with millisecond precision, like the system clock's; anything
    finer given to the constructor, :meth:`advance` or :meth:`set` is truncated.

    Example::

        clock = FrozenClock()
        clock.advance(minutes=10)
        assert clock.now() == datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = _to_ms_utc(DEFAULT_START if start is None else start)

    def now(self) -> datetime:
        """Return the frozen time."""
        return self._now

    def advance(self, delta: timedelta | None = None, /, **timedelta_kwargs: float) -> datetime:
        """Move the clock forward and return the new time.

        Args:
            delta: How far to move, as a timedelta.
            **timedelta_kwargs: Or the same as keyword arguments of :class:`~datetime.timedelta`
                (``seconds=30``, ``hours=2``...); they are added to ``delta`` when both are given.

        Raises:
            ValueError: If the step is negative (use :meth:`set` to go back in time).
        """
        step = (delta or timedelta()) + timedelta(**timedelta_kwargs)
        if step < timedelta():
            raise ValueError(f"advance() only moves forward; use set() to go back (got {step})")
        self._now = _to_ms_utc(self._now + step)
        return self._now

    def set(self, moment: datetime) -> None:
        """Jump to ``moment`` (forward or back).

        Args:
            moment: The new time; it must be timezone-aware.

        Raises:
            ValueError: If ``moment`` is naive.
        """
        self._now = _to_ms_utc(moment)

    def __repr__(self) -> str:
        return f"FrozenClock({self._now.isoformat()})"
