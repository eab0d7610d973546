"""Correct ``Allow`` headers on automatic OPTIONS answers.

Litestar builds the OPTIONS answer of a path when the path's first handler is registered, so a
path served by several handlers (``GET`` and ``PATCH /v1/collectors/{id}``) advertised only some
of them. This middleware rewrites the header from the final route table.
"""

from __future__ import annotations

import re

from litestar import Litestar
from litestar.datastructures import MutableScopeHeaders
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["allow_header_middleware"]

_PARAMETER_TYPE = re.compile(r":[^}]+}")


def _untyped(path: str) -> str:
    """``/v1/x/{id:str}`` -> ``/v1/x/{id}``: route paths and scope templates differ there."""
    return _PARAMETER_TYPE.sub("}", path)


def allow_header_middleware(app: ASGIApp) -> ASGIApp:
    """Wrap ``app`` so that OPTIONS responses list every method of the matched path."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "OPTIONS":
            await app(scope, receive, send)
            return
        litestar: Litestar = scope["litestar_app"]
        template = _untyped(scope.get("path_template", ""))
        methods = next(
            (
                sorted(route.methods)
                for route in litestar.routes
                if isinstance(route, HTTPRoute) and _untyped(route.path) == template
            ),
            None,
        )

        async def send_with_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and methods:
                MutableScopeHeaders.from_message(message)["Allow"] = ", ".join(methods)
            await send(message)

        await app(scope, receive, send_with_allow)

    return middleware
