"""The event catalog and how events are made: encoded once, stored, then signed as sent."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from ravepilot_core.errors import InvalidRequest
from ravepilot_core.ids import new_id
from ravepilot_core.models import Event, EventRecord

__all__ = ["EVENT_TYPES", "erased_payload", "make_event", "validate_event_selection"]

EVENT_TYPES: tuple[str, ...] = (
    "invitation.created",
    "submission.started",
    "clip.uploaded",
    "clip.transcribed",
    "submission.submitted",
    "clip.approved",
    "clip.rejected",
    "render.succeeded",
    "render.failed",
    "submission.withdrawn",
    "webhook.test",
)

_encoder = msgspec.json.Encoder()


def make_event(event_type: str, *, workspace_id: str, data: Any, at: datetime) -> EventRecord:
    """Build an event whose JSON body is fixed now, so every delivery sends the same bytes."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    event = Event(
        id=new_id("evt", at), type=event_type, created_at=at, workspace_id=workspace_id, data=data
    )
    return EventRecord(
        id=event.id,
        workspace_id=workspace_id,
        type=event_type,
        created_at=at,
        payload=_encoder.encode(event),
    )


def validate_event_selection(events: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Check a webhook's event list: ``["*"]`` or known names; return it without duplicates."""
    if not events:
        raise InvalidRequest('events must not be empty: use ["*"] for every event')
    unknown = [name for name in events if name != "*" and name not in EVENT_TYPES]
    if unknown:
        raise InvalidRequest(
            f"unknown event name(s) {', '.join(map(repr, unknown))}; "
            f'valid names are {", ".join(EVENT_TYPES)} or "*"'
        )
    if "*" in events:
        if len(set(events)) > 1:
            raise InvalidRequest('"*" already selects every event: send ["*"] alone')
        return ("*",)
    return tuple(dict.fromkeys(events))


def erased_payload(event: EventRecord, submission_id: str) -> bytes:
    """Return ``event``'s body with its data replaced by a mark of the submission's erasure.

    Erasing a submission rewrites its stored events too: they held the customer's name, email
    and transcripts. Deliveries still pending then send this body (signed as sent).
    """
    erased = Event(
        id=event.id,
        type=event.type,
        created_at=event.created_at,
        workspace_id=event.workspace_id,
        data={"submission_id": submission_id, "erased": True},
    )
    return _encoder.encode(erased)
