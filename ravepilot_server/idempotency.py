"""``Idempotency-Key`` support for the routes that create things."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import msgspec
from litestar import Response

from ravepilot_core.idempotency import request_fingerprint
from ravepilot_server.request import RavePilotRequest

__all__ = ["idempotent"]

T = TypeVar("T")
_encoder = msgspec.json.Encoder()


async def idempotent(
    request: RavePilotRequest, create: Callable[[], Awaitable[tuple[int, T]]]
) -> Response[T]:
    """Run ``create`` once per key: a repeat replays the first 2xx response byte for byte."""
    key = request.headers.get("idempotency-key")
    if key is None:
        status, result = await create()
        return Response(result, status_code=status)
    ravepilot = request.ravepilot
    workspace_id = request.principal.workspace_id
    fingerprint = request_fingerprint(request.method, request.url.path, await request.body())
    replay = await ravepilot.idempotency.begin(workspace_id, key, fingerprint)
    if replay is not None:
        return Response(
            replay.response_body,  # type: ignore[arg-type]
            status_code=replay.response_status or 200,
            media_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )
    try:
        status, result = await create()
        body = _encoder.encode(result)
        await ravepilot.idempotency.complete(workspace_id, key, status, body)
    except BaseException:
        # Only successes are remembered: after an error the client may fix or retry the call.
        with anyio.CancelScope(shield=True):
            await ravepilot.idempotency.release(workspace_id, key)
        raise
    return Response(body, status_code=status, media_type="application/json")  # type: ignore[arg-type]
