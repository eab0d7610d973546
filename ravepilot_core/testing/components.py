"""Skip a test whose component (a database, a browser, a server binary) is missing, or fail it.

A developer without PostgreSQL still gets a green run with a skip that says how to get it; CI sets
``RAVEPILOT_TEST_REQUIRE_ALL=1`` so the same test fails instead of passing unnoticed. Plugin test
suites use it the same way::

    from ravepilot_core.testing.components import require_component

    require_component(shutil.which("ffmpeg") is not None, "no ffmpeg: apt-get install ffmpeg")
"""

from __future__ import annotations

import os

__all__ = ["REQUIRE_ALL_VARIABLE", "require_component"]

REQUIRE_ALL_VARIABLE = "RAVEPILOT_TEST_REQUIRE_ALL"


def require_component(available: bool, reason: str) -> None:
    """Skip the running test when ``available`` is false, or fail it when CI demands everything.

    Args:
        available: Whether the component the test needs is there.
        reason: What is missing and how to get it (shown in the skip or failure).
    """
    if available:
        return
    import pytest  # only test code calls this

    if os.environ.get(REQUIRE_ALL_VARIABLE) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ALL_VARIABLE}=1 turns this skip into a failure)")
    pytest.skip(reason)
