"""Strict JSON bodies.

Litestar converts request bodies in msgspec's lax mode (it must, for query strings), which
would accept ``0`` for ``false`` or ``"5"`` for ``5``. An API that says what to fix rejects
those, so each body is decoded again, strictly, from the raw bytes.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from litestar import Request

from ravepilot_core.errors import InvalidRequest

__all__ = ["strict_body"]

T = TypeVar("T")


async def strict_body(request: Request[Any, Any, Any], parsed: T) -> T:
    """Return the body decoded strictly as the type of ``parsed`` (Litestar's lax result)."""
    try:
        return msgspec.json.decode(await request.body(), type=type(parsed))
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid request: {exc}") from None
