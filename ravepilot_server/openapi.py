"""What the OpenAPI document says about responses besides the main one."""

from __future__ import annotations

from typing import Any

from litestar.openapi.datastructures import ResponseSpec

from ravepilot_server.errors import ErrorBody

__all__ = ["documented"]

_ERROR_DESCRIPTIONS = {
    400: "Invalid request: the error says what to fix",
    401: "Missing, malformed, unknown or revoked API key",
    403: "The API key lacks the scope this route needs",
    404: "No such resource in your workspace",
    409: "Conflicts with the current state (or an Idempotency-Key clash)",
    413: "Request body too large",
    415: "Not a media type RavePilot accepts",
    429: "Too many requests: wait for Retry-After seconds",
    503: "A backend is unavailable; safe to retry",
}
API_ERRORS = (400, 401, 403, 404, 409, 413)


def documented(*errors: int, **alternatives: Any) -> dict[int, ResponseSpec]:
    """Return ``responses=`` for a route: its error statuses and alternative successes.

    ``alternatives`` maps ``"s200"``-style names to body types, e.g. ``s200=InvitationResult``.
    """
    specs = {
        code: ResponseSpec(
            data_container=ErrorBody,
            description=_ERROR_DESCRIPTIONS[code],
            generate_examples=False,
        )
        for code in (errors or API_ERRORS)
    }
    for name, body in alternatives.items():
        code = int(name.removeprefix("s"))
        specs[code] = ResponseSpec(
            data_container=body, description="Success", generate_examples=False
        )
    return specs
