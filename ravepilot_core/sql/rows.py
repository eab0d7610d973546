"""Conversions between model structs and SQL rows (milliseconds, JSON text, 0/1 booleans)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec

from ravepilot_core.clock import utc_from_ms
from ravepilot_core.ids import timestamp_ms
from ravepilot_core.models import (
    ApiKey,
    Collector,
    Consent,
    Customer,
    Delivery,
    DeliveryAttempt,
    EventRecord,
    IdempotencyRecord,
    InvitationEmail,
    Job,
    SubmissionRecord,
    WebhookEndpoint,
    WebhookEndpointRecord,
    Workspace,
)

__all__ = [
    "api_key_from_row",
    "api_key_row",
    "collector_body",
    "collector_from_row",
    "delivery_from_row",
    "endpoint_from_row",
    "endpoint_row",
    "event_from_row",
    "event_row",
    "idempotency_from_row",
    "job_from_row",
    "job_row",
    "ms",
    "submission_from_row",
    "submission_row",
    "workspace_from_row",
]

_encode = msgspec.json.encode
_collector_decoder = msgspec.json.Decoder(Collector)
_consent_decoder = msgspec.json.Decoder(Consent)
_strings_decoder = msgspec.json.Decoder(tuple[str, ...])
_payload_decoder = msgspec.json.Decoder(dict[str, Any])


def ms(moment: datetime | None) -> int | None:
    """Return Unix milliseconds, passing None through."""
    return None if moment is None else timestamp_ms(moment)


def _dt(value: int | None) -> datetime | None:
    return None if value is None else utc_from_ms(value)


def _text(value: bytes) -> str:
    return value.decode()


def workspace_from_row(row: Mapping[str, Any]) -> Workspace:
    """Build a Workspace from its row."""
    return Workspace(
        id=row["id"],
        slug=row["slug"],
        name=row["name"],
        created_at=utc_from_ms(row["created_at"]),
        notify_email=row["notify_email"],
    )


def api_key_row(key: ApiKey) -> dict[str, Any]:
    """Return the column values of an API key."""
    return {
        "id": key.id,
        "workspace_id": key.workspace_id,
        "name": key.name,
        "prefix": key.prefix,
        "key_hash": key.key_hash,
        "scopes": _text(_encode(key.scopes)),
        "created_at": ms(key.created_at),
        "last_used_at": ms(key.last_used_at),
        "revoked_at": ms(key.revoked_at),
    }


def api_key_from_row(row: Mapping[str, Any]) -> ApiKey:
    """Build an ApiKey from its row."""
    return ApiKey(
        id=row["id"],
        workspace_id=row["workspace_id"],
        name=row["name"],
        prefix=row["prefix"],
        key_hash=row["key_hash"],
        scopes=_strings_decoder.decode(row["scopes"]),  # type: ignore[arg-type]
        created_at=utc_from_ms(row["created_at"]),
        last_used_at=_dt(row["last_used_at"]),
        revoked_at=_dt(row["revoked_at"]),
    )


def collector_body(collector: Collector) -> str:
    """Return the JSON text a collector is stored as."""
    return _text(_encode(collector))


def collector_from_row(row: Mapping[str, Any]) -> Collector:
    """Build a Collector from its stored JSON."""
    return _collector_decoder.decode(row["body"])


def submission_row(record: SubmissionRecord) -> dict[str, Any]:
    """Return the column values of a submission."""
    return {
        "id": record.id,
        "workspace_id": record.workspace_id,
        "collector_id": record.collector_id,
        "status": record.status,
        "customer_email": record.customer.email,
        "customer_name": record.customer.name,
        "customer_phone": record.customer.phone,
        "token_hash": record.token_hash,
        "email_status": record.invitation_email.status,
        "email_sent_at": ms(record.invitation_email.sent_at),
        "email_error": record.invitation_email.error,
        "email_requested_at": ms(record.email_requested_at),
        "consent": None if record.consent is None else _text(_encode(record.consent)),
        "created_at": ms(record.created_at),
        "updated_at": ms(record.updated_at),
    }


def submission_from_row(row: Mapping[str, Any]) -> SubmissionRecord:
    """Build a SubmissionRecord from its row."""
    return SubmissionRecord(
        id=row["id"],
        workspace_id=row["workspace_id"],
        collector_id=row["collector_id"],
        status=row["status"],
        customer=Customer(
            email=row["customer_email"], name=row["customer_name"], phone=row["customer_phone"]
        ),
        token_hash=row["token_hash"],
        invitation_email=InvitationEmail(
            status=row["email_status"],
            sent_at=_dt(row["email_sent_at"]),
            error=row["email_error"],
        ),
        email_requested_at=_dt(row["email_requested_at"]),
        consent=None if row["consent"] is None else _consent_decoder.decode(row["consent"]),
        created_at=utc_from_ms(row["created_at"]),
        updated_at=utc_from_ms(row["updated_at"]),
    )


def event_row(event: EventRecord) -> dict[str, Any]:
    """Return the column values of an event."""
    return {
        "id": event.id,
        "workspace_id": event.workspace_id,
        "type": event.type,
        "payload": _text(event.payload),
        "created_at": ms(event.created_at),
    }


def event_from_row(row: Mapping[str, Any]) -> EventRecord:
    """Build an EventRecord from its row."""
    return EventRecord(
        id=row["id"],
        workspace_id=row["workspace_id"],
        type=row["type"],
        created_at=utc_from_ms(row["created_at"]),
        payload=row["payload"].encode(),
    )


def endpoint_row(record: WebhookEndpointRecord) -> dict[str, Any]:
    """Return the column values of a webhook endpoint."""
    ep = record.endpoint
    return {
        "id": ep.id,
        "workspace_id": record.workspace_id,
        "url": ep.url,
        "events": _text(_encode(ep.events)),
        "description": ep.description,
        "active": ep.active,
        "disabled_reason": ep.disabled_reason,
        "failure_count": ep.failure_count,
        "first_failure_at": ms(ep.first_failure_at),
        "last_status_code": ep.last_status_code,
        "last_attempt_at": ms(ep.last_attempt_at),
        "auto_disabled_at": ms(ep.auto_disabled_at),
        "secret_ciphertext": record.secret_ciphertext,
        "previous_secret_ciphertext": record.previous_secret_ciphertext,
        "previous_secret_expires_at": ms(record.previous_secret_expires_at),
        "created_at": ms(ep.created_at),
    }


def endpoint_from_row(row: Mapping[str, Any]) -> WebhookEndpointRecord:
    """Build a WebhookEndpointRecord from its row."""
    return WebhookEndpointRecord(
        workspace_id=row["workspace_id"],
        endpoint=WebhookEndpoint(
            id=row["id"],
            url=row["url"],
            events=_strings_decoder.decode(row["events"]),
            description=row["description"],
            active=bool(row["active"]),
            disabled_reason=row["disabled_reason"],
            failure_count=row["failure_count"],
            first_failure_at=_dt(row["first_failure_at"]),
            last_status_code=row["last_status_code"],
            last_attempt_at=_dt(row["last_attempt_at"]),
            auto_disabled_at=_dt(row["auto_disabled_at"]),
            created_at=utc_from_ms(row["created_at"]),
        ),
        secret_ciphertext=row["secret_ciphertext"],
        previous_secret_ciphertext=row["previous_secret_ciphertext"],
        previous_secret_expires_at=_dt(row["previous_secret_expires_at"]),
    )


def delivery_from_row(row: Mapping[str, Any]) -> Delivery:
    """Build a Delivery from its row."""
    return Delivery(
        id=row["id"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        endpoint_id=row["endpoint_id"],
        status=row["status"],
        attempts=row["attempts"],
        response_status=row["response_status"],
        latency_ms=row["latency_ms"],
        error=row["error"],
        last_attempt_at=_dt(row["last_attempt_at"]),
        next_attempt_at=_dt(row["next_attempt_at"]),
        created_at=utc_from_ms(row["created_at"]),
    )


def attempt_row(delivery_id: str, attempt: DeliveryAttempt) -> dict[str, Any]:
    """Return the column values of one delivery attempt."""
    return {
        "delivery_id": delivery_id,
        "number": attempt.number,
        "at": ms(attempt.at),
        "target_ip": attempt.target_ip,
        "status_code": attempt.status_code,
        "latency_ms": attempt.latency_ms,
        "error": attempt.error,
        "response_body": attempt.response_body,
    }


def attempt_from_row(row: Mapping[str, Any]) -> DeliveryAttempt:
    """Build a DeliveryAttempt from its row."""
    return DeliveryAttempt(
        number=row["number"],
        at=utc_from_ms(row["at"]),
        target_ip=row["target_ip"],
        status_code=row["status_code"],
        latency_ms=row["latency_ms"],
        error=row["error"],
        response_body=row["response_body"],
    )


def job_row(job: Job) -> dict[str, Any]:
    """Return the column values of a job."""
    return {
        "id": job.id,
        "workspace_id": job.workspace_id,
        "kind": job.kind,
        "subject_id": job.subject_id,
        "payload": _text(_encode(job.payload)),
        "status": job.status,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "run_at": ms(job.run_at),
        "lease_owner": None,
        "lease_until": None,
        "last_error": job.last_error,
        "created_at": ms(job.created_at),
        "finished_at": ms(job.finished_at),
    }


def job_from_row(row: Mapping[str, Any]) -> Job:
    """Build a Job from its row."""
    return Job(
        id=row["id"],
        workspace_id=row["workspace_id"],
        kind=row["kind"],
        subject_id=row["subject_id"],
        payload=_payload_decoder.decode(row["payload"]),
        status=row["status"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        run_at=utc_from_ms(row["run_at"]),
        last_error=row["last_error"],
        created_at=utc_from_ms(row["created_at"]),
        finished_at=_dt(row["finished_at"]),
    )


def idempotency_from_row(row: Mapping[str, Any]) -> IdempotencyRecord:
    """Build an IdempotencyRecord from its row."""
    body = row["response_body"]
    return IdempotencyRecord(
        workspace_id=row["workspace_id"],
        key=row["key"],
        fingerprint=row["fingerprint"],
        created_at=utc_from_ms(row["created_at"]),
        expires_at=utc_from_ms(row["expires_at"]),
        response_status=row["response_status"],
        response_body=None if body is None else body.encode(),
    )
