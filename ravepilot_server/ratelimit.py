"""Rate limits for the public (token-authorised) routes: per invite token and per address.

Fixed one-minute windows counted in this process: cheap, and enough to stop a script hammering
one link or guessing tokens from one address. (Several server processes each count their own
share, so the effective limit is at most that many times higher.)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from litestar.types import ASGIApp, Receive, Scope, Send

from ravepilot_core.errors import RateLimited

__all__ = ["PortalRateLimit"]

WINDOW_SECONDS = 60.0


class _Windows:
    """Counts hits per key in the current window; the previous window's counts are dropped."""

    def __init__(self, limit: int, now: Callable[[], float]) -> None:
        self.limit = limit
        self._now = now
        self._window = -1
        self._counts: dict[str, int] = {}

    def hit(self, key: str) -> float | None:
        """Count one hit; return the seconds to wait when over the limit, else None."""
        now = self._now()
        window = int(now // WINDOW_SECONDS)
        if window != self._window:
            self._window, self._counts = window, {}
        count = self._counts.get(key, 0) + 1
        self._counts[key] = count
        if count > self.limit:
            return (window + 1) * WINDOW_SECONDS - now
        return None


class PortalRateLimit:
    """ASGI middleware factory: a request budget per minute per link and per client address.

    At most ``per_token`` requests a minute reach the wrapped routes for one invite token, and
    ``per_address`` from one client address.
    """

    def __init__(
        self,
        *,
        per_token: int,
        per_address: int,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tokens = _Windows(per_token, now)
        self._addresses = _Windows(per_address, now)

    def __call__(self, app: ASGIApp) -> ASGIApp:
        """Wrap ``app``."""

        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                client = scope.get("client")
                address = client[0] if client else "unknown"
                token = str(scope.get("path_params", {}).get("invite_token", ""))
                wait = self._addresses.hit(address)
                if wait is None and token:
                    wait = self._tokens.hit(token)
                if wait is not None:
                    raise RateLimited(
                        "too many requests for this link: wait a moment and try again",
                        retry_after=max(1, math.ceil(wait)),
                    )
            await app(scope, receive, send)

        return middleware
