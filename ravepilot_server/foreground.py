"""Counts the requests the server is answering, so the in-process worker steps aside for them.

See :mod:`ravepilot_core.foreground`: a job about to start while any request is in flight first
sleeps :data:`~ravepilot_core.jobs.STEP_ASIDE`, once. A route whose requests last as long as the
customer's connection (a tus upload, a video streamed to a browser) declares
``opt={"foreground": False}``: jobs need not wait for those, and an upload of several minutes
would otherwise slow every job by the pause.
"""

from __future__ import annotations

from litestar.types import ASGIApp, Receive, Scope, Send

from ravepilot_core import RavePilot

__all__ = ["foreground_middleware"]


def foreground_middleware(app: ASGIApp) -> ASGIApp:
    """Wrap ``app`` so that each HTTP request counts as foreground work while it runs."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["route_handler"].opt.get("foreground", True):
            await app(scope, receive, send)
            return
        ravepilot: RavePilot = scope["litestar_app"].state.ravepilot
        with ravepilot.foreground.serving():
            await app(scope, receive, send)

    return middleware
