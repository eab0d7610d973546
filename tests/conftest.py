"""Fixtures shared by every test package."""

from __future__ import annotations

import pytest

from ravepilot_core.testing.components import require_component as require

__all__ = ["require"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
