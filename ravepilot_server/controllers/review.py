"""Clips: approve and reject (scope ``review``), captions (scope ``submissions``)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, Response, get, post
from litestar.params import FromPath, JSONBody

from ravepilot_core.models import Clip
from ravepilot_core.review import MAX_NOTE_LENGTH
from ravepilot_server.openapi import documented
from ravepilot_server.request import RavePilotRequest

__all__ = ["ClipController"]


class ReviewNote(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An optional note to keep with the decision."""

    note: Annotated[str, msgspec.Meta(max_length=MAX_NOTE_LENGTH)] | None = None


class ClipController(Controller):
    """Approve or reject clips; read their captions."""

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
        request: RavePilotRequest,
        clip_id: FromPath[str],
        data: JSONBody[ReviewNote | None] = None,
    ) -> Clip:
        """Approve a clip; approving it again is a no-op."""
        note = data.note if data else None
        return await request.ravepilot.review.decide(
            request.principal.workspace_id, clip_id, "approved", note=note
        )

    @post(
        "/{clip_id:str}/reject",
        status_code=200,
        summary="Reject a clip (clip.rejected)",
        responses=documented(),
    )
    async def reject(
        self,
        request: RavePilotRequest,
        clip_id: FromPath[str],
        data: JSONBody[ReviewNote | None] = None,
    ) -> Clip:
        """Reject a clip; rejecting it again is a no-op."""
        note = data.note if data else None
        return await request.ravepilot.review.decide(
            request.principal.workspace_id, clip_id, "rejected", note=note
        )

    @get(
        "/{clip_id:str}/captions.vtt",
        summary="The clip's captions as WebVTT",
        opt={"scope": "submissions"},
        responses=documented(401, 403, 404, 409),
    )
    async def captions_vtt(
        self, request: RavePilotRequest, clip_id: FromPath[str]
    ) -> Response[str]:
        """WebVTT captions from the clip's transcript (409 until it is transcribed)."""
        captions = await request.ravepilot.submissions.captions(
            request.principal.workspace_id, clip_id, "vtt"
        )
        return Response(captions, media_type="text/vtt; charset=utf-8")

    @get(
        "/{clip_id:str}/captions.srt",
        summary="The clip's captions as SubRip",
        opt={"scope": "submissions"},
        responses=documented(401, 403, 404, 409),
    )
    async def captions_srt(
        self, request: RavePilotRequest, clip_id: FromPath[str]
    ) -> Response[str]:
        """SubRip captions from the clip's transcript (409 until it is transcribed)."""
        captions = await request.ravepilot.submissions.captions(
            request.principal.workspace_id, clip_id, "srt"
        )
        return Response(captions, media_type="application/x-subrip; charset=utf-8")
