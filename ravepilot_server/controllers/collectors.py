"""``/v1/collectors``: campaigns with their branding and script (scope ``admin``)."""

from __future__ import annotations

from litestar import Controller, Response, get, patch, post
from litestar.params import FromPath, JSONBody

from ravepilot_core import CollectorChanges, NewCollector
from ravepilot_core.models import Collector
from ravepilot_server.idempotency import idempotent
from ravepilot_server.openapi import documented
from ravepilot_server.request import RavePilotRequest
from ravepilot_server.schemas import CollectorList
from ravepilot_server.strict import strict_body

__all__ = ["CollectorController"]


class CollectorController(Controller):
    """Create, change and read collectors."""

    path = "/collectors"
    tags = ["collectors"]
    opt = {"scope": "admin"}

    @get("/", summary="List collectors", responses=documented())
    async def list_collectors(self, request: RavePilotRequest) -> CollectorList:
        """List the workspace's collectors, newest first."""
        return CollectorList(
            data=await request.ravepilot.collectors.list(request.principal.workspace_id)
        )

    @post("/", status_code=201, summary="Create a collector", responses=documented())
    async def create_collector(
        self, request: RavePilotRequest, data: JSONBody[NewCollector]
    ) -> Response[Collector]:
        """Create a collector (campaign)."""
        spec = await strict_body(request, data)

        async def create() -> tuple[int, Collector]:
            return 201, await request.ravepilot.collectors.create(
                request.principal.workspace_id, spec
            )

        return await idempotent(request, create)

    @get("/{collector_id:str}", summary="Get a collector", responses=documented())
    async def get_collector(
        self, request: RavePilotRequest, collector_id: FromPath[str]
    ) -> Collector:
        """Get one collector."""
        return await request.ravepilot.collectors.get(request.principal.workspace_id, collector_id)

    @patch("/{collector_id:str}", summary="Change a collector", responses=documented())
    async def update_collector(
        self,
        request: RavePilotRequest,
        collector_id: FromPath[str],
        data: JSONBody[CollectorChanges],
    ) -> Collector:
        """Change a collector's name, branding, host, consent text, script or render settings."""
        changes = await strict_body(request, data)
        return await request.ravepilot.collectors.update(
            request.principal.workspace_id, collector_id, changes
        )
