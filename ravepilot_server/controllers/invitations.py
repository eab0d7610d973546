"""``POST /v1/invitations`` and ``POST /v1/invitations/link``."""

from __future__ import annotations

from litestar import Controller, Response, post
from litestar.params import JSONBody

from ravepilot_core.invitations import InvitationRequest, LinkRequest
from ravepilot_core.models import InvitationResult
from ravepilot_server.idempotency import idempotent
from ravepilot_server.openapi import documented
from ravepilot_server.request import RavePilotRequest
from ravepilot_server.strict import strict_body

__all__ = ["InvitationController"]


class InvitationController(Controller):
    """Create invitations: the same customer always gets the same link."""

    path = "/invitations"
    tags = ["invitations"]
    opt = {"scope": "invitations"}

    async def _create(
        self, request: RavePilotRequest, data: InvitationRequest | LinkRequest
    ) -> Response[InvitationResult]:
        request_body = await strict_body(request, data)

        async def create() -> tuple[int, InvitationResult]:
            result = await request.ravepilot.invitations.create(
                request.principal.workspace_id, request_body
            )
            return (200 if result.reused else 201), result

        return await idempotent(request, create)

    @post(
        "/",
        status_code=201,
        summary="Create an invitation",
        description="Creates or reuses the customer's submission and, by default, emails the link."
        " 201 when created, 200 when reused.",
        responses=documented(s200=InvitationResult),
    )
    async def create_invitation(
        self, request: RavePilotRequest, data: JSONBody[InvitationRequest]
    ) -> Response[InvitationResult]:
        """Create an invitation."""
        return await self._create(request, data)

    @post(
        "/link",
        status_code=201,
        summary="Create an invite link without email",
        description="The same creator for embedding in your own app; it never sends email.",
        responses=documented(s200=InvitationResult),
    )
    async def create_link(
        self, request: RavePilotRequest, data: JSONBody[LinkRequest]
    ) -> Response[InvitationResult]:
        """Create an invite link."""
        return await self._create(request, data)
