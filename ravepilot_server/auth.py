"""API key authentication and scope checks for the ``/v1`` routes.

One middleware on the ``/v1`` router does both: it authenticates the key (401), then checks the
scope the route declares in its ``opt={"scope": ...}`` (403). It runs after routing and before
the body is parsed, so a bad key is always a 401, never a 400. (A Litestar guard would do the
same, but Litestar copies the route handler for every guard call, ~15% of a small request.)
Handlers read the caller as ``request.principal`` (:mod:`ravepilot_server.request`).
"""

from __future__ import annotations

from litestar.types import ASGIApp, Receive, Scope, Send

from ravepilot_core import RavePilot
from ravepilot_core.api_keys import require_scope

__all__ = ["api_key_middleware"]


def presented_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    """Return the key from ``Authorization: Bearer`` or ``X-API-Key`` in raw ASGI headers."""
    api_key = None
    for name, value in headers:
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                return credentials.strip() or None
            return value.decode("latin-1").strip()  # malformed: let authenticate() say so
        if name == b"x-api-key":
            api_key = value.decode("latin-1")
    return api_key


def api_key_middleware(app: ASGIApp) -> ASGIApp:
    """Authenticate every request to the wrapped routes and check the route's scope."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] != "OPTIONS":  # preflights carry no key
            ravepilot: RavePilot = scope["litestar_app"].state.ravepilot
            principal = await ravepilot.api_keys.authenticate(presented_key(scope["headers"]))
            required = scope["route_handler"].opt.get("scope")
            if required is not None:
                require_scope(principal, required)
            scope["state"]["principal"] = principal
        await app(scope, receive, send)

    return middleware
