"""The domain and wire types, as msgspec Structs.

Types named after a resource (``Submission``, ``Collector``, ``WebhookEndpoint``...) are exactly
what the API shows and what event payloads carry. Types ending in ``Record`` are what storage
keeps: they add the workspace and the secrets that are never shown. New fields always get
defaults, so stored JSON and clients keep working.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

import msgspec

__all__ = [
    "ALL_SCOPES",
    "ApiKey",
    "Brand",
    "Clip",
    "ClipRecord",
    "Collector",
    "Consent",
    "Customer",
    "Delivery",
    "DeliveryAttempt",
    "DeliveryDetail",
    "DeliveryOutcome",
    "DeliveryQueueStats",
    "DeliveryResult",
    "DeliveryStatus",
    "DeliveryTask",
    "Email",
    "Event",
    "EventRecord",
    "IdempotencyRecord",
    "InvitationEmail",
    "InvitationResult",
    "Job",
    "JobStatus",
    "Page",
    "Playback",
    "PortalClip",
    "PortalSession",
    "Principal",
    "Render",
    "RenderClip",
    "RenderRecord",
    "RenderRequest",
    "Review",
    "Scope",
    "ScriptPrompt",
    "Submission",
    "SubmissionRecord",
    "SubmissionStatus",
    "Transcript",
    "TranscriptWord",
    "Upload",
    "WebhookEndpoint",
    "WebhookEndpointRecord",
    "Workspace",
]

T = TypeVar("T")

Scope = Literal["invitations", "submissions", "review", "webhooks", "admin"]
ALL_SCOPES: tuple[Scope, ...] = ("invitations", "submissions", "review", "webhooks", "admin")

SubmissionStatus = Literal["invited", "recording", "submitted", "reviewed", "rendered", "withdrawn"]
EmailStatus = Literal["queued", "sent", "failed", "not_sent"]
DeliveryStatus = Literal["pending", "succeeded", "failed", "held", "dropped"]
JobStatus = Literal["queued", "running", "succeeded", "failed"]
DisabledReason = Literal["auto", "manual", "gone"]
DeliveryOutcome = Literal["succeeded", "retry", "failed", "held"]


class Workspace(msgspec.Struct, kw_only=True, frozen=True):
    """A tenant: every other object belongs to exactly one workspace."""

    id: str
    slug: str
    name: str
    created_at: datetime
    notify_email: str | None = None  # where operator notices go (an endpoint auto-disabled...)


class ApiKey(msgspec.Struct, kw_only=True, frozen=True):
    """A workspace API key as stored: the secret itself is only ever held as ``key_hash``."""

    id: str
    workspace_id: str
    name: str
    prefix: str
    key_hash: str
    scopes: tuple[Scope, ...]
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class Principal(msgspec.Struct, kw_only=True, frozen=True):
    """Who is calling: the authenticated key's workspace and scopes."""

    workspace_id: str
    key_id: str
    scopes: frozenset[str]


class Brand(msgspec.Struct, kw_only=True, frozen=True):
    """How a collector's portal and emails look."""

    name: str
    logo_url: str | None = None
    primary_color: str = "#4F46E5"


class ScriptPrompt(msgspec.Struct, kw_only=True, frozen=True):
    """One question the customer answers with one clip."""

    key: str
    prompt: str
    max_seconds: int = 60


class Collector(msgspec.Struct, kw_only=True, frozen=True):
    """A campaign with its own branding and script."""

    id: str
    name: str
    primary: bool
    brand: Brand
    host: str | None = None
    consent_text: str
    script: tuple[ScriptPrompt, ...]
    auto_render: bool = False
    render_formats: tuple[Literal["9:16", "1:1", "16:9"], ...] = ("9:16",)
    locale: str = "en"
    created_at: datetime
    # Clips shorter than this are refused after upload (a mis-tap on "record" is not a take).
    min_clip_seconds: int = 1


class Customer(msgspec.Struct, kw_only=True, frozen=True):
    """The invited customer; ``email`` is stored lowercased and is their identity."""

    email: str
    name: str | None = None
    phone: str | None = None


class InvitationEmail(msgspec.Struct, kw_only=True, frozen=True):
    """Where the invitation email stands."""

    status: EmailStatus
    sent_at: datetime | None = None
    error: str | None = None


class Consent(msgspec.Struct, kw_only=True, frozen=True):
    """The consent the customer gave, with the exact text and its version."""

    given_at: datetime
    text: str
    version: str


class TranscriptWord(msgspec.Struct, kw_only=True, frozen=True):
    """One recognised word with its timing."""

    word: str
    start_ms: int
    end_ms: int


class Transcript(msgspec.Struct, kw_only=True, frozen=True):
    """What the customer said in a clip."""

    text: str
    language: str
    words: tuple[TranscriptWord, ...] = ()


class Review(msgspec.Struct, kw_only=True, frozen=True):
    """The business's decision on a clip."""

    status: Literal["pending", "approved", "rejected"] = "pending"
    note: str | None = None
    decided_at: datetime | None = None


class Playback(msgspec.Struct, kw_only=True, frozen=True):
    """A time-limited signed URL to watch media."""

    url: str
    expires_at: datetime


class Clip(msgspec.Struct, kw_only=True, frozen=True):
    """One recorded answer to one script prompt."""

    id: str
    submission_id: str
    script_key: str
    status: Literal["uploading", "processing", "ready", "failed"]
    duration_ms: int | None = None
    mime_type: str | None = None
    size_bytes: int | None = None
    transcript: Transcript | None = None
    review: Review = Review()
    playback: Playback | None = None
    poster: Playback | None = None
    error: str | None = None
    created_at: datetime


class Render(msgspec.Struct, kw_only=True, frozen=True):
    """An ad-ready cut made from approved clips."""

    id: str
    submission_id: str
    format: Literal["9:16", "1:1", "16:9"]
    status: Literal["queued", "running", "succeeded", "failed"]
    clip_ids: tuple[str, ...]
    duration_ms: int | None = None
    playback: Playback | None = None
    error: str | None = None
    created_at: datetime
    finished_at: datetime | None = None


class Submission(msgspec.Struct, kw_only=True, frozen=True):
    """One customer's recording session for one collector, as the API shows it."""

    id: str
    collector_id: str
    status: SubmissionStatus
    customer: Customer
    link: str | None
    invitation_email: InvitationEmail
    consent: Consent | None = None
    clips: tuple[Clip, ...] = ()
    renders: tuple[Render, ...] = ()
    created_at: datetime
    updated_at: datetime


class SubmissionRecord(msgspec.Struct, kw_only=True, frozen=True):
    """A submission as stored: the invite token only as its hash."""

    id: str
    workspace_id: str
    collector_id: str
    status: SubmissionStatus
    customer: Customer
    token_hash: str
    invitation_email: InvitationEmail
    email_requested_at: datetime | None = None
    consent: Consent | None = None
    created_at: datetime
    updated_at: datetime


class ClipRecord(msgspec.Struct, kw_only=True, frozen=True):
    """A clip as stored: where its media is, besides what the API shows."""

    id: str
    workspace_id: str
    submission_id: str
    script_key: str
    status: Literal["uploading", "processing", "ready", "failed"]
    media_key: str
    mime_type: str | None = None
    size_bytes: int | None = None
    duration_ms: int | None = None
    transcript: Transcript | None = None
    review: Review = Review()
    # Set by ingest: the normalised mp4 (the 720p playback copy) and its poster frame. The
    # customer's original stays at ``media_key``: transcripts come from the copy, renders
    # from the original.
    normalised_key: str | None = None
    poster_key: str | None = None
    error: str | None = None
    created_at: datetime
    updated_at: datetime


class RenderRecord(msgspec.Struct, kw_only=True, frozen=True):
    """A render as stored: where its file is, besides what the API shows."""

    id: str
    workspace_id: str
    submission_id: str
    format: Literal["9:16", "1:1", "16:9"]
    status: Literal["queued", "running", "succeeded", "failed"]
    clip_ids: tuple[str, ...]
    duration_ms: int | None = None
    media_key: str | None = None
    error: str | None = None
    created_at: datetime
    finished_at: datetime | None = None


class Upload(msgspec.Struct, kw_only=True, frozen=True):
    """A resumable (tus) upload of one clip: how far it got and where its bytes go."""

    id: str
    workspace_id: str
    submission_id: str
    script_key: str
    length: int
    offset: int = 0
    media_key: str
    filename: str | None = None
    filetype: str | None = None
    expires_at: datetime
    created_at: datetime
    completed_at: datetime | None = None
    clip_id: str | None = None


class PortalClip(msgspec.Struct, kw_only=True, frozen=True):
    """A clip as the customer's own page sees it."""

    id: str
    script_key: str
    status: Literal["uploading", "processing", "ready", "failed"]
    mime_type: str | None = None
    size_bytes: int | None = None
    created_at: datetime


class PortalSession(msgspec.Struct, kw_only=True, frozen=True):
    """What the recording page needs, answered to the invite token alone.

    ``upload_url`` is the tus creation URL (a path on the portal's host).
    """

    submission_id: str
    status: SubmissionStatus
    customer_name: str | None = None
    brand: Brand
    locale: str
    consent_text: str
    consent_version: str
    consent: Consent | None = None
    script: tuple[ScriptPrompt, ...]
    clips: tuple[PortalClip, ...] = ()
    upload_url: str
    max_upload_bytes: int
    accepted_types: tuple[str, ...]


class RenderClip(msgspec.Struct, kw_only=True, frozen=True):
    """One approved clip handed to a renderer: the customer's original file and what was said.

    ``path`` is a local file holding the recording's streams as they were uploaded, at their own
    codec, size, frame rate and rotation (the best quality there is), without the upload's
    metadata: ``.mov`` for an MP4 or QuickTime upload, ``.mkv`` for WebM, Matroska and anything
    else. The renderer brings it to the output's frame rate and size itself. ``duration_ms``
    and the transcript's timings are those of the normalised clip, whose picture and sound each
    start at zero.
    """

    path: str
    duration_ms: int
    transcript: Transcript | None = None


class RenderRequest(msgspec.Struct, kw_only=True, frozen=True):
    """Everything a renderer needs to cut one ad: clips in order, the format and the branding.

    ``logo_path`` is a local copy of the collector's logo (PNG/JPEG), or None.
    """

    format: Literal["9:16", "1:1", "16:9"]
    clips: tuple[RenderClip, ...]
    customer_name: str | None = None
    brand: Brand
    logo_path: str | None = None
    captions: bool = True


class InvitationResult(msgspec.Struct, kw_only=True, frozen=True):
    """What creating an invitation returns."""

    ok: bool
    link: str
    invite_token: str
    submission: Submission
    reused: bool


class Event(msgspec.Struct, kw_only=True, frozen=True):
    """A webhook event, exactly as it is sent."""

    id: str
    type: str
    created_at: datetime
    workspace_id: str
    data: Any


class EventRecord(msgspec.Struct, kw_only=True, frozen=True):
    """An event as stored: its JSON body is encoded once and signed as sent."""

    id: str
    workspace_id: str
    type: str
    created_at: datetime
    payload: bytes


class WebhookEndpoint(msgspec.Struct, kw_only=True, frozen=True):
    """A registered webhook receiver, as the API shows it (never with its secret)."""

    id: str
    url: str
    events: tuple[str, ...]
    description: str | None = None
    active: bool = True
    disabled_reason: DisabledReason | None = None
    failure_count: int = 0
    first_failure_at: datetime | None = None
    last_status_code: int | None = None
    last_attempt_at: datetime | None = None
    auto_disabled_at: datetime | None = None
    created_at: datetime


class WebhookEndpointRecord(msgspec.Struct, kw_only=True, frozen=True):
    """A webhook endpoint as stored, with its encrypted signing secrets."""

    workspace_id: str
    endpoint: WebhookEndpoint
    secret_ciphertext: str
    previous_secret_ciphertext: str | None = None
    previous_secret_expires_at: datetime | None = None

    def subscribes_to(self, event_type: str) -> bool:
        """Return whether events of ``event_type`` go to this endpoint."""
        events = self.endpoint.events
        return "*" in events or event_type in events

    def new_delivery_status(
        self, workspace_id: str, event_type: str
    ) -> Literal["pending", "held"] | None:
        """Return the status a delivery of such an event starts in here, or None for none.

        The outbox rule every storage applies: ``pending`` for an active subscribed endpoint,
        ``held`` for one disabled automatically or by a 410 (replayable later), and nothing
        for another workspace's endpoint, an unsubscribed one, or one switched off by hand.
        """
        if workspace_id != self.workspace_id or not self.subscribes_to(event_type):
            return None
        if self.endpoint.active:
            return "pending"
        if self.endpoint.disabled_reason in ("auto", "gone"):
            return "held"
        return None


class Delivery(msgspec.Struct, kw_only=True, frozen=True):
    """One event on its way to one endpoint."""

    id: str
    event_id: str
    event_type: str
    endpoint_id: str
    status: DeliveryStatus
    attempts: int = 0
    response_status: int | None = None
    latency_ms: int | None = None
    error: str | None = None
    last_attempt_at: datetime | None = None
    next_attempt_at: datetime | None = None
    created_at: datetime


class DeliveryAttempt(msgspec.Struct, kw_only=True, frozen=True):
    """One HTTP attempt of a delivery, as the attempt log shows it."""

    number: int
    at: datetime
    target_ip: str | None = None
    status_code: int | None = None
    latency_ms: int | None = None
    error: str | None = None
    response_body: str | None = None  # the first 2 KB, decoded leniently


class DeliveryDetail(Delivery, kw_only=True, frozen=True):
    """A delivery with its attempt log (``GET /v1/deliveries/{id}``)."""

    attempt_log: tuple[DeliveryAttempt, ...] = ()


class DeliveryTask(msgspec.Struct, kw_only=True, frozen=True):
    """A claimed delivery with everything needed to send it: the body and the endpoint."""

    delivery_id: str
    workspace_id: str
    event_id: str
    event_type: str
    attempt: int  # the number of the attempt about to be made (1 for the first)
    payload: bytes
    endpoint: WebhookEndpointRecord


class DeliveryResult(msgspec.Struct, kw_only=True, frozen=True):
    """What one attempt came to, written back by the worker in batches.

    ``retry`` keeps the delivery pending until ``next_attempt_at``; ``held`` parks it without an
    attempt (its endpoint was disabled meanwhile). ``gone`` marks a 410 answer, which disables the
    endpoint at once.
    """

    delivery_id: str
    endpoint_id: str
    outcome: DeliveryOutcome
    attempt: DeliveryAttempt | None = None
    next_attempt_at: datetime | None = None
    gone: bool = False


class DeliveryQueueStats(msgspec.Struct, kw_only=True, frozen=True):
    """The state of the delivery queue, for metrics."""

    pending: int
    oldest_pending_at: datetime | None = None


class Email(msgspec.Struct, kw_only=True, frozen=True):
    """An email to send: what a :class:`~ravepilot_core.protocols.Mailer` receives.

    Structured rather than MIME, so an API-based mailer uses the fields as they are and an
    SMTP one renders them with :func:`ravepilot_core.mime.render_mime`.
    """

    sender: str
    to: str
    subject: str
    text: str
    html: str
    message_id: str
    headers: dict[str, str] = {}


class Job(msgspec.Struct, kw_only=True, frozen=True):
    """A durable background job (emails now; media work later)."""

    id: str
    workspace_id: str
    kind: str
    subject_id: str
    payload: dict[str, Any] = {}
    status: JobStatus = "queued"
    attempts: int = 0
    max_attempts: int = 8
    run_at: datetime
    last_error: str | None = None
    created_at: datetime
    finished_at: datetime | None = None


class IdempotencyRecord(msgspec.Struct, kw_only=True, frozen=True):
    """The remembered outcome of a request made with an ``Idempotency-Key``."""

    workspace_id: str
    key: str
    fingerprint: str
    created_at: datetime
    expires_at: datetime
    response_status: int | None = None
    response_body: bytes | None = None

    @property
    def in_flight(self) -> bool:
        """Whether the first request with this key has not finished yet."""
        return self.response_status is None


class Page(msgspec.Struct, Generic[T], kw_only=True, frozen=True):
    """One page of a list, newest first."""

    data: list[T]
    has_more: bool
    next_cursor: str | None = None
