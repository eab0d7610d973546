"""Invitations: find or create a customer's submission and hand out their personal link."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

import email_validator
import msgspec
import phonenumbers
from email_validator import rfc_constants

from ravepilot_core.collectors import CollectorService
from ravepilot_core.context import Context
from ravepilot_core.crypto import hash_secret
from ravepilot_core.errors import InvalidRequest
from ravepilot_core.events import make_event
from ravepilot_core.ids import new_id
from ravepilot_core.mail import invitation_email_job
from ravepilot_core.models import Customer, InvitationEmail, InvitationResult, SubmissionRecord
from ravepilot_core.submissions import SubmissionService

__all__ = [
    "RESEND_THROTTLE",
    "InvitationRequest",
    "InvitationService",
    "normalise_email",
    "normalise_phone",
]

RESEND_THROTTLE = timedelta(minutes=10)


class InvitationRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of ``POST /v1/invitations`` (``send_email`` is ignored by the link creator)."""

    customer_email: Annotated[str, msgspec.Meta(max_length=320)]
    customer_name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    customer_phone: Annotated[str, msgspec.Meta(max_length=40)] | None = None
    send_email: bool = True
    collector_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class LinkRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of ``POST /v1/invitations/link``: an invitation that never sends email."""

    customer_email: Annotated[str, msgspec.Meta(max_length=320)]
    customer_name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    customer_phone: Annotated[str, msgspec.Meta(max_length=40)] | None = None
    collector_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None


# The shape of nearly every address a customer has: an ASCII dot-atom before the @ and
# letters-digits-hyphens labels after it, ending in a letters-only top-level domain.
_PLAIN_ADDRESS = re.compile(
    r"(?P<local>[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    r"@(?P<domain>(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,63})",
    re.ASCII | re.IGNORECASE,
)


def _plain_address(address: str) -> str | None:
    """``address`` lowercased when it is plainly valid; None when email-validator must decide.

    email-validator costs ~25-70 µs an address, a fifth of creating an invitation, because it
    handles every corner of the standards. For plain ASCII addresses its answer is known in
    advance (valid; normalised by lowercasing the domain), so this looks at the shape alone and
    leaves everything else to it: non-ASCII, quoted local parts, ``--`` in the domain (Punycode
    and its rules), over-long parts and the special-use domains it refuses. It never rejects,
    and tests/core/test_primitives.py checks it against email-validator.
    """
    if len(address) > rfc_constants.EMAIL_MAX_LENGTH or not address.isascii():
        return None
    match = _PLAIN_ADDRESS.fullmatch(address)
    if match is None:
        return None
    domain = match["domain"].lower()
    if (
        len(match["local"]) > rfc_constants.LOCAL_PART_MAX_LENGTH
        or "--" in domain
        or any(len(label) > rfc_constants.DNS_LABEL_LENGTH_LIMIT for label in domain.split("."))
        or any(
            domain == name or domain.endswith("." + name)
            for name in email_validator.SPECIAL_USE_DOMAIN_NAMES
        )
    ):
        return None
    return address.lower()


def normalise_email(raw: str) -> str:
    """Return the email address lowercased, or raise InvalidRequest saying what is wrong."""
    address = raw.strip()
    plain = _plain_address(address)
    if plain is not None:
        return plain
    try:
        checked = email_validator.validate_email(address, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise InvalidRequest(
            f"customer_email {raw!r} is not a valid email address: {exc}"
        ) from None
    return checked.normalized.lower()


def normalise_phone(raw: str) -> str:
    """Return a 10-digit North American number in E.164 (``+14155550132``)."""
    problem = (
        f"customer_phone {raw!r} is not a 10-digit North American number; "
        "write it like (415) 555-0132, 415.555.0132 or +1 415 555 0132"
    )
    try:
        number = phonenumbers.parse(raw, "US")
    except phonenumbers.NumberParseException:
        raise InvalidRequest(problem) from None
    if (
        number.country_code != 1
        or len(str(number.national_number)) != 10
        or not phonenumbers.is_valid_number(number)
    ):
        raise InvalidRequest(problem)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _clean_name(raw: str | None) -> str | None:
    if raw is None:
        return None
    name = " ".join(raw.split())
    return name or None


class InvitationService:
    """Create invitations (idempotent per lowercased email within a collector)."""

    def __init__(
        self, context: Context, collectors: CollectorService, submissions: SubmissionService
    ) -> None:
        self._ctx = context
        self._collectors = collectors
        self._submissions = submissions

    async def create(
        self, workspace_id: str, request: InvitationRequest | LinkRequest
    ) -> InvitationResult:
        """Find or create the customer's submission; queue the email if asked and not throttled.

        ``reused`` in the result tells whether the submission existed already.
        """
        send_email = isinstance(request, InvitationRequest) and request.send_email
        customer = Customer(
            email=normalise_email(request.customer_email),
            name=_clean_name(request.customer_name),
            phone=normalise_phone(request.customer_phone) if request.customer_phone else None,
        )
        if request.collector_id is None:
            collector = await self._collectors.primary(workspace_id)
        else:
            collector = await self._collectors.get(workspace_id, request.collector_id)

        ctx = self._ctx
        now = ctx.clock.now()
        submission_id = new_id("sub", now)
        token = ctx.keyring.invite_token(submission_id)
        record = SubmissionRecord(
            id=submission_id,
            workspace_id=workspace_id,
            collector_id=collector.id,
            status="invited",
            customer=customer,
            token_hash=hash_secret(token),
            invitation_email=InvitationEmail(status="queued" if send_email else "not_sent"),
            email_requested_at=now if send_email else None,
            created_at=now,
            updated_at=now,
        )
        view = self._submissions.view(record, collector.host, token=token)
        event = make_event("invitation.created", workspace_id=workspace_id, data=view, at=now)
        jobs = [invitation_email_job(record, now)] if send_email else []
        stored, created = await ctx.storage.create_submission(record, events=[event], jobs=jobs)

        if created:
            ctx.wake_worker()
            return InvitationResult(
                ok=True,
                link=ctx.link_for(token, collector.host),
                invite_token=token,
                submission=view,
                reused=False,
            )

        if send_email and stored.status != "withdrawn":
            queued = await ctx.storage.queue_invitation_email(
                stored.id,
                invitation_email_job(stored, now),
                requested_at=now,
                not_since=now - RESEND_THROTTLE,
            )
            if queued:
                ctx.wake_worker()
                stored = msgspec.structs.replace(
                    stored,
                    invitation_email=InvitationEmail(status="queued"),
                    email_requested_at=now,
                )
        token = ctx.keyring.invite_token(stored.id)
        return InvitationResult(
            ok=True,
            link=ctx.link_for(token, collector.host),
            invite_token=token,
            submission=self._submissions.view(stored, collector.host, token=token),
            reused=True,
        )
