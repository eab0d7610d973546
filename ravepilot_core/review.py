"""The business's review: approve or reject each clip; the last decision makes it reviewed."""

from __future__ import annotations

from typing import Literal

import msgspec

from ravepilot_core.context import Context
from ravepilot_core.errors import Conflict, InvalidRequest, NotFound
from ravepilot_core.events import make_event
from ravepilot_core.models import Clip, Review
from ravepilot_core.playback import clip_view
from ravepilot_core.renders import RenderService

__all__ = ["MAX_NOTE_LENGTH", "ReviewService"]

MAX_NOTE_LENGTH = 2000
Decision = Literal["approved", "rejected"]


class ReviewService:
    """Decide on clips; fires ``clip.approved`` or ``clip.rejected``."""

    def __init__(self, context: Context, renders: RenderService) -> None:
        self._ctx = context
        self._renders = renders

    async def decide(
        self, workspace_id: str, clip_id: str, decision: Decision, *, note: str | None = None
    ) -> Clip:
        """Approve or reject a clip of a submitted submission.

        The same decision again is a no-op; changing it is allowed until a render used the
        clip. When this decision completes the review and the collector has ``auto_render``,
        renders in the collector's formats are queued.
        """
        if note is not None and len(note) > MAX_NOTE_LENGTH:
            raise InvalidRequest(f"note must be at most {MAX_NOTE_LENGTH} characters")
        storage = self._ctx.storage
        clip = await storage.get_clip(workspace_id, clip_id)
        if clip is None:
            raise NotFound(f"no clip {clip_id!r} in this workspace")
        submission = await storage.get_submission(workspace_id, clip.submission_id)
        if submission is None or submission.status in ("invited", "recording"):
            raise Conflict("the customer has not finished recording yet; review after they submit")
        if clip.review.status == decision:
            return await clip_view(self._ctx, clip)
        used = [
            r.id
            for r in await storage.list_renders([clip.submission_id])
            if clip.id in r.clip_ids and r.status != "failed"
        ]
        if clip.review.status != "pending" and used:
            raise Conflict(f"render {used[0]} used this clip: its decision can no longer change")
        now = self._ctx.clock.now()
        decided = msgspec.structs.replace(
            clip, review=Review(status=decision, note=note, decided_at=now), updated_at=now
        )
        view = await clip_view(self._ctx, decided)
        event_type = "clip.approved" if decision == "approved" else "clip.rejected"
        event = make_event(event_type, workspace_id=workspace_id, data=view, at=now)
        status = await storage.review_clip(decided, events=[event])
        if status is None:
            raise NotFound(f"no clip {clip_id!r} in this workspace")
        self._ctx.wake_worker()
        if submission.status == "submitted" and status == "reviewed":
            await self._auto_render(submission.workspace_id, submission.id)
        return view

    async def _auto_render(self, workspace_id: str, submission_id: str) -> None:
        submission = await self._ctx.storage.get_submission(workspace_id, submission_id)
        if submission is None:
            return
        collector = await self._ctx.storage.get_collector(workspace_id, submission.collector_id)
        if collector is None or not collector.auto_render:
            return
        for render_format in collector.render_formats:
            try:
                await self._renders.queue(submission, render_format)
            except Conflict:  # nothing approved (or not processed yet): nothing to render
                return
