"""Counts the requests the server is answering, so the in-process worker steps aside for them.

See :mod:`ravepilot_core.foreground`: before each job the worker waits (briefly, at most) until
no request is in flight, so a burst of API calls is not slowed by the emails it queues.
"""

from __future__ import annotations

from litestar.types import ASGIApp, Receive, Scope, Send

from ravepilot_core import RavePilot

__all__ = ["foreground_middleware"]


def foreground_middleware(app: ASGIApp) -> ASGIApp:
    """Wrap ``app`` so that every HTTP request counts as foreground work while it runs."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        ravepilot: RavePilot = scope["litestar_app"].state.ravepilot
        with ravepilot.foreground.serving():
            await app(scope, receive, send)

    return middleware
