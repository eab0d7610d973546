"""``GET /health``: liveness plus storage reachability (no auth)."""

from __future__ import annotations

from litestar import Response, get
from litestar.openapi.datastructures import ResponseSpec

from ravepilot_core import __version__
from ravepilot_core.errors import BackendError
from ravepilot_server.auth import RavePilotDep
from ravepilot_server.schemas import Health

__all__ = ["health"]


@get(
    "/health",
    tags=["operations"],
    summary="Health check",
    responses={503: ResponseSpec(data_container=Health, description="Storage unreachable")},
)
async def health(ravepilot: RavePilotDep) -> Response[Health]:
    """200 when storage answers, 503 when it does not."""
    try:
        await ravepilot.storage.ping()
    except BackendError:
        return Response(
            Health(status="degraded", storage="unreachable", version=__version__), status_code=503
        )
    return Response(Health(status="ok", storage="ok", version=__version__), status_code=200)
