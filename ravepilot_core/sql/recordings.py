"""The recording portal's half of the SQL storage: submissions moving on, clips, uploads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec

from ravepilot_core.clock import utc_from_ms
from ravepilot_core.events import erased_payload
from ravepilot_core.models import (
    ClipRecord,
    EventRecord,
    Job,
    Review,
    SubmissionRecord,
    SubmissionStatus,
    Transcript,
    Upload,
)
from ravepilot_core.protocols import ReplacedClips
from ravepilot_core.sql import rows
from ravepilot_core.sql.statements import SQLStatements, placeholders

__all__ = ["RecordingQueries", "clip_from_row", "clip_row", "upload_from_row", "upload_row"]

ms = rows.ms
_transcript_decoder = msgspec.json.Decoder(Transcript)


def _dt(value: int | None) -> datetime | None:
    return None if value is None else utc_from_ms(value)


def clip_row(clip: ClipRecord) -> dict[str, Any]:
    """Return the column values of a clip."""
    return {
        "id": clip.id,
        "workspace_id": clip.workspace_id,
        "submission_id": clip.submission_id,
        "script_key": clip.script_key,
        "status": clip.status,
        "media_key": clip.media_key,
        "mime_type": clip.mime_type,
        "size_bytes": clip.size_bytes,
        "duration_ms": clip.duration_ms,
        "transcript": None
        if clip.transcript is None
        else msgspec.json.encode(clip.transcript).decode(),
        "normalised_key": clip.normalised_key,
        "poster_key": clip.poster_key,
        "error": clip.error,
        "review_status": clip.review.status,
        "review_note": clip.review.note,
        "decided_at": ms(clip.review.decided_at),
        "created_at": ms(clip.created_at),
        "updated_at": ms(clip.updated_at),
    }


def clip_from_row(row: Mapping[str, Any]) -> ClipRecord:
    """Build a ClipRecord from its row."""
    return ClipRecord(
        id=row["id"],
        workspace_id=row["workspace_id"],
        submission_id=row["submission_id"],
        script_key=row["script_key"],
        status=row["status"],
        media_key=row["media_key"],
        mime_type=row["mime_type"],
        size_bytes=row["size_bytes"],
        duration_ms=row["duration_ms"],
        transcript=None
        if row["transcript"] is None
        else _transcript_decoder.decode(row["transcript"]),
        review=Review(
            status=row["review_status"],
            note=row["review_note"],
            decided_at=_dt(row["decided_at"]),
        ),
        normalised_key=row["normalised_key"],
        poster_key=row["poster_key"],
        error=row["error"],
        created_at=utc_from_ms(row["created_at"]),
        updated_at=utc_from_ms(row["updated_at"]),
    )


def upload_row(upload: Upload) -> dict[str, Any]:
    """Return the column values of an upload (``offset`` is a reserved word in SQL)."""
    return {
        "id": upload.id,
        "workspace_id": upload.workspace_id,
        "submission_id": upload.submission_id,
        "script_key": upload.script_key,
        "length": upload.length,
        "upload_offset": upload.offset,
        "media_key": upload.media_key,
        "filename": upload.filename,
        "filetype": upload.filetype,
        "expires_at": ms(upload.expires_at),
        "created_at": ms(upload.created_at),
        "completed_at": ms(upload.completed_at),
        "clip_id": upload.clip_id,
    }


def upload_from_row(row: Mapping[str, Any]) -> Upload:
    """Build an Upload from its row."""
    return Upload(
        id=row["id"],
        workspace_id=row["workspace_id"],
        submission_id=row["submission_id"],
        script_key=row["script_key"],
        length=row["length"],
        offset=row["upload_offset"],
        media_key=row["media_key"],
        filename=row["filename"],
        filetype=row["filetype"],
        expires_at=utc_from_ms(row["expires_at"]),
        created_at=utc_from_ms(row["created_at"]),
        completed_at=_dt(row["completed_at"]),
        clip_id=row["clip_id"],
    )


class RecordingQueries(SQLStatements):
    """Submissions moving through the portal, their clips and uploads, for SQLStorage."""

    async def _lock_submission(self, submission_id: str) -> str | None:
        """Return the submission's status, holding its row until the transaction ends.

        Every change to a submission's clips takes this lock first, so decisions that depend on
        all of its clips (reviewed? still recording?) see each other on Postgres too.
        """
        row = await self._one(
            f"SELECT status FROM rp_submissions WHERE id = {{}}{self.lock_rows}", submission_id
        )
        return None if row is None else str(row["status"])

    async def get_submission_by_token(self, token_hash: str) -> SubmissionRecord | None:
        """Select the submission an invite token opens."""
        row = await self._one("SELECT * FROM rp_submissions WHERE token_hash = {}", token_hash)
        return rows.submission_from_row(row) if row else None

    async def _set_submission(
        self, record: SubmissionRecord, expect_status: Sequence[SubmissionStatus]
    ) -> bool:
        values = rows.submission_row(record)
        changed = {
            column: values[column]
            for column in (
                "status",
                "customer_email",
                "customer_name",
                "customer_phone",
                "consent",
                "updated_at",
            )
        }
        assignments = ", ".join(f"{column} = {{}}" for column in changed)
        updated = await self._all(
            f"UPDATE rp_submissions SET {assignments} WHERE id = {{}} "
            f"AND status IN ({placeholders(len(expect_status))}) RETURNING id",
            *changed.values(),
            record.id,
            *expect_status,
        )
        return bool(updated)

    async def update_submission(
        self,
        record: SubmissionRecord,
        *,
        expect_status: Sequence[SubmissionStatus],
        events: Sequence[EventRecord] = (),
        jobs: Sequence[Job] = (),
    ) -> bool:
        """Move the submission on if its stored status is one of ``expect_status``."""
        async with self.engine.transaction():
            if not await self._set_submission(record, expect_status):
                return False
            await self._write_events(events)
            await self._write_jobs(jobs)
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
        async with self.engine.transaction():
            await self._lock_submission(record.id)
            if not await self._set_submission(record, expect_status):
                return False
            for table in ("rp_clips", "rp_uploads", "rp_renders"):
                await self._all(f"DELETE FROM {table} WHERE submission_id = {{}}", record.id)
            if redact_events:
                await self._redact_events(record)
            await self._write_events(events)
            await self._write_jobs(jobs)
        return True

    async def _redact_events(self, record: SubmissionRecord) -> None:
        """Rewrite the bodies of the workspace's events that mention the submission."""
        # Erasure is rare; a scan of one workspace's events is its price. The LIKE narrows the
        # rows ("_" in an id matches any character there), the exact check decides.
        quoted = f'"{record.id}"'
        found = await self._all(
            "SELECT * FROM rp_events WHERE workspace_id = {} AND payload LIKE {}",
            record.workspace_id,
            f"%{quoted}%",
        )
        for row in found:
            if quoted not in row["payload"]:
                continue
            event = rows.event_from_row(row)
            await self._all(
                "UPDATE rp_events SET payload = {} WHERE id = {}",
                erased_payload(event, record.id).decode(),
                event.id,
            )

    async def list_clips(self, submission_ids: Sequence[str]) -> list[ClipRecord]:
        """Select the clips of the submissions, oldest first."""
        if not submission_ids:
            return []
        found = await self._all(
            f"SELECT * FROM rp_clips WHERE submission_id IN ({placeholders(len(submission_ids))}) "
            "ORDER BY id",
            *submission_ids,
        )
        return [clip_from_row(row) for row in found]

    async def get_clip(self, workspace_id: str, clip_id: str) -> ClipRecord | None:
        """Select one clip of the workspace."""
        row = await self._one(
            "SELECT * FROM rp_clips WHERE id = {} AND workspace_id = {}", clip_id, workspace_id
        )
        return clip_from_row(row) if row else None

    async def review_clip(
        self, clip: ClipRecord, *, events: Sequence[EventRecord] = ()
    ) -> SubmissionStatus | None:
        """Store the decision; the last one on a submitted submission makes it reviewed."""
        async with self.engine.transaction():
            status = await self._lock_submission(clip.submission_id)
            updated = await self._all(
                "UPDATE rp_clips SET review_status = {}, review_note = {}, decided_at = {}, "
                "updated_at = {} WHERE id = {} RETURNING id",
                clip.review.status,
                clip.review.note,
                ms(clip.review.decided_at),
                ms(clip.updated_at),
                clip.id,
            )
            if not updated or status is None:
                return None
            if status == "submitted":
                pending = await self._one(
                    "SELECT id FROM rp_clips WHERE submission_id = {} "
                    "AND review_status = 'pending' LIMIT 1",
                    clip.submission_id,
                )
                if pending is None:
                    await self._all(
                        "UPDATE rp_submissions SET status = 'reviewed', updated_at = {} "
                        "WHERE id = {}",
                        ms(clip.updated_at),
                        clip.submission_id,
                    )
                    status = "reviewed"
            await self._write_events(events)
        return status  # type: ignore[return-value]  # a stored SubmissionStatus

    async def update_clip(
        self,
        clip: ClipRecord,
        *,
        events: Sequence[EventRecord] = (),
        jobs: Sequence[Job] = (),
    ) -> bool:
        """Write what processing learnt about a clip; False when the clip is gone."""
        values = clip_row(clip)
        changed = {
            column: values[column]
            for column in (
                "status",
                "mime_type",
                "duration_ms",
                "transcript",
                "normalised_key",
                "poster_key",
                "error",
                "updated_at",
            )
        }
        assignments = ", ".join(f"{column} = {{}}" for column in changed)
        async with self.engine.transaction():
            updated = await self._all(
                f"UPDATE rp_clips SET {assignments} WHERE id = {{}} RETURNING id",
                *changed.values(),
                clip.id,
            )
            if not updated:
                return False
            await self._write_events(events)
            await self._write_jobs(jobs)
        return True

    async def create_upload(self, upload: Upload) -> None:
        """Insert an upload."""
        await self._insert("rp_uploads", [upload_row(upload)])

    async def get_upload(self, submission_id: str, upload_id: str) -> Upload | None:
        """Select one upload of the submission."""
        row = await self._one(
            "SELECT * FROM rp_uploads WHERE id = {} AND submission_id = {}",
            upload_id,
            submission_id,
        )
        return upload_from_row(row) if row else None

    async def claim_upload(self, upload_id: str, *, offset: int, writer: str) -> bool:
        """Hand the upload to ``writer`` if it is unfinished and at ``offset``."""
        claimed = await self._all(
            "UPDATE rp_uploads SET writer = {} WHERE id = {} AND upload_offset = {} "
            "AND completed_at IS NULL RETURNING id",
            writer,
            upload_id,
            offset,
        )
        return bool(claimed)

    async def advance_upload(
        self, upload_id: str, *, from_offset: int, to_offset: int, writer: str | None = None
    ) -> bool:
        """Compare-and-set the offset of an unfinished upload (and its writer, if given)."""
        condition, args = "", []
        if writer is not None:
            condition, args = " AND writer = {}", [writer]
        updated = await self._all(
            "UPDATE rp_uploads SET upload_offset = {}, writer = NULL WHERE id = {} "
            f"AND upload_offset = {{}} AND completed_at IS NULL{condition} RETURNING id",
            to_offset,
            upload_id,
            from_offset,
            *args,
        )
        return bool(updated)

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
        async with self.engine.transaction():
            if await self._lock_submission(upload.submission_id) != "recording":
                return False
            finished = await self._all(
                "UPDATE rp_uploads SET upload_offset = {}, completed_at = {}, clip_id = {} "
                "WHERE id = {} AND completed_at IS NULL RETURNING id",
                upload.offset,
                ms(upload.completed_at),
                upload.clip_id,
                upload.id,
            )
            if not finished:
                return False
            earlier = [
                clip_from_row(row)
                for row in await self._all(
                    "DELETE FROM rp_clips WHERE submission_id = {} AND script_key = {} RETURNING *",
                    clip.submission_id,
                    clip.script_key,
                )
            ]
            await self._write_jobs(replaced(earlier) if earlier else ())
            await self._insert("rp_clips", [clip_row(clip)])
            await self._write_events(events)
            await self._write_jobs(jobs)
        return True

    async def delete_upload(self, upload_id: str) -> bool:
        """Delete an unfinished upload."""
        deleted = await self._all(
            "DELETE FROM rp_uploads WHERE id = {} AND completed_at IS NULL RETURNING id",
            upload_id,
        )
        return bool(deleted)

    async def list_expired_uploads(self, *, now: datetime, limit: int) -> list[Upload]:
        """Select unfinished uploads past their expiry."""
        found = await self._all(
            "SELECT * FROM rp_uploads WHERE completed_at IS NULL AND expires_at < {} "
            "ORDER BY expires_at LIMIT {}",
            ms(now),
            limit,
        )
        return [upload_from_row(row) for row in found]
