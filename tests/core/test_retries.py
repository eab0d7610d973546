"""The retry schedule: 1m → 5m → 30m → 2h → 6h, up to 10 % jitter, Retry-After, six attempts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ravepilot_core.retries import (
    MAX_ATTEMPTS,
    RETRY_AFTER_CAP,
    next_attempt_at,
    parse_retry_after,
)

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
SCHEDULE = [timedelta(minutes=m) for m in (1, 5, 30, 120, 360)]


@pytest.mark.parametrize(("attempt", "delay"), list(enumerate(SCHEDULE, start=1)))
def test_each_failed_attempt_waits_its_delay_plus_at_most_ten_percent(
    attempt: int, delay: timedelta
) -> None:
    earliest = next_attempt_at(attempt, NOW, random_fraction=lambda: 0.0)
    latest = next_attempt_at(attempt, NOW, random_fraction=lambda: 0.999999)
    assert earliest == NOW + delay
    assert latest is not None and NOW + delay < latest <= NOW + delay * 1.1


def test_jitter_really_varies() -> None:
    seen = {next_attempt_at(1, NOW) for _ in range(50)}
    assert len(seen) > 10
    assert all(t is not None and NOW + SCHEDULE[0] <= t <= NOW + SCHEDULE[0] * 1.1 for t in seen)


def test_the_sixth_failed_attempt_is_the_last() -> None:
    assert MAX_ATTEMPTS == 6
    assert next_attempt_at(5, NOW) is not None
    assert next_attempt_at(6, NOW) is None
    assert next_attempt_at(6, NOW, retry_after=timedelta(seconds=1)) is None


def test_retry_after_is_a_floor_capped_at_six_hours() -> None:
    no_jitter = {"random_fraction": lambda: 0.0}
    longer = next_attempt_at(1, NOW, retry_after=timedelta(hours=1), **no_jitter)
    assert longer == NOW + timedelta(hours=1)
    shorter = next_attempt_at(2, NOW, retry_after=timedelta(seconds=10), **no_jitter)
    assert shorter == NOW + timedelta(minutes=5)  # never earlier than the schedule
    huge = next_attempt_at(1, NOW, retry_after=timedelta(days=3), **no_jitter)
    assert huge == NOW + RETRY_AFTER_CAP


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", timedelta(seconds=120)),
        (" 0 ", timedelta(0)),
        ("Sun, 22 Nov 2026 11:30:00 GMT", timedelta(hours=1, minutes=30)),
        ("Sun, 22 Nov 2026 09:00:00 GMT", timedelta(0)),  # in the past: no extra wait
        (None, None),
        ("", None),
        ("-5", None),
        ("soon", None),
        ("1.5", None),
    ],
)
def test_retry_after_header_forms(header: str | None, expected: timedelta | None) -> None:
    assert parse_retry_after(header, NOW) == expected
