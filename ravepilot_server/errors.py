"""The one exception handler: every error leaves as ``{"error": ..., "status": ...}``."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException

from ravepilot_core.errors import RateLimited, RavePilotError

__all__ = ["ErrorBody", "handle_exception"]

log = logging.getLogger("ravepilot.server")


class ErrorBody(msgspec.Struct, kw_only=True):
    """The body of every error response."""

    error: str
    status: int
    code: str | None = None


_HTTP_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    429: "rate_limited",
}
_HTTP_MESSAGES = {
    404: "not found: no such route; see /schema for the API",
    405: "method not allowed on this route; see /schema for the API",
    413: "request body too large",
}


def _validation_message(exc: ValidationException) -> str:
    """Say which field is wrong and how, from Litestar's validation details."""
    extra: Any = exc.extra
    if isinstance(extra, list) and any(
        isinstance(item, dict) and item.get("key") == "data" and item.get("message") == "'data'"
        for item in extra
    ):  # Litestar's way of saying there was no body at all
        return "the request body is empty: send a JSON object"
    problems = []
    if isinstance(extra, list):
        for item in extra:
            if isinstance(item, dict):
                key, message = item.get("key"), item.get("message", "")
                source = getattr(item.get("source"), "value", item.get("source"))
                where = f"{source} parameter {key!r}" if source and source != "body" else key
                problems.append(f"{where}: {message}" if where else str(message))
            else:
                problems.append(str(item))
    return "invalid request: " + ("; ".join(p for p in problems if p) or exc.detail)


def handle_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    """Map any exception to the error contract; 5xx never leaks details."""
    headers: dict[str, str] = {}
    code: str | None = None
    if isinstance(exc, RavePilotError):
        status, message, code = exc.status, exc.message, exc.code
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(exc.retry_after)
        if status >= 500:
            log.error("%s on %s %s: %s", code, request.method, request.url.path, message)
            if status == 500:
                message = "internal error"
    elif isinstance(exc, ValidationException):
        status, message, code = 400, _validation_message(exc), "invalid_request"
    elif isinstance(exc, HTTPException):
        status = exc.status_code
        message = _HTTP_MESSAGES.get(status) or exc.detail
        if status == 400 and isinstance(exc.__cause__, SerializationException):
            message = f"malformed JSON body ({exc.detail}); send a JSON object"
        code = _HTTP_CODES.get(status)
        headers.update(exc.headers or {})
    else:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        status, message, code = 500, "internal error", "internal_error"
    return Response(
        ErrorBody(error=message, status=status, code=code), status_code=status, headers=headers
    )
