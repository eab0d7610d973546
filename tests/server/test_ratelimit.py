"""The portal's rate limit: fixed one-minute windows per link and per address."""

from __future__ import annotations

from typing import Any

import pytest

from ravepilot_core.errors import RateLimited
from ravepilot_server.ratelimit import PortalRateLimit

pytestmark = pytest.mark.anyio


class Time:
    def __init__(self) -> None:
        self.now = 120.0

    def __call__(self) -> float:
        return self.now


async def call(app: Any, token: str, address: str) -> None:
    scope = {"type": "http", "client": (address, 5000), "path_params": {"invite_token": token}}
    await app(scope, None, None)


@pytest.fixture
def limited() -> tuple[Any, Time, list[str]]:
    passed: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        passed.append(scope["path_params"]["invite_token"])

    time = Time()
    return PortalRateLimit(per_token=2, per_address=3, now=time)(inner), time, passed


async def test_a_link_gets_its_budget_per_minute(limited: tuple[Any, Time, list[str]]) -> None:
    app, time, passed = limited
    await call(app, "a", "10.0.0.1")
    await call(app, "a", "10.0.0.2")
    time.now += 15
    with pytest.raises(RateLimited) as refused:
        await call(app, "a", "10.0.0.3")
    assert refused.value.retry_after == 45  # until the window ends
    time.now += 45
    await call(app, "a", "10.0.0.4")  # a new window
    assert passed == ["a", "a", "a"]


async def test_an_address_guessing_tokens_is_stopped(limited: tuple[Any, Time, list[str]]) -> None:
    app, _, passed = limited
    for token in ("x", "y", "z"):
        await call(app, token, "10.0.0.9")
    with pytest.raises(RateLimited):
        await call(app, "w", "10.0.0.9")
    await call(app, "w", "10.0.0.10")  # another address is not affected
    assert passed == ["x", "y", "z", "w"]
