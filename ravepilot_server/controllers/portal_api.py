"""The portal's JSON calls under ``/r/{invite_token}/api``, authorised by the token alone."""

from __future__ import annotations

import msgspec
from litestar import Controller, get, post
from litestar.params import FromPath, JSONBody

from ravepilot_core.models import PortalSession
from ravepilot_server.openapi import documented
from ravepilot_server.request import RavePilotRequest

__all__ = ["PortalApiController"]

_PORTAL_ERRORS = (400, 404, 409, 429)


class ConsentBody(msgspec.Struct, kw_only=True):
    """The customer's answer to the consent text."""

    accepted: bool


class Withdrawn(msgspec.Struct, kw_only=True):
    """The answer to a withdrawal: the recordings are gone."""

    ok: bool
    status: str


class PortalApiController(Controller):
    """Session, consent, finish and withdraw for the customer's recording page."""

    path = "/r/{invite_token:str}/api"
    tags = ["portal"]

    @get("/session", summary="What the recording page shows", responses=documented(404, 429))
    async def session(
        self, request: RavePilotRequest, invite_token: FromPath[str]
    ) -> PortalSession:
        """Return branding, script, consent text and the clips uploaded so far."""
        return await request.ravepilot.portal.session(invite_token)

    @post(
        "/consent",
        status_code=200,
        summary="Give consent (fires submission.started)",
        responses=documented(*_PORTAL_ERRORS),
    )
    async def consent(
        self, request: RavePilotRequest, invite_token: FromPath[str], data: JSONBody[ConsentBody]
    ) -> PortalSession:
        """Record consent to the collector's consent text, with its time and version."""
        return await request.ravepilot.portal.consent(invite_token, accepted=data.accepted)

    @post(
        "/finish",
        status_code=200,
        summary="Hand the clips in (fires submission.submitted)",
        responses=documented(*_PORTAL_ERRORS),
    )
    async def finish(self, request: RavePilotRequest, invite_token: FromPath[str]) -> PortalSession:
        """Finish recording; needs at least one uploaded clip."""
        return await request.ravepilot.portal.finish(invite_token)

    @post(
        "/withdraw",
        status_code=200,
        summary="Withdraw consent and delete the recordings (fires submission.withdrawn)",
        responses=documented(*_PORTAL_ERRORS),
    )
    async def withdraw(self, request: RavePilotRequest, invite_token: FromPath[str]) -> Withdrawn:
        """Withdraw: the media is deleted and the link stops working."""
        await request.ravepilot.portal.withdraw(invite_token)
        return Withdrawn(ok=True, status="withdrawn")
