"""``GET /v1/submissions`` and ``GET /v1/submissions/{id}``."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import Controller, delete, get
from litestar.params import FromPath, FromQuery, QueryParameter

from ravepilot_core.models import Submission
from ravepilot_core.submissions import MAX_PAGE_SIZE
from ravepilot_server.auth import PrincipalDep, RavePilotDep
from ravepilot_server.openapi import documented
from ravepilot_server.schemas import SubmissionList

__all__ = ["SubmissionController"]

StatusFilter = Literal["invited", "recording", "submitted", "reviewed", "rendered", "withdrawn"]


class SubmissionController(Controller):
    """Read submissions with their clips, transcripts and review status."""

    path = "/submissions"
    tags = ["submissions"]
    opt = {"scope": "submissions"}

    @get("/", summary="List submissions, newest first", responses=documented())
    async def list_submissions(
        self,
        ravepilot: RavePilotDep,
        principal: PrincipalDep,
        status: FromQuery[StatusFilter | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE_SIZE)] = 50,
        offset: Annotated[int, QueryParameter(ge=0, le=1_000_000)] = 0,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
    ) -> SubmissionList:
        """List the workspace's submissions."""
        page = await ravepilot.submissions.list(
            principal.workspace_id, status=status, limit=limit, offset=offset, cursor=cursor
        )
        return SubmissionList(data=page.data, has_more=page.has_more, next_cursor=page.next_cursor)

    @get("/{submission_id:str}", summary="Get one submission", responses=documented())
    async def get_submission(
        self, ravepilot: RavePilotDep, principal: PrincipalDep, submission_id: FromPath[str]
    ) -> Submission:
        """Get one submission with its clips and renders."""
        return await ravepilot.submissions.get(principal.workspace_id, submission_id)

    @delete(
        "/{submission_id:str}",
        summary="Erase a submission's media and personal data",
        opt={"scope": "review"},
        responses=documented(401, 403, 404, 409),
    )
    async def erase_submission(
        self, ravepilot: RavePilotDep, principal: PrincipalDep, submission_id: FromPath[str]
    ) -> None:
        """Erase media, transcripts and personal data; the id answers as withdrawn after."""
        await ravepilot.erasure.erase(principal.workspace_id, submission_id)
