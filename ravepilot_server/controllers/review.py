"""``POST /v1/clips/{id}/approve`` and ``/reject``: the business's review (scope ``review``)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, post
from litestar.params import FromPath, JSONBody

from ravepilot_core.models import Clip
from ravepilot_core.review import MAX_NOTE_LENGTH
from ravepilot_server.auth import PrincipalDep, RavePilotDep
from ravepilot_server.openapi import documented

__all__ = ["ClipController"]


class ReviewNote(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An optional note to keep with the decision."""

    note: Annotated[str, msgspec.Meta(max_length=MAX_NOTE_LENGTH)] | None = None


class ClipController(Controller):
    """Approve or reject clips."""

    path = "/clips"
    tags = ["review"]
    opt = {"scope": "review"}

    @post(
        "/{clip_id:str}/approve",
        status_code=200,
        summary="Approve a clip (clip.approved)",
        responses=documented(),
    )
    async def approve(
        self,
        ravepilot: RavePilotDep,
        principal: PrincipalDep,
        clip_id: FromPath[str],
        data: JSONBody[ReviewNote | None] = None,
    ) -> Clip:
        """Approve a clip; approving it again is a no-op."""
        note = data.note if data else None
        return await ravepilot.review.decide(principal.workspace_id, clip_id, "approved", note=note)

    @post(
        "/{clip_id:str}/reject",
        status_code=200,
        summary="Reject a clip (clip.rejected)",
        responses=documented(),
    )
    async def reject(
        self,
        ravepilot: RavePilotDep,
        principal: PrincipalDep,
        clip_id: FromPath[str],
        data: JSONBody[ReviewNote | None] = None,
    ) -> Clip:
        """Reject a clip; rejecting it again is a no-op."""
        note = data.note if data else None
        return await ravepilot.review.decide(principal.workspace_id, clip_id, "rejected", note=note)
