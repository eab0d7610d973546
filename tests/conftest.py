"""Fixtures shared by every test package."""

from __future__ import annotations

import os

import pytest

REQUIRE_ALL = os.environ.get("RAVEPILOT_TEST_REQUIRE_ALL") == "1"


def require(condition: bool, reason: str) -> None:
    """Skip when a component is missing, unless CI demands everything (then fail)."""
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"{reason} (RAVEPILOT_TEST_REQUIRE_ALL=1 turns this skip into a failure)")
    pytest.skip(reason)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
