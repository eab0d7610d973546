"""The customer's side: what an invite token opens, consent, finishing and withdrawing.

Every call is authorised by the invite token alone; the database holds only its hash. Unknown
and withdrawn tokens are the same :class:`NotFound`, so a link tells nothing once withdrawn.
"""

from __future__ import annotations

import hashlib

import msgspec

from ravepilot_core.context import Context
from ravepilot_core.crypto import hash_secret
from ravepilot_core.erasure import ErasureService
from ravepilot_core.errors import Conflict, InvalidRequest, NotFound
from ravepilot_core.events import make_event
from ravepilot_core.models import (
    Collector,
    Consent,
    PortalClip,
    PortalSession,
    SubmissionRecord,
)
from ravepilot_core.submissions import SubmissionService
from ravepilot_core.uploads import ACCEPTED_TYPES

__all__ = ["PortalService", "consent_version"]

_MAX_TOKEN_LENGTH = 128


def consent_version(text: str) -> str:
    """Return the version of a consent text: its hash, so any edit is a new version."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class PortalService:
    """What the recording page does, by invite token."""

    def __init__(
        self, context: Context, submissions: SubmissionService, erasure: ErasureService
    ) -> None:
        self._ctx = context
        self._submissions = submissions
        self._erasure = erasure

    async def open(self, token: str) -> tuple[SubmissionRecord, Collector]:
        """Return the live submission the token opens and its collector, or raise NotFound."""
        record = None
        if 0 < len(token) <= _MAX_TOKEN_LENGTH:
            record = await self._ctx.storage.get_submission_by_token(hash_secret(token))
        if record is None or record.status == "withdrawn":
            raise NotFound("this recording link is not valid or is no longer active")
        collector = await self._ctx.storage.get_collector(record.workspace_id, record.collector_id)
        if collector is None:  # collectors are never deleted; a broken row is our fault
            raise NotFound("this recording link is not valid or is no longer active")
        return record, collector

    async def _session(
        self, token: str, record: SubmissionRecord, collector: Collector
    ) -> PortalSession:
        clips = await self._ctx.storage.list_clips([record.id])
        return PortalSession(
            submission_id=record.id,
            status=record.status,
            customer_name=record.customer.name,
            brand=collector.brand,
            locale=collector.locale,
            consent_text=collector.consent_text,
            consent_version=consent_version(collector.consent_text),
            consent=record.consent,
            script=collector.script,
            clips=tuple(
                PortalClip(
                    id=c.id,
                    script_key=c.script_key,
                    status=c.status,
                    mime_type=c.mime_type,
                    size_bytes=c.size_bytes,
                    created_at=c.created_at,
                )
                for c in clips
            ),
            upload_url=f"/r/{token}/uploads/",
            max_upload_bytes=self._ctx.max_upload_bytes,
            accepted_types=ACCEPTED_TYPES,
        )

    async def session(self, token: str) -> PortalSession:
        """Return what the recording page shows."""
        record, collector = await self.open(token)
        return await self._session(token, record, collector)

    async def consent(self, token: str, *, accepted: bool) -> PortalSession:
        """Record consent to the collector's current text; fires ``submission.started``."""
        if accepted is not True:
            raise InvalidRequest('consent must be given explicitly: send {"accepted": true}')
        record, collector = await self.open(token)
        if record.status == "invited":
            now = self._ctx.clock.now()
            text = collector.consent_text
            started = msgspec.structs.replace(
                record,
                status="recording",
                consent=Consent(given_at=now, text=text, version=consent_version(text)),
                updated_at=now,
            )
            event = make_event(
                "submission.started",
                workspace_id=record.workspace_id,
                data=await self._submissions.full_view(started),
                at=now,
            )
            if await self._ctx.storage.update_submission(
                started, expect_status=("invited",), events=[event]
            ):
                self._ctx.wake_worker()
            record, collector = await self.open(token)
        return await self._session(token, record, collector)

    async def finish(self, token: str) -> PortalSession:
        """Hand the recordings in; fires ``submission.submitted``. Needs at least one clip."""
        record, collector = await self.open(token)
        if record.status == "invited":
            raise Conflict("give consent and record at least one clip before finishing")
        if record.status == "recording":
            now = self._ctx.clock.now()
            submitted = msgspec.structs.replace(record, status="submitted", updated_at=now)
            view = await self._submissions.full_view(submitted)
            if not view.clips:
                raise Conflict("record or upload at least one clip before finishing")
            event = make_event(
                "submission.submitted", workspace_id=record.workspace_id, data=view, at=now
            )
            if await self._ctx.storage.update_submission(
                submitted, expect_status=("recording",), events=[event]
            ):
                self._ctx.wake_worker()
            record, collector = await self.open(token)
        return await self._session(token, record, collector)

    async def withdraw(self, token: str) -> None:
        """Withdraw consent: the recordings are deleted; fires ``submission.withdrawn``."""
        record, _ = await self.open(token)
        await self._erasure.withdraw(record)
