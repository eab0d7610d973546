"""The business's review: approve or reject each clip; the last decision makes it reviewed."""

from __future__ import annotations

from typing import Literal

import msgspec

from ravepilot_core.context import Context
from ravepilot_core.errors import Conflict, InvalidRequest, NotFound
from ravepilot_core.events import make_event
from ravepilot_core.models import Clip, Review
from ravepilot_core.playback import clip_view

__all__ = ["MAX_NOTE_LENGTH", "ReviewService"]

MAX_NOTE_LENGTH = 2000
Decision = Literal["approved", "rejected"]


class ReviewService:
    """Decide on clips; fires ``clip.approved`` or ``clip.rejected``."""

    def __init__(self, context: Context) -> None:
        self._ctx = context

    async def decide(
        self, workspace_id: str, clip_id: str, decision: Decision, *, note: str | None = None
    ) -> Clip:
        """Approve or reject a clip of a submitted submission.

        The same decision again is a no-op; changing it is allowed.
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
        now = self._ctx.clock.now()
        decided = msgspec.structs.replace(
            clip, review=Review(status=decision, note=note, decided_at=now), updated_at=now
        )
        view = await clip_view(self._ctx, decided)
        event_type = "clip.approved" if decision == "approved" else "clip.rejected"
        event = make_event(event_type, workspace_id=workspace_id, data=view, at=now)
        if await storage.review_clip(decided, events=[event]) is None:
            raise NotFound(f"no clip {clip_id!r} in this workspace")
        self._ctx.wake_worker()
        return view
