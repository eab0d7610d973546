"""The recording portal's half of :class:`~ravepilot_core.testing.MemoryStorage`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec

from ravepilot_core.errors import Conflict
from ravepilot_core.events import erased_payload
from ravepilot_core.models import (
    ClipRecord,
    EventRecord,
    Job,
    RenderRecord,
    SubmissionRecord,
    SubmissionStatus,
    Upload,
)
from ravepilot_core.protocols import ReplacedClips
from ravepilot_core.testing.memory_tables import MemoryTables, stored_copy

__all__ = ["MemoryRecordings"]


class MemoryRecordings(MemoryTables):
    """Submissions moving through the portal, their clips and uploads, kept in memory."""

    _renders: dict[str, RenderRecord]  # MemoryRenders'

    def __init__(self) -> None:
        super().__init__()
        self._clips: dict[str, ClipRecord] = {}
        self._uploads: dict[str, Upload] = {}
        self._upload_writers: dict[str, str] = {}

    # -- submissions -----------------------------------------------------------------------------
    async def get_submission_by_token(self, token_hash: str) -> SubmissionRecord | None:
        """Return the submission an invite token opens."""
        async with self._locked():
            return next((s for s in self._submissions.values() if s.token_hash == token_hash), None)

    def _set_submission(
        self, record: SubmissionRecord, expect_status: Sequence[SubmissionStatus]
    ) -> bool:
        stored = self._submissions.get(record.id)
        if stored is None or stored.status not in expect_status:
            return False
        taken = any(
            s.id != record.id
            and s.collector_id == stored.collector_id
            and s.customer.email == record.customer.email
            for s in self._submissions.values()
        )
        if taken:  # the SQL storage's unique index refuses it
            raise Conflict("another submission of the collector has this customer email")
        self._submissions[record.id] = self._normalised_submission(
            msgspec.structs.replace(
                stored,
                status=record.status,
                customer=record.customer,
                consent=record.consent,
                updated_at=record.updated_at,
            )
        )
        return True

    async def update_submission(
        self,
        record: SubmissionRecord,
        *,
        expect_status: Sequence[SubmissionStatus],
        events: Sequence[EventRecord] = (),
        jobs: Sequence[Job] = (),
    ) -> bool:
        """Move the submission on if its stored status is one of ``expect_status``."""
        async with self._locked():
            self._check_new_events_and_jobs(events, jobs)
            if not self._set_submission(record, expect_status):
                return False
            self._write_events(events)
            self._write_jobs(jobs)
            return True

    async def erase_submission(
        self,
        record: SubmissionRecord,
        *,
        expect_status: Sequence[SubmissionStatus],
        events: Sequence[EventRecord] = (),
        jobs: Sequence[Job] = (),
        redact_events: bool = False,
    ) -> bool:
        """Move the submission on and delete its clips and uploads (and redact its events)."""
        async with self._locked():
            self._check_new_events_and_jobs(events, jobs)
            if not self._set_submission(record, expect_status):
                return False
            tables: tuple[dict[str, ClipRecord] | dict[str, Upload] | dict[str, RenderRecord], ...]
            tables = (self._clips, self._uploads, self._renders)
            for table in tables:
                for key in [k for k, v in table.items() if v.submission_id == record.id]:
                    del table[key]
            if redact_events:
                quoted = f'"{record.id}"'.encode()
                for event in list(self._events.values()):
                    if event.workspace_id == record.workspace_id and quoted in event.payload:
                        self._events[event.id] = msgspec.structs.replace(
                            event, payload=erased_payload(event, record.id)
                        )
            self._write_events(events)
            self._write_jobs(jobs)
            return True

    # -- clips -----------------------------------------------------------------------------------
    async def list_clips(self, submission_ids: Sequence[str]) -> list[ClipRecord]:
        """Return the submissions' clips, oldest first."""
        async with self._locked():
            wanted = set(submission_ids)
            return sorted(
                (c for c in self._clips.values() if c.submission_id in wanted), key=lambda c: c.id
            )

    async def get_clip(self, workspace_id: str, clip_id: str) -> ClipRecord | None:
        """Return the clip if it belongs to the workspace."""
        async with self._locked():
            clip = self._clips.get(clip_id)
            return clip if clip and clip.workspace_id == workspace_id else None

    async def review_clip(
        self, clip: ClipRecord, *, events: Sequence[EventRecord] = ()
    ) -> SubmissionStatus | None:
        """Store the decision; the last one on a submitted submission makes it reviewed."""
        async with self._locked():
            stored = self._clips.get(clip.id)
            submission = self._submissions.get(clip.submission_id)
            if stored is None or submission is None:
                return None
            self._check_new_events_and_jobs(events, ())
            self._clips[clip.id] = stored_copy(
                msgspec.structs.replace(stored, review=clip.review, updated_at=clip.updated_at)
            )
            status = submission.status
            pending = any(
                c.submission_id == submission.id and c.review.status == "pending"
                for c in self._clips.values()
            )
            if status == "submitted" and not pending:
                status = "reviewed"
                self._submissions[submission.id] = self._normalised_submission(
                    msgspec.structs.replace(submission, status=status, updated_at=clip.updated_at)
                )
            self._write_events(events)
            return status

    async def update_clip(
        self,
        clip: ClipRecord,
        *,
        events: Sequence[EventRecord] = (),
        jobs: Sequence[Job] = (),
    ) -> bool:
        """Store what processing learnt about a clip; False when it is gone."""
        async with self._locked():
            stored = self._clips.get(clip.id)
            if stored is None:
                return False
            self._check_new_events_and_jobs(events, jobs)
            self._clips[clip.id] = stored_copy(
                msgspec.structs.replace(
                    stored,
                    status=clip.status,
                    mime_type=clip.mime_type,
                    duration_ms=clip.duration_ms,
                    transcript=clip.transcript,
                    normalised_key=clip.normalised_key,
                    poster_key=clip.poster_key,
                    error=clip.error,
                    updated_at=clip.updated_at,
                )
            )
            self._write_events(events)
            self._write_jobs(jobs)
            return True

    # -- uploads ---------------------------------------------------------------------------------
    async def create_upload(self, upload: Upload) -> None:
        """Store a new upload."""
        async with self._locked():
            if upload.id in self._uploads:
                raise Conflict(f"upload {upload.id} exists")
            self._uploads[upload.id] = stored_copy(upload)

    async def get_upload(self, submission_id: str, upload_id: str) -> Upload | None:
        """Return the submission's upload."""
        async with self._locked():
            upload = self._uploads.get(upload_id)
            return upload if upload and upload.submission_id == submission_id else None

    async def claim_upload(self, upload_id: str, *, offset: int, writer: str) -> bool:
        """Hand the upload to ``writer`` if it is unfinished and at ``offset``."""
        async with self._locked():
            upload = self._uploads.get(upload_id)
            if upload is None or upload.completed_at is not None or upload.offset != offset:
                return False
            self._upload_writers[upload_id] = writer
            return True

    async def advance_upload(
        self, upload_id: str, *, from_offset: int, to_offset: int, writer: str | None = None
    ) -> bool:
        """Compare-and-set the offset of an unfinished upload (and its writer, if given)."""
        async with self._locked():
            upload = self._uploads.get(upload_id)
            if upload is None or upload.completed_at is not None or upload.offset != from_offset:
                return False
            if writer is not None and self._upload_writers.get(upload_id) != writer:
                return False
            self._upload_writers.pop(upload_id, None)
            self._uploads[upload_id] = msgspec.structs.replace(upload, offset=to_offset)
            return True

    async def complete_upload(
        self,
        upload: Upload,
        clip: ClipRecord,
        *,
        events: Sequence[EventRecord] = (),
        jobs: Sequence[Job] = (),
        replaced: ReplacedClips = lambda clips: (),
    ) -> bool:
        """Finish the upload and store its clip, replacing the prompt's earlier clip."""
        async with self._locked():
            stored = self._uploads.get(upload.id)
            submission = self._submissions.get(upload.submission_id)
            if stored is None or stored.completed_at is not None:
                return False
            if submission is None or submission.status != "recording":
                return False
            earlier = [
                c
                for c in self._clips.values()
                if c.submission_id == clip.submission_id and c.script_key == clip.script_key
            ]
            all_jobs = [*(replaced(earlier) if earlier else ()), *jobs]
            self._check_new_events_and_jobs(events, all_jobs)
            if clip.id in self._clips:
                raise Conflict(f"clip {clip.id} exists")
            for old in earlier:
                del self._clips[old.id]
            self._write_jobs(all_jobs)
            self._uploads[upload.id] = stored_copy(
                msgspec.structs.replace(
                    stored,
                    offset=upload.offset,
                    completed_at=upload.completed_at,
                    clip_id=upload.clip_id,
                )
            )
            self._clips[clip.id] = stored_copy(clip)
            self._write_events(events)
            return True

    async def delete_upload(self, upload_id: str) -> bool:
        """Delete an unfinished upload."""
        async with self._locked():
            upload = self._uploads.get(upload_id)
            if upload is None or upload.completed_at is not None:
                return False
            del self._uploads[upload_id]
            return True

    async def list_expired_uploads(self, *, now: datetime, limit: int) -> list[Upload]:
        """Return unfinished uploads past their expiry, oldest first."""
        async with self._locked():
            found = sorted(
                (
                    u
                    for u in self._uploads.values()
                    if u.completed_at is None and u.expires_at < now
                ),
                key=lambda u: u.expires_at,
            )
            return found[:limit]
