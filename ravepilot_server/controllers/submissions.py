"""Submissions (list, get, erase), their renders, and ``GET /v1/renders/{id}``."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from litestar import Controller, delete, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from ravepilot_core.models import Render, Submission
from ravepilot_core.submissions import MAX_PAGE_SIZE
from ravepilot_server.openapi import documented
from ravepilot_server.request import RavePilotRequest
from ravepilot_server.schemas import SubmissionList

__all__ = ["RenderController", "SubmissionController"]

StatusFilter = Literal["invited", "recording", "submitted", "reviewed", "rendered", "withdrawn"]


class RenderBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What to render: a format, and optionally which approved clips in which order."""

    format: Literal["9:16", "1:1", "16:9"]
    clip_ids: Annotated[list[str], msgspec.Meta(min_length=1, max_length=20)] | None = None


class SubmissionController(Controller):
    """Read submissions with their clips, transcripts and review status."""

    path = "/submissions"
    tags = ["submissions"]
    opt = {"scope": "submissions"}

    @get("/", summary="List submissions, newest first", responses=documented())
    async def list_submissions(
        self,
        request: RavePilotRequest,
        status: FromQuery[StatusFilter | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE_SIZE)] = 50,
        offset: Annotated[int, QueryParameter(ge=0, le=1_000_000)] = 0,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
    ) -> SubmissionList:
        """List the workspace's submissions."""
        page = await request.ravepilot.submissions.list(
            request.principal.workspace_id, status=status, limit=limit, offset=offset, cursor=cursor
        )
        return SubmissionList(data=page.data, has_more=page.has_more, next_cursor=page.next_cursor)

    @get("/{submission_id:str}", summary="Get one submission", responses=documented())
    async def get_submission(
        self, request: RavePilotRequest, submission_id: FromPath[str]
    ) -> Submission:
        """Get one submission with its clips and renders."""
        return await request.ravepilot.submissions.get(
            request.principal.workspace_id, submission_id
        )

    @delete(
        "/{submission_id:str}",
        summary="Erase a submission's media and personal data",
        opt={"scope": "review"},
        responses=documented(401, 403, 404, 409),
    )
    async def erase_submission(
        self, request: RavePilotRequest, submission_id: FromPath[str]
    ) -> None:
        """Erase media, transcripts and personal data; the id answers as withdrawn after."""
        await request.ravepilot.erasure.erase(request.principal.workspace_id, submission_id)

    @post(
        "/{submission_id:str}/renders",
        status_code=202,
        summary="Queue an ad-ready cut (render.succeeded / render.failed follow)",
        opt={"scope": "review"},
        responses=documented(),
    )
    async def create_render(
        self, request: RavePilotRequest, submission_id: FromPath[str], data: JSONBody[RenderBody]
    ) -> Render:
        """Queue a render of the approved clips (or the ones named) in one format."""
        return await request.ravepilot.renders.create(
            request.principal.workspace_id, submission_id, data.format, data.clip_ids
        )


class RenderController(Controller):
    """Read renders."""

    path = "/renders"
    tags = ["renders"]
    opt = {"scope": "submissions"}

    @get("/{render_id:str}", summary="Get one render", responses=documented(401, 403, 404))
    async def get_render(self, request: RavePilotRequest, render_id: FromPath[str]) -> Render:
        """Get a render with its playback handle once it succeeded."""
        return await request.ravepilot.renders.get(request.principal.workspace_id, render_id)
