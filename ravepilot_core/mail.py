"""Emails sent by durable jobs: customers' invitations and operators' notices.

The invitation is branded with the collector; the notice tells a workspace that one of its
webhook endpoints was disabled and what to do about it.
"""

from __future__ import annotations

import html
import logging
import secrets
from datetime import datetime

from ravepilot_core.context import Context
from ravepilot_core.errors import JobAbandoned
from ravepilot_core.ids import new_id
from ravepilot_core.models import (
    Collector,
    Email,
    Job,
    SubmissionRecord,
    WebhookEndpoint,
    WebhookEndpointRecord,
    Workspace,
)

log = logging.getLogger("ravepilot.mail")

__all__ = [
    "INVITATION_EMAIL_JOB",
    "WEBHOOK_DISABLED_JOB",
    "compose_invitation",
    "compose_webhook_disabled",
    "invitation_email_job",
    "send_invitation",
    "send_webhook_disabled",
    "webhook_disabled_job",
]

INVITATION_EMAIL_JOB = "email.invitation"
WEBHOOK_DISABLED_JOB = "email.webhook_disabled"
LINK_HEADER = "X-RavePilot-Link"


def invitation_email_job(submission: SubmissionRecord, now: datetime) -> Job:
    """Return the job that emails ``submission``'s customer their link.

    The payload holds no link: the invite token is derived again when the job runs, so the
    database never stores it.
    """
    return Job(
        id=new_id("job", now),
        workspace_id=submission.workspace_id,
        kind=INVITATION_EMAIL_JOB,
        subject_id=submission.id,
        run_at=now,
        created_at=now,
    )


def compose_invitation(
    *, collector: Collector, submission: SubmissionRecord, link: str, mail_from: str
) -> Email:
    """Return the branded invitation email, with a plain-text and an HTML body."""
    brand = collector.brand
    greeting = f"Hi {submission.customer.name}," if submission.customer.name else "Hi,"
    prompts = len(collector.script)
    questions = f"{prompts} quick question{'s' if prompts != 1 else ''}"
    text = (
        f"{greeting}\n\n"
        f"{brand.name} invites you to record a short video testimonial: {questions}, right in "
        f"your browser.\n\n"
        f"Record here: {link}\n\n"
        "This link is personal; please don't share it.\n"
    )
    color = html.escape(brand.primary_color)
    name = html.escape(brand.name)
    escaped_link = html.escape(link)
    logo = (
        f'<img src="{html.escape(brand.logo_url)}" alt="{name}" style="max-height:48px"><br>'
        if brand.logo_url
        else ""
    )
    body = f"""<!doctype html>
<html><body style="font-family:system-ui,sans-serif;color:#111;max-width:560px;margin:auto">
{logo}<h1 style="color:{color};font-size:22px">{name} would love to hear from you</h1>
<p>{html.escape(greeting)}</p>
<p>{name} invites you to record a short video testimonial: {questions}, right in your
browser.</p>
<p><a href="{escaped_link}" style="display:inline-block;background:{color};color:#fff;
padding:12px 20px;border-radius:6px;text-decoration:none">Record your testimonial</a></p>
<p style="font-size:12px;color:#555">Or paste this link into your browser: {escaped_link}<br>
This link is personal; please don't share it.</p>
</body></html>
"""
    return Email(
        sender=mail_from,
        to=submission.customer.email,
        subject=f"{brand.name} would love to hear from you",
        text=text,
        html=body,
        message_id=f"{secrets.token_hex(16)}@ravepilot.local",
        headers={LINK_HEADER: link},
    )


async def send_invitation(context: Context, job: Job) -> None:
    """Send the invitation email of ``job``; any exception makes the job retry."""
    submission = await context.storage.get_submission(job.workspace_id, job.subject_id)
    if submission is None or submission.status == "withdrawn":
        raise JobAbandoned(f"submission {job.subject_id} no longer exists or was withdrawn")
    collector = await context.storage.get_collector(job.workspace_id, submission.collector_id)
    if collector is None:
        raise JobAbandoned(f"collector {submission.collector_id} no longer exists")
    link = context.link_for(context.keyring.invite_token(submission.id), collector.host)
    email = compose_invitation(
        collector=collector, submission=submission, link=link, mail_from=context.mail_from
    )
    await context.mailer.send(email)


def webhook_disabled_job(record: WebhookEndpointRecord, at: datetime) -> Job:
    """Return the job that tells the workspace its endpoint was disabled (stored with it)."""
    return Job(
        id=new_id("job", at),
        workspace_id=record.workspace_id,
        kind=WEBHOOK_DISABLED_JOB,
        subject_id=record.endpoint.id,
        payload={"reason": record.endpoint.disabled_reason},
        run_at=at,
        created_at=at,
    )


_REASONS = {
    "auto": "it failed {count} times in a row",
    "gone": "it answered 410 Gone, which means it no longer exists",
}


def compose_webhook_disabled(
    *, workspace: Workspace, endpoint: WebhookEndpoint, to: str, mail_from: str
) -> Email:
    """Return the notice that ``endpoint`` was disabled, with what to do next."""
    reason = _REASONS.get(endpoint.disabled_reason or "", "it was disabled").format(
        count=endpoint.failure_count
    )
    text = (
        f"RavePilot stopped sending webhooks to {endpoint.url} (endpoint {endpoint.id}) in "
        f"workspace {workspace.name}: {reason}.\n\n"
        f"Last HTTP status: {endpoint.last_status_code or 'none (no response)'}.\n"
        "New events for this endpoint are kept as held deliveries; nothing is lost.\n\n"
        "When your receiver is healthy again:\n"
        f'  1. re-enable it: PATCH /v1/webhooks/{endpoint.id} {{"active": true}} '
        "(a test event is sent first and must succeed);\n"
        f"  2. replay what it missed: POST /v1/webhooks/{endpoint.id}/recover "
        '{"since": "<when it started failing>"}.\n'
    )
    body = "".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n\n"))
    return Email(
        sender=mail_from,
        to=to,
        subject=f"Webhook endpoint disabled: {endpoint.url}",
        text=text,
        html=f'<!doctype html><html><body style="font-family:system-ui,sans-serif">{body}'
        "</body></html>\n",
        message_id=f"{secrets.token_hex(16)}@ravepilot.local",
    )


async def send_webhook_disabled(context: Context, job: Job) -> None:
    """Email the workspace's notify address about a disabled endpoint."""
    workspace = await context.storage.get_workspace(job.workspace_id)
    record = await context.storage.get_webhook_endpoint(job.workspace_id, job.subject_id)
    if workspace is None or record is None:
        raise JobAbandoned(f"endpoint {job.subject_id} or its workspace no longer exists")
    if not workspace.notify_email:
        log.warning(
            "webhook endpoint %s of workspace %s was disabled (%s), but the workspace has no "
            "notify email; set one with: ravepilot workspaces update %s --notify-email ADDRESS",
            record.endpoint.id,
            workspace.slug,
            record.endpoint.disabled_reason,
            workspace.slug,
        )
        return
    await context.mailer.send(
        compose_webhook_disabled(
            workspace=workspace,
            endpoint=record.endpoint,
            to=workspace.notify_email,
            mail_from=context.mail_from,
        )
    )
