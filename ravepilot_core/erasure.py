"""Withdrawal and erasure: a submission's media, transcripts and (on erasure) personal data go.

The database change and a durable ``media.delete`` job are one transaction, so an object store
that is down when a customer withdraws cannot leave their recordings behind: the job retries
until the objects are gone. The deletion is also tried at once, so it is usually immediate.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

import msgspec

from ravepilot_core.context import Context
from ravepilot_core.errors import Conflict, NotFound
from ravepilot_core.events import make_event
from ravepilot_core.ids import new_id
from ravepilot_core.models import ClipRecord, Customer, Job, SubmissionRecord, SubmissionStatus
from ravepilot_core.submissions import SubmissionService

__all__ = [
    "MEDIA_DELETE_JOB",
    "ErasureService",
    "ReplacedClipsJob",
    "delete_media",
    "media_delete_job",
    "submission_media_prefix",
]

log = logging.getLogger("ravepilot.erasure")

MEDIA_DELETE_JOB = "media.delete"
_LIVE: tuple[SubmissionStatus, ...] = ("invited", "recording", "submitted", "reviewed", "rendered")


def submission_media_prefix(record: SubmissionRecord) -> str:
    """Return the media-key prefix under which every object of the submission lives."""
    return f"{record.workspace_id}/{record.id}/"


def media_delete_job(workspace_id: str, subject_id: str, keys: Sequence[str], at: datetime) -> Job:
    """Return the durable job that deletes ``keys`` (objects, or prefixes ending in ``/``)."""
    return Job(
        id=new_id("job", at),
        workspace_id=workspace_id,
        kind=MEDIA_DELETE_JOB,
        subject_id=subject_id,
        payload={"keys": list(keys)},
        run_at=at,
        created_at=at,
    )


class ReplacedClipsJob:
    """Makes the ``media.delete`` job for clips a retake replaced, inside storage's transaction."""

    def __init__(self, at: datetime) -> None:
        self._at = at

    def __call__(self, clips: Sequence[ClipRecord]) -> Sequence[Job]:
        """Return one job deleting every replaced clip's media."""
        first = clips[0]
        keys = [
            key
            for clip in clips
            for key in (clip.media_key, clip.normalised_key, clip.poster_key)
            if key is not None
        ]
        return [media_delete_job(first.workspace_id, first.id, keys, self._at)]


async def delete_media(context: Context, job: Job) -> None:
    """Run a ``media.delete`` job (deleting what is already gone is not an error)."""
    await context.media.delete([str(key) for key in job.payload["keys"]])


class ErasureService:
    """Withdraw a submission (the customer's choice) or erase it (the business's)."""

    def __init__(self, context: Context, submissions: SubmissionService) -> None:
        self._ctx = context
        self._submissions = submissions

    async def withdraw(self, record: SubmissionRecord) -> SubmissionRecord:
        """Withdraw consent: delete the media and transcripts; fires ``submission.withdrawn``."""
        if record.status == "withdrawn":
            return record
        return await self._remove(record, anonymise=False)

    async def erase(self, workspace_id: str, submission_id: str) -> None:
        """Erase media, transcripts and personal data, keeping an anonymised tombstone."""
        record = await self._submissions.record(workspace_id, submission_id)
        if record.status == "withdrawn" and record.customer.email.endswith("@erased.invalid"):
            return
        await self._remove(record, anonymise=True)

    async def _remove(self, record: SubmissionRecord, *, anonymise: bool) -> SubmissionRecord:
        ctx = self._ctx
        now = ctx.clock.now()
        changes: dict[str, object] = {"status": "withdrawn", "updated_at": now}
        if anonymise:
            # The email keeps the (collector, email) key unique; nothing in it identifies anyone.
            changes["customer"] = Customer(email=f"{record.id}@erased.invalid")
            changes["consent"] = None
        gone = msgspec.structs.replace(record, **changes)
        events = []
        if record.status != "withdrawn":
            events.append(
                make_event(
                    "submission.withdrawn",
                    workspace_id=record.workspace_id,
                    data=self._submissions.view(gone),
                    at=now,
                )
            )
        prefix = submission_media_prefix(record)
        job = media_delete_job(record.workspace_id, record.id, [prefix], now)
        expect = (*_LIVE, "withdrawn") if anonymise else _LIVE
        if not await ctx.storage.erase_submission(
            gone, expect_status=expect, events=events, jobs=[job], redact_events=anonymise
        ):
            current = await ctx.storage.get_submission(record.workspace_id, record.id)
            if current is None:
                raise NotFound(f"no submission {record.id!r} in this workspace")
            if current.status == "withdrawn" and not anonymise:
                return current
            raise Conflict("the submission changed while it was being erased; try again")
        ctx.wake_worker()
        try:
            await ctx.media.delete([prefix])
        except Exception:  # the job stored with the change retries it
            log.warning("deleting media under %s failed; the media.delete job will retry", prefix)
        return gone
