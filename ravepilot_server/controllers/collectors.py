"""``/v1/collectors``: campaigns with their branding and script (scope ``admin``)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.params import FromPath, JSONBody

from ravepilot_core import CollectorChanges, NewCollector
from ravepilot_core.models import Collector
from ravepilot_server.auth import PrincipalDep, RavePilotDep
from ravepilot_server.idempotency import idempotent
from ravepilot_server.openapi import documented
from ravepilot_server.schemas import CollectorList
from ravepilot_server.strict import strict_body

__all__ = ["CollectorController"]


class CollectorController(Controller):
    """Create, change and read collectors."""

    path = "/collectors"
    tags = ["collectors"]
    opt = {"scope": "admin"}

    @get("/", summary="List collectors", responses=documented())
    async def list_collectors(
        self, ravepilot: RavePilotDep, principal: PrincipalDep
    ) -> CollectorList:
        """List the workspace's collectors, newest first."""
        return CollectorList(data=await ravepilot.collectors.list(principal.workspace_id))

    @post("/", status_code=201, summary="Create a collector", responses=documented())
    async def create_collector(
        self,
        request: Request[Any, Any, Any],
        ravepilot: RavePilotDep,
        principal: PrincipalDep,
        data: JSONBody[NewCollector],
    ) -> Response[Collector]:
        """Create a collector (campaign)."""
        spec = await strict_body(request, data)

        async def create() -> tuple[int, Collector]:
            return 201, await ravepilot.collectors.create(principal.workspace_id, spec)

        return await idempotent(request, ravepilot, principal, create)

    @get("/{collector_id:str}", summary="Get a collector", responses=documented())
    async def get_collector(
        self, ravepilot: RavePilotDep, principal: PrincipalDep, collector_id: FromPath[str]
    ) -> Collector:
        """Get one collector."""
        return await ravepilot.collectors.get(principal.workspace_id, collector_id)

    @patch("/{collector_id:str}", summary="Change a collector", responses=documented())
    async def update_collector(
        self,
        request: Request[Any, Any, Any],
        ravepilot: RavePilotDep,
        principal: PrincipalDep,
        collector_id: FromPath[str],
        data: JSONBody[CollectorChanges],
    ) -> Collector:
        """Change a collector's name, branding, host, consent text, script or render settings."""
        changes = await strict_body(request, data)
        return await ravepilot.collectors.update(principal.workspace_id, collector_id, changes)
