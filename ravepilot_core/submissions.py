"""Submissions: reading customers' recording sessions, as the API shows them."""

from __future__ import annotations

import base64
import binascii
from typing import Literal

from ravepilot_core.captions import to_srt, to_vtt
from ravepilot_core.context import Context
from ravepilot_core.errors import Conflict, InvalidRequest, NotFound
from ravepilot_core.models import (
    Clip,
    Page,
    Render,
    Submission,
    SubmissionRecord,
    SubmissionStatus,
)
from ravepilot_core.playback import clip_view
from ravepilot_core.renders import render_view

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
        renders: tuple[Render, ...] = (),
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
            renders=renders,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )

    async def _host_of(self, workspace_id: str, collector_id: str) -> str | None:
        collector = await self._ctx.storage.get_collector(workspace_id, collector_id)
        return collector.host if collector else None

    async def _media_of(
        self, submission_ids: list[str]
    ) -> tuple[dict[str, tuple[Clip, ...]], dict[str, tuple[Render, ...]]]:
        """Return the API views of the submissions' clips and renders, by submission id."""
        clips: dict[str, list[Clip]] = {i: [] for i in submission_ids}
        renders: dict[str, list[Render]] = {i: [] for i in submission_ids}
        for clip in await self._ctx.storage.list_clips(submission_ids):
            clips[clip.submission_id].append(await clip_view(self._ctx, clip))
        for render in await self._ctx.storage.list_renders(submission_ids):
            renders[render.submission_id].append(await render_view(self._ctx, render))
        return (
            {i: tuple(found) for i, found in clips.items()},
            {i: tuple(found) for i, found in renders.items()},
        )

    async def full_view(self, record: SubmissionRecord) -> Submission:
        """Return the API view of a stored submission with its clips and renders."""
        clips, renders = await self._media_of([record.id])
        host = await self._host_of(record.workspace_id, record.collector_id)
        return self.view(record, host, clips=clips[record.id], renders=renders[record.id])

    async def record(self, workspace_id: str, submission_id: str) -> SubmissionRecord:
        """Return one stored submission or raise NotFound."""
        record = await self._ctx.storage.get_submission(workspace_id, submission_id)
        if record is None:
            raise NotFound(f"no submission {submission_id!r} in this workspace")
        return record

    async def captions(self, workspace_id: str, clip_id: str, kind: Literal["vtt", "srt"]) -> str:
        """Return a clip's captions as WebVTT or SubRip, or say why there are none."""
        clip = await self._ctx.storage.get_clip(workspace_id, clip_id)
        if clip is None:
            raise NotFound(f"no clip {clip_id!r} in this workspace")
        if clip.transcript is None:
            raise Conflict(
                f"clip {clip_id} has no transcript yet ({clip.status}); "
                "wait for the clip.transcribed event"
            )
        write = to_vtt if kind == "vtt" else to_srt
        return write(clip.transcript, duration_ms=clip.duration_ms)

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
        clips, renders = await self._media_of([r.id for r in records])
        data = [
            self.view(r, hosts[r.collector_id], clips=clips[r.id], renders=renders[r.id])
            for r in records
        ]
        next_cursor = encode_cursor(records[-1].id) if has_more and records else None
        return Page(data=data, has_more=has_more, next_cursor=next_cursor)
