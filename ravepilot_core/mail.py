"""Invitation emails: composed from the collector's branding, sent by a durable job."""

from __future__ import annotations

import html
import secrets
from datetime import datetime

from ravepilot_core.context import Context
from ravepilot_core.errors import JobAbandoned
from ravepilot_core.ids import new_id
from ravepilot_core.models import Collector, Email, Job, SubmissionRecord

__all__ = ["INVITATION_EMAIL_JOB", "compose_invitation", "invitation_email_job", "send_invitation"]

INVITATION_EMAIL_JOB = "email.invitation"
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
