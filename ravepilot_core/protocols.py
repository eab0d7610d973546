"""The extension points: every backend a plugin can supply is one of these Protocols.

A backend is found by the scheme of its URL (see :mod:`ravepilot_core.backends`) and must pass the
contract suite for its protocol in :mod:`ravepilot_core.testing`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from ravepilot_core.models import (
    ApiKey,
    ClipRecord,
    Collector,
    Delivery,
    DeliveryAttempt,
    DeliveryQueueStats,
    DeliveryResult,
    DeliveryTask,
    Email,
    EventRecord,
    IdempotencyRecord,
    InvitationEmail,
    Job,
    RenderRecord,
    RenderRequest,
    SubmissionRecord,
    SubmissionStatus,
    Transcript,
    Upload,
    WebhookEndpointRecord,
    Workspace,
)

__all__ = [
    "Clock",
    "DisableNotice",
    "JobOutcome",
    "Mailer",
    "MediaStore",
    "Renderer",
    "ReplacedClips",
    "Storage",
    "Transcriber",
]

JobOutcome = Literal["succeeded", "retry", "failed"]

DisableNotice = Callable[[WebhookEndpointRecord, datetime], Job]
"""Makes the job that tells a workspace its endpoint was disabled (stored with the change)."""

ReplacedClips = Callable[[Sequence[ClipRecord]], Sequence[Job]]
"""Makes the jobs that delete the media of clips a retake replaced (stored with the change)."""


@runtime_checkable
class Clock(Protocol):
    """Tells the time; injected so that tests can jump it.

    Example::

        class FixedClock:
            def now(self) -> datetime:
                return datetime(2026, 11, 22, tzinfo=UTC)
    """

    def now(self) -> datetime:
        """Return the current time as an aware UTC datetime with millisecond precision."""
        ...


@runtime_checkable
class Mailer(Protocol):
    """Sends one email. Raising any exception means "not sent": the job retries with backoff.

    Raise :class:`~ravepilot_core.errors.MailRejected` with the server's reason when retrying
    cannot help (an SMTP 5xx): the email is marked ``failed`` at once. Prove a mailer with
    :class:`ravepilot_core.testing.MailerContract`.

    Example::

        class PrintMailer:
            async def send(self, email: Email) -> None:
                print(email.to, email.subject)

            async def close(self) -> None:
                pass
    """

    async def send(self, email: Email) -> None:
        """Deliver ``email`` (sender, recipient, subject, a text and an HTML body, headers).

        An SMTP-style mailer sends ``ravepilot_core.mime.render_mime(email, date=...)``; an
        API-based one passes the fields on.
        """
        ...

    async def close(self) -> None:
        """Release connections; called once at shutdown."""
        ...


@runtime_checkable
class MediaStore(Protocol):
    """Keeps clips and renders: resumable partial uploads, finished objects, playback handles.

    Keys are ``/``-separated relative paths made by RavePilot (``ws_…/sub_…/clip_….webm``); a
    store never trusts them further than that. An upload is written with :meth:`append` (each
    tus PATCH is one call), becomes a readable object with :meth:`finish_upload`, or is thrown
    away with :meth:`abort_upload`. Nothing is held whole in memory: ``append`` and ``put`` consume
    their chunks as they arrive and ``read`` yields the object piece by piece.

    Example::

        class TmpMediaStore:
            async def append(self, key, offset, chunks):
                with open(f"/tmp/{key}.part", "r+b" if offset else "wb") as f:
                    f.truncate(offset)
                    f.seek(offset)
                    async for chunk in chunks:
                        f.write(chunk)
                    return f.tell()
            ...  # and the other methods below
    """

    async def append(self, key: str, offset: int, chunks: AsyncIterable[bytes]) -> int:
        """Write ``chunks`` to the unfinished upload ``key`` starting at byte ``offset``.

        ``offset`` 0 starts the upload; bytes a store kept beyond ``offset`` (from a request the
        caller never recorded) are discarded first. Returns the upload's size afterwards. Every
        byte counted in that size is durable; when ``chunks`` ends early (the client went away)
        what arrived is kept, which is what lets an interrupted upload resume.
        """
        ...

    async def finish_upload(self, key: str, size: int) -> None:
        """Make the first ``size`` bytes of upload ``key`` the object ``key``; drop the upload."""
        ...

    async def abort_upload(self, key: str) -> None:
        """Throw away the unfinished upload ``key`` (no error when there is none)."""
        ...

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Store the object ``key`` from ``chunks`` (replacing any), returning its size."""
        ...

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Yield bytes ``start`` up to (not including) ``end`` of the object ``key``.

        Raises :class:`~ravepilot_core.errors.MediaNotFound` when there is no such object.
        """
        ...

    async def size(self, key: str) -> int | None:
        """Return the object's size in bytes, or None when it does not exist."""
        ...

    async def delete(self, keys: Sequence[str]) -> None:
        """Delete objects and unfinished uploads under ``keys``; missing keys are not an error.

        A key ending in ``/`` deletes everything under that prefix (erasing a submission).
        """
        ...

    async def playback_url(
        self, key: str, *, expires_at: datetime, content_type: str | None = None
    ) -> str | None:
        """Return a signed URL that serves the object until ``expires_at``, or None.

        None means the store cannot sign URLs itself (the local file store): RavePilot then
        serves the object through its own signed, expiring ``/media/…`` route.
        """
        ...

    async def close(self) -> None:
        """Release connections and files."""
        ...


@runtime_checkable
class Transcriber(Protocol):
    """Turns the speech in an audio file into text with word timings.

    RavePilot hands it a 16 kHz mono 16-bit WAV file it extracted from a normalised clip, and
    stores the transcript on the clip (``clip.transcribed``). Found by URL scheme in the
    ``ravepilot.transcriber`` group; must pass ``TranscriberContract``.

    Example::

        class ShoutingTranscriber:
            async def transcribe(self, audio: Path, *, language: str = "en") -> Transcript:
                text = await my_cloud_api(audio.read_bytes())
                return Transcript(text=text.upper(), language=language)

            async def close(self) -> None:
                pass
    """

    async def transcribe(self, audio: Path, *, language: str = "en") -> Transcript:
        """Return what is said in ``audio`` (empty text for silence), words in time order."""
        ...

    async def close(self) -> None:
        """Release models and processes."""
        ...


@runtime_checkable
class Renderer(Protocol):
    """Cuts an ad-ready video from approved clips: joined, framed, branded and captioned.

    Found by URL scheme in the ``ravepilot.renderer`` group; must pass ``RendererContract``.
    It writes an mp4 (h264/aac, fast start) to ``output`` and returns its duration; RavePilot
    stores the file in the media store. Raising fails the render with the exception's message.

    The clips are the customer's own streams (see :class:`RenderClip`): any codec ffmpeg reads.

    Example (the first clip alone, converted with ffmpeg)::

        class FirstClipRenderer:
            async def render(self, request: RenderRequest, output: Path) -> int:
                clip = request.clips[0]
                seconds = str(clip.duration_ms / 1000)
                await run_ffmpeg("-y", "-i", clip.path, "-t", seconds, "-c:v", "libx264",
                                 "-c:a", "aac", "-movflags", "+faststart", str(output))
                return clip.duration_ms

            async def close(self) -> None:
                pass
    """

    async def render(self, request: RenderRequest, output: Path) -> int:
        """Write the cut to ``output`` and return its duration in milliseconds."""
        ...

    async def close(self) -> None:
        """Release processes and files."""
        ...


@runtime_checkable
class Storage(Protocol):
    """Where RavePilot keeps its state.

    Every mutating method that emits events takes them as ``events`` and stores them, together with
    one delivery row per endpoint of the workspace subscribed to the event's type, in the same
    transaction as the change (the outbox): ``pending`` for an active endpoint, ``held`` for one
    disabled automatically or by a 410, none for one switched off by hand. Nothing is stored when
    the change is refused.

    Example (the embedded default and the in-memory backend both implement it)::

        storage = await open_storage("sqlite:///var/lib/ravepilot/ravepilot.db")
        await storage.migrate()
        workspace = await storage.get_workspace_by_slug("default")
    """

    # -- lifecycle ---------------------------------------------------------------------------
    async def migrate(self) -> None:
        """Create or upgrade the schema; safe to call on every start."""
        ...

    async def ping(self) -> None:
        """Raise :class:`~ravepilot_core.errors.BackendError` if the store is unreachable."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...

    async def wait_for_changes(self, timeout: float) -> bool:
        """Return True soon after another process commits, or False after ``timeout`` seconds.

        Workers use it to notice work committed elsewhere (an API process, another worker)
        without polling the queues; commits of this process wake them directly. A backend with
        no way to tell (or no other process to hear from) sleeps for ``timeout``.
        """
        ...

    # -- workspaces and keys -------------------------------------------------------------------
    async def create_workspace(self, workspace: Workspace, primary_collector: Collector) -> None:
        """Store a workspace with its primary collector; a taken slug is a Conflict."""
        ...

    async def get_workspace(self, workspace_id: str) -> Workspace | None:
        """Return the workspace with this id."""
        ...

    async def get_workspace_by_slug(self, slug: str) -> Workspace | None:
        """Return the workspace with this slug."""
        ...

    async def update_workspace(self, workspace: Workspace) -> None:
        """Replace a workspace's name and notify email (its id, slug and creation time stay)."""
        ...

    async def create_api_key(self, key: ApiKey) -> None:
        """Store a new API key (its hash only)."""
        ...

    async def get_api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        """Return the key whose secret hashes to ``key_hash``, revoked or not."""
        ...

    async def list_api_keys(self, workspace_id: str) -> list[ApiKey]:
        """Return the workspace's keys, newest first."""
        ...

    async def touch_api_key(self, key_id: str, used_at: datetime) -> None:
        """Record that the key was used at ``used_at``."""
        ...

    async def revoke_api_key(self, key_id: str, revoked_at: datetime) -> ApiKey | None:
        """Revoke a key (keeping the first revocation time); None if there is no such key."""
        ...

    # -- collectors ----------------------------------------------------------------------------
    async def create_collector(self, workspace_id: str, collector: Collector) -> None:
        """Store a new, non-primary collector."""
        ...

    async def update_collector(self, workspace_id: str, collector: Collector) -> None:
        """Replace a collector's settings (its id, primary flag and creation time are kept)."""
        ...

    async def get_collector(self, workspace_id: str, collector_id: str) -> Collector | None:
        """Return the collector if it belongs to the workspace."""
        ...

    async def get_primary_collector(self, workspace_id: str) -> Collector | None:
        """Return the workspace's primary collector."""
        ...

    async def list_collectors(self, workspace_id: str) -> list[Collector]:
        """Return the workspace's collectors, newest first."""
        ...

    # -- submissions ---------------------------------------------------------------------------
    async def create_submission(
        self,
        submission: SubmissionRecord,
        *,
        events: Sequence[EventRecord] = (),
        jobs: Sequence[Job] = (),
    ) -> tuple[SubmissionRecord, bool]:
        """Store ``submission`` unless its collector already has one for the same customer email.

        Returns the stored submission and whether it was created. When it already existed, nothing
        is written (neither events nor jobs); concurrent calls create exactly one.
        """
        ...

    async def queue_invitation_email(
        self, submission_id: str, job: Job, *, requested_at: datetime, not_since: datetime
    ) -> bool:
        """Queue ``job`` unless an email for the submission was requested at or after ``not_since``.

        On success the submission's email state becomes ``queued`` and its ``email_requested_at``
        becomes ``requested_at``. The check and the write are one atomic step.
        """
        ...

    async def get_submission(
        self, workspace_id: str, submission_id: str
    ) -> SubmissionRecord | None:
        """Return the submission if it belongs to the workspace."""
        ...

    async def list_submissions(
        self,
        workspace_id: str,
        *,
        status: SubmissionStatus | None,
        limit: int,
        offset: int = 0,
        before_id: str | None = None,
    ) -> list[SubmissionRecord]:
        """Return up to ``limit`` submissions, newest (highest id) first.

        ``before_id`` restricts to ids lower than it (keyset pagination); ``offset`` skips rows.
        """
        ...

    # -- the recording portal ------------------------------------------------------------------
    async def get_submission_by_token(self, token_hash: str) -> SubmissionRecord | None:
        """Return the submission whose invite token hashes to ``token_hash``."""
        ...

    async def update_submission(
        self,
        record: SubmissionRecord,
        *,
        expect_status: Sequence[SubmissionStatus],
        events: Sequence[EventRecord] = (),
        jobs: Sequence[Job] = (),
    ) -> bool:
        """Write ``record``'s status, customer, consent and ``updated_at`` with its events and jobs.

        Only when the stored status is one of ``expect_status`` (a compare-and-set, so two
        requests cannot both move a submission on); returns False and writes nothing otherwise.
        """
        ...

    async def erase_submission(
        self,
        record: SubmissionRecord,
        *,
        expect_status: Sequence[SubmissionStatus],
        events: Sequence[EventRecord] = (),
        jobs: Sequence[Job] = (),
        redact_events: bool = False,
    ) -> bool:
        """Like :meth:`update_submission`, and delete its clips, uploads and renders too.

        With ``redact_events``, the stored events that mention the submission get an erased body
        (:func:`ravepilot_core.events.erased_payload`), in the same transaction.
        """
        ...

    async def list_clips(self, submission_ids: Sequence[str]) -> list[ClipRecord]:
        """Return the clips of the given submissions, oldest first."""
        ...

    async def get_clip(self, workspace_id: str, clip_id: str) -> ClipRecord | None:
        """Return the clip if it belongs to the workspace."""
        ...

    async def review_clip(
        self, clip: ClipRecord, *, events: Sequence[EventRecord] = ()
    ) -> SubmissionStatus | None:
        """Store ``clip.review`` (and ``updated_at``) with its events; return the submission status.

        When no clip of a ``submitted`` submission is left pending, the submission becomes
        ``reviewed`` in the same transaction, however many reviewers decide at once. Returns
        None (writing nothing) when the clip no longer exists.
        """
        ...

    async def update_clip(
        self,
        clip: ClipRecord,
        *,
        events: Sequence[EventRecord] = (),
        jobs: Sequence[Job] = (),
    ) -> bool:
        """Store what processing learnt: status, type, duration, transcript, keys, error.

        With its events and follow-up jobs, in one transaction. False when the clip is gone.
        """
        ...

    async def create_upload(self, upload: Upload) -> None:
        """Store a new upload."""
        ...

    async def get_upload(self, submission_id: str, upload_id: str) -> Upload | None:
        """Return the submission's upload."""
        ...

    async def claim_upload(self, upload_id: str, *, offset: int, writer: str) -> bool:
        """Make ``writer`` the one request that may move the upload on from ``offset``.

        False (writing nothing) unless the upload is unfinished and at ``offset``. A later claim
        takes over from an earlier one: a client that retried is waiting for its retry.
        """
        ...

    async def advance_upload(
        self, upload_id: str, *, from_offset: int, to_offset: int, writer: str | None = None
    ) -> bool:
        """Move an unfinished upload's offset from ``from_offset`` to ``to_offset``.

        With ``writer``, only if that claim is still the upload's (and the claim ends). Returns
        False (writing nothing) when the stored offset is not ``from_offset``, another request
        claimed it since, or the upload is finished or gone.
        """
        ...

    async def complete_upload(
        self,
        upload: Upload,
        clip: ClipRecord,
        *,
        events: Sequence[EventRecord] = (),
        jobs: Sequence[Job] = (),
        replaced: ReplacedClips = lambda clips: (),
    ) -> bool:
        """Finish ``upload`` (its final offset, ``completed_at``, ``clip_id``) and store ``clip``.

        In one transaction: the submission's earlier clip for the same prompt is deleted (a
        retake) and ``replaced(deleted clips)`` jobs are stored, then the clip, its events and
        ``jobs`` (processing it).
        Returns False (writing nothing) unless the upload was unfinished and its submission is
        still ``recording``.
        """
        ...

    async def delete_upload(self, upload_id: str) -> bool:
        """Delete an unfinished upload; False when there was none."""
        ...

    async def list_expired_uploads(self, *, now: datetime, limit: int) -> list[Upload]:
        """Return unfinished uploads whose ``expires_at`` is before ``now``, oldest first."""
        ...

    # -- renders -------------------------------------------------------------------------------
    async def create_render(self, render: RenderRecord, *, jobs: Sequence[Job] = ()) -> None:
        """Store a queued render with the job that makes it."""
        ...

    async def get_render(self, workspace_id: str, render_id: str) -> RenderRecord | None:
        """Return the render if it belongs to the workspace."""
        ...

    async def list_renders(self, submission_ids: Sequence[str]) -> list[RenderRecord]:
        """Return the renders of the given submissions, oldest first."""
        ...

    async def update_render(
        self, render: RenderRecord, *, events: Sequence[EventRecord] = ()
    ) -> bool:
        """Store a render's status, duration, file and error with its events.

        A ``succeeded`` render moves its ``submitted`` or ``reviewed`` submission to
        ``rendered`` in the same transaction. False when the render is gone.
        """
        ...

    # -- events and webhooks -------------------------------------------------------------------
    async def list_events(self, workspace_id: str, *, limit: int = 50) -> list[EventRecord]:
        """Return the workspace's most recent events, newest first."""
        ...

    async def create_webhook_endpoint(self, record: WebhookEndpointRecord) -> None:
        """Store a new webhook endpoint."""
        ...

    async def get_webhook_endpoint(
        self, workspace_id: str, endpoint_id: str
    ) -> WebhookEndpointRecord | None:
        """Return the endpoint if it belongs to the workspace."""
        ...

    async def list_webhook_endpoints(self, workspace_id: str) -> list[WebhookEndpointRecord]:
        """Return the workspace's endpoints, newest first."""
        ...

    async def update_webhook_endpoint(self, record: WebhookEndpointRecord) -> None:
        """Replace an endpoint's settings, secrets and bookkeeping.

        When the record is inactive, the endpoint's ``pending`` deliveries become ``held`` in the
        same transaction (replayable with :meth:`recover_deliveries` once it is active again).
        """
        ...

    async def delete_webhook_endpoint(self, workspace_id: str, endpoint_id: str) -> bool:
        """Delete the endpoint; its pending and held deliveries become ``dropped``.

        Returns False when the workspace has no such endpoint.
        """
        ...

    async def list_deliveries(self, endpoint_id: str, *, limit: int = 50) -> list[Delivery]:
        """Return the endpoint's most recent deliveries, newest first."""
        ...

    async def get_delivery(self, workspace_id: str, delivery_id: str) -> Delivery | None:
        """Return the delivery if it belongs to the workspace."""
        ...

    async def list_delivery_attempts(self, delivery_id: str) -> list[DeliveryAttempt]:
        """Return the delivery's attempt log, first attempt first."""
        ...

    async def create_direct_delivery(
        self,
        event: EventRecord,
        endpoint_id: str,
        *,
        leased_to: str | None = None,
        lease_until: datetime | None = None,
    ) -> Delivery:
        """Store ``event`` with one ``pending`` delivery to ``endpoint_id`` and no other.

        For ``webhook.test``: it reaches the one endpoint whatever its subscriptions or state.
        With ``leased_to``, the delivery is created already leased (due at ``lease_until``), so a
        caller that sends it right away records the result itself.
        """
        ...

    async def claim_deliveries(
        self,
        *,
        now: datetime,
        worker_id: str,
        lease_until: datetime,
        limit: int,
        per_endpoint: int | None = None,
        endpoint_room: Mapping[str, int] | None = None,
    ) -> list[DeliveryTask]:
        """Lease up to ``limit`` due deliveries, oldest ``next_attempt_at`` first.

        Due means ``pending`` with ``next_attempt_at <= now``. A claimed delivery's
        ``next_attempt_at`` becomes ``lease_until``, so it is due again by itself if the worker
        dies; no two workers hold one delivery. At most ``endpoint_room[id]`` deliveries of an
        endpoint named there are taken (none at 0), and at most ``per_endpoint`` of any other,
        so one busy endpoint cannot crowd the others out of a claim.
        """
        ...

    async def record_delivery_results(
        self,
        results: Sequence[DeliveryResult],
        *,
        worker_id: str,
        at: datetime,
        disable_threshold: int,
        disable_notice: DisableNotice,
    ) -> int:
        """Write a batch of attempt outcomes in one transaction; return how many were applied.

        A result applies only while ``worker_id`` holds the delivery's lease. For each applied
        result the delivery's status, attempts, last response and next attempt are set and its
        attempt is logged. Per endpoint, in the order of the attempts: a success resets
        ``failure_count`` (and ``first_failure_at``), a failed attempt adds one; the last
        attempt sets ``last_status_code`` and ``last_attempt_at``. An active endpoint is then
        disabled, at ``at``, as ``gone`` if an applied result was a 410, or as ``auto`` when its
        ``failure_count`` reached ``disable_threshold``; its pending deliveries become ``held``
        and the job ``disable_notice`` makes is stored, all in the same transaction.
        """
        ...

    async def requeue_delivery(
        self, workspace_id: str, delivery_id: str, *, at: datetime
    ) -> Delivery | None:
        """Make a delivery (of any status but ``dropped``) ``pending`` and due at ``at``.

        Returns the updated delivery, or None when the workspace has no such delivery. A
        ``dropped`` delivery (its endpoint is gone) is returned unchanged.
        """
        ...

    async def recover_deliveries(self, endpoint_id: str, *, since: datetime, at: datetime) -> int:
        """Re-queue the endpoint's ``failed`` and ``held`` deliveries created since ``since``.

        They become ``pending`` and due at ``at``; returns how many.
        """
        ...

    async def delivery_queue_stats(self) -> DeliveryQueueStats:
        """Count pending deliveries and tell when the oldest of them was created."""
        ...

    # -- jobs ----------------------------------------------------------------------------------
    async def claim_jobs(
        self, *, now: datetime, worker_id: str, lease_until: datetime, limit: int
    ) -> list[Job]:
        """Lease up to ``limit`` due jobs (queued with ``run_at <= now``, or whose lease expired).

        A claimed job is ``running`` with its ``attempts`` counted; no two workers hold one job.
        """
        ...

    async def extend_job_lease(self, job_id: str, *, worker_id: str, lease_until: datetime) -> bool:
        """Move the lease of a job ``worker_id`` still holds to ``lease_until``.

        A long job (a render) renews its lease while it runs, so no other worker takes it up
        as abandoned. False when the lease was lost or the job finished.
        """
        ...

    async def finish_job(
        self,
        job_id: str,
        *,
        worker_id: str,
        outcome: JobOutcome,
        at: datetime,
        error: str | None = None,
        retry_at: datetime | None = None,
        invitation_email: InvitationEmail | None = None,
        events: Sequence[EventRecord] = (),
    ) -> bool:
        """Record a job's outcome if ``worker_id`` still holds its lease.

        ``retry`` puts it back in the queue for ``retry_at``. ``invitation_email``, when given,
        becomes the job's submission's email state in the same transaction. Returns False (and
        writes nothing) when the lease was lost.
        """
        ...

    async def list_jobs(self, subject_id: str) -> list[Job]:
        """Return every job about ``subject_id``, oldest first."""
        ...

    # -- idempotency ---------------------------------------------------------------------------
    async def begin_idempotent_request(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        """Claim ``record.key`` for a new request, or return the live record that holds it.

        Returns None when the claim succeeded (no record, or only an expired one, existed).
        """
        ...

    async def complete_idempotent_request(
        self, workspace_id: str, key: str, *, status: int, body: bytes
    ) -> None:
        """Store the response of the request that holds the key."""
        ...

    async def release_idempotent_request(self, workspace_id: str, key: str) -> None:
        """Forget an unfinished key so the client may retry (used when the request failed)."""
        ...
