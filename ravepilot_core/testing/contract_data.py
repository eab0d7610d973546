"""Test data for the contract suites: a fixed start time and builders of valid records."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from ravepilot_core.events import make_event
from ravepilot_core.ids import new_id
from ravepilot_core.models import (
    ApiKey,
    Brand,
    Collector,
    Consent,
    Customer,
    EventRecord,
    InvitationEmail,
    Job,
    ScriptPrompt,
    SubmissionRecord,
    SubmissionStatus,
    WebhookEndpoint,
    WebhookEndpointRecord,
    Workspace,
)
from ravepilot_core.protocols import Storage

__all__ = [
    "T0",
    "at",
    "invitation_event",
    "make_api_key",
    "make_collector",
    "make_endpoint",
    "make_job",
    "make_submission",
    "make_workspace",
    "new_workspace",
]

#: The moment every contract test starts from (aware UTC, millisecond precision).
T0 = datetime(2026, 3, 1, 9, 30, 15, 123000, tzinfo=UTC)


def at(**delta: float) -> datetime:
    """Return ``T0`` moved by ``timedelta(**delta)``."""
    return T0 + timedelta(**delta)


# -- test data -------------------------------------------------------------------------------------
def make_collector(
    *, name: str = "Spring campaign", primary: bool = False, when: datetime = T0
) -> Collector:
    """Return a collector created at ``when``."""
    return Collector(
        id=new_id("col", when),
        name=name,
        primary=primary,
        brand=Brand(name=name, logo_url="https://cdn.example.com/logo.png"),
        consent_text=f"I agree that {name} may publish my clips.",
        script=(
            ScriptPrompt(key="intro", prompt="Who are you?", max_seconds=30),
            ScriptPrompt(key="result", prompt="What changed?"),
        ),
        render_formats=("9:16", "1:1"),
        created_at=when,
    )


def make_workspace(slug: str | None = None, *, when: datetime = T0) -> tuple[Workspace, Collector]:
    """Return a workspace and its primary collector, created at ``when``."""
    slug = slug or f"acme-{secrets.token_hex(4)}"
    workspace = Workspace(id=new_id("ws", when), slug=slug, name=slug.title(), created_at=when)
    return workspace, make_collector(name="Primary", primary=True, when=when)


async def new_workspace(
    storage: Storage, slug: str | None = None, *, when: datetime = T0
) -> tuple[Workspace, Collector]:
    """Create a workspace with its primary collector in ``storage`` and return both."""
    workspace, primary = make_workspace(slug, when=when)
    await storage.create_workspace(workspace, primary)
    return workspace, primary


def make_api_key(workspace_id: str, *, name: str = "ci", when: datetime = T0) -> ApiKey:
    """Return an API key created at ``when``."""
    return ApiKey(
        id=new_id("key", when),
        workspace_id=workspace_id,
        name=name,
        prefix=f"rp_live_{secrets.token_hex(2)}",
        key_hash=secrets.token_hex(32),
        scopes=("invitations", "submissions"),
        created_at=when,
    )


def make_submission(
    workspace_id: str,
    collector_id: str,
    *,
    email: str = "ada@example.com",
    name: str | None = "Ada Lovelace",
    status: SubmissionStatus = "invited",
    email_requested_at: datetime | None = None,
    when: datetime = T0,
) -> SubmissionRecord:
    """Return a submission created at ``when`` (its email queued if ``email_requested_at``)."""
    return SubmissionRecord(
        id=new_id("sub", when),
        workspace_id=workspace_id,
        collector_id=collector_id,
        status=status,
        customer=Customer(email=email, name=name, phone="+14155550132"),
        token_hash=secrets.token_hex(32),
        invitation_email=InvitationEmail(
            status="queued" if email_requested_at is not None else "not_sent"
        ),
        email_requested_at=email_requested_at,
        consent=Consent(given_at=when, text="I agree.", version="v1"),
        created_at=when,
        updated_at=when,
    )


def make_endpoint(
    workspace_id: str,
    *,
    events: tuple[str, ...] = ("*",),
    active: bool = True,
    disabled_reason: Any = None,
    when: datetime = T0,
) -> WebhookEndpointRecord:
    """Return a webhook endpoint record created at ``when``."""
    return WebhookEndpointRecord(
        workspace_id=workspace_id,
        endpoint=WebhookEndpoint(
            id=new_id("we", when),
            url=f"https://hooks.example.com/{secrets.token_hex(4)}",
            events=events,
            description="CRM sync",
            active=active,
            disabled_reason=disabled_reason,
            created_at=when,
        ),
        secret_ciphertext=secrets.token_hex(16),
    )


def make_job(
    workspace_id: str,
    subject_id: str,
    *,
    run_at: datetime = T0,
    payload: dict[str, Any] | None = None,
    when: datetime = T0,
) -> Job:
    """Return a queued job about ``subject_id``."""
    return Job(
        id=new_id("job", when),
        workspace_id=workspace_id,
        kind="test.job",
        subject_id=subject_id,
        payload=payload or {},
        run_at=run_at,
        created_at=when,
    )


def invitation_event(workspace_id: str, *, when: datetime = T0) -> EventRecord:
    """Return an ``invitation.created`` event."""
    return make_event(
        "invitation.created", workspace_id=workspace_id, data={"id": "sub_x"}, at=when
    )
