"""Operations: ``GET /health`` (liveness, storage reachability) and ``GET /metrics`` (no auth)."""

from __future__ import annotations

from litestar import Response, get
from litestar.openapi.datastructures import ResponseSpec

from ravepilot_core import __version__
from ravepilot_core.errors import BackendError
from ravepilot_core.metrics import CONTENT_TYPE
from ravepilot_server.request import RavePilotRequest
from ravepilot_server.schemas import Health

__all__ = ["health", "metrics"]


@get(
    "/health",
    tags=["operations"],
    summary="Health check",
    responses={503: ResponseSpec(data_container=Health, description="Storage unreachable")},
)
async def health(request: RavePilotRequest) -> Response[Health]:
    """200 when storage answers, 503 when it does not."""
    try:
        await request.ravepilot.storage.ping()
    except BackendError:
        return Response(
            Health(status="degraded", storage="unreachable", version=__version__), status_code=503
        )
    return Response(Health(status="ok", storage="ok", version=__version__), status_code=200)


@get("/metrics", tags=["operations"], summary="Prometheus metrics", include_in_schema=False)
async def metrics(request: RavePilotRequest) -> Response[bytes]:
    """Webhook delivery counters, latency histogram and queue gauges, in Prometheus's format."""
    ravepilot = request.ravepilot
    body = await ravepilot.metrics.render(ravepilot.storage, ravepilot.context.clock)
    return Response(body, media_type=CONTENT_TYPE)
