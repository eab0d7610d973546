"""Submissions: reading customers' recording sessions, as the API shows them."""

from __future__ import annotations

import base64
import binascii

from ravepilot_core.context import Context
from ravepilot_core.errors import InvalidRequest, NotFound
from ravepilot_core.models import Clip, Page, Submission, SubmissionRecord, SubmissionStatus
from ravepilot_core.playback import clip_view

__all__ = ["MAX_PAGE_SIZE", "SubmissionService", "decode_cursor", "encode_cursor"]

MAX_PAGE_SIZE = 200
SUBMISSION_STATUSES: tuple[SubmissionStatus, ...] = (
    "invited",
    "recording",
    "submitted",
    "reviewed",
    "rendered",
    "withdrawn",
)


def encode_cursor(last_id: str) -> str:
    """Return the opaque cursor that continues after ``last_id``."""
    return base64.urlsafe_b64encode(last_id.encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str, prefix: str) -> str:
    """Return the id inside ``cursor``; a cursor from elsewhere is a 400."""
    try:
        decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    if not decoded.startswith(prefix + "_") or len(decoded) > 64:
        raise InvalidRequest("invalid cursor: pass next_cursor from the previous page unchanged")
    return decoded


class SubmissionService:
    """Read submissions in the shape the API and the events use."""

    def __init__(self, context: Context) -> None:
        self._ctx = context

    def view(
        self,
        record: SubmissionRecord,
        host: str | None = None,
        *,
        token: str | None = None,
        clips: tuple[Clip, ...] = (),
    ) -> Submission:
        """Return the API view of a stored submission (with its link and the clips given).

        ``token`` is the submission's invite token when the caller has already derived it.
        """
        link = None
        if record.status != "withdrawn":
            link = self._ctx.link_for(token or self._ctx.keyring.invite_token(record.id), host)
        return Submission(
            id=record.id,
            collector_id=record.collector_id,
            status=record.status,
            customer=record.customer,
            link=link,
            invitation_email=record.invitation_email,
            consent=record.consent,
            clips=clips,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )

    async def _host_of(self, workspace_id: str, collector_id: str) -> str | None:
        collector = await self._ctx.storage.get_collector(workspace_id, collector_id)
        return collector.host if collector else None

    async def _clips_of(self, submission_ids: list[str]) -> dict[str, tuple[Clip, ...]]:
        found: dict[str, list[Clip]] = {i: [] for i in submission_ids}
        for record in await self._ctx.storage.list_clips(submission_ids):
            found[record.submission_id].append(await clip_view(self._ctx, record))
        return {i: tuple(clips) for i, clips in found.items()}

    async def full_view(self, record: SubmissionRecord) -> Submission:
        """Return the API view of a stored submission with its clips (as events carry it)."""
        clips = await self._clips_of([record.id])
        host = await self._host_of(record.workspace_id, record.collector_id)
        return self.view(record, host, clips=clips[record.id])

    async def record(self, workspace_id: str, submission_id: str) -> SubmissionRecord:
        """Return one stored submission or raise NotFound."""
        record = await self._ctx.storage.get_submission(workspace_id, submission_id)
        if record is None:
            raise NotFound(f"no submission {submission_id!r} in this workspace")
        return record

    async def get(self, workspace_id: str, submission_id: str) -> Submission:
        """Return one submission or raise NotFound."""
        return await self.full_view(await self.record(workspace_id, submission_id))

    async def list(
        self,
        workspace_id: str,
        *,
        status: str | None = None,
        limit: int = 50,
        offset: int = 0,
        cursor: str | None = None,
    ) -> Page[Submission]:
        """Return one page of submissions, newest first."""
        if status is not None and status not in SUBMISSION_STATUSES:
            raise InvalidRequest(
                f"unknown status {status!r}; use one of {', '.join(SUBMISSION_STATUSES)}"
            )
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE_SIZE}")
        if offset < 0:
            raise InvalidRequest("offset must not be negative")
        before_id = None
        if cursor is not None:
            if offset:
                raise InvalidRequest("use either cursor or offset, not both")
            before_id = decode_cursor(cursor, "sub")
        records = await self._ctx.storage.list_submissions(
            workspace_id,
            status=status,
            limit=limit + 1,
            offset=offset,
            before_id=before_id,
        )
        has_more = len(records) > limit
        records = records[:limit]
        hosts: dict[str, str | None] = {}
        for collector_id in {r.collector_id for r in records}:
            hosts[collector_id] = await self._host_of(workspace_id, collector_id)
        clips = await self._clips_of([r.id for r in records])
        data = [self.view(r, hosts[r.collector_id], clips=clips[r.id]) for r in records]
        next_cursor = encode_cursor(records[-1].id) if has_more and records else None
        return Page(data=data, has_more=has_more, next_cursor=next_cursor)
