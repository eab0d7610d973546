"""The tables and the outbox every part of :class:`~ravepilot_core.testing.MemoryStorage` shares.

Like :class:`~ravepilot_core.sql.statements.SQLStatements` for the SQL storage: the state, the one
lock, the normalisation a database round trip applies, and the outbox writes (events with their
deliveries, jobs) that every mutating method makes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import anyio
import msgspec

from ravepilot_core.clock import utc_from_ms
from ravepilot_core.errors import Conflict
from ravepilot_core.ids import new_id, timestamp_ms
from ravepilot_core.models import (
    ApiKey,
    Collector,
    Consent,
    Customer,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    EventRecord,
    IdempotencyRecord,
    InvitationEmail,
    Job,
    SubmissionRecord,
    WebhookEndpointRecord,
    Workspace,
)

__all__ = ["MemoryTables", "stored_copy"]

S = TypeVar("S", bound=msgspec.Struct)

_payload_decoder = msgspec.json.Decoder(dict[str, Any])
_consent_decoder = msgspec.json.Decoder(Consent)


def _ms(moment: datetime) -> datetime:
    """Return ``moment`` as storage keeps it: UTC, truncated to whole milliseconds."""
    return utc_from_ms(timestamp_ms(moment))


def _ms_or_none(moment: datetime | None) -> datetime | None:
    return None if moment is None else _ms(moment)


def _utf8(value: bytes) -> bytes:
    """Return ``value`` as bytes; like the SQL storage (a TEXT column), refuse non-UTF-8."""
    value = bytes(value)
    value.decode()
    return value


@dataclass
class _JobRow:
    job: Job  # with an empty payload: the payload is kept encoded, like the JSON column
    payload: bytes
    lease_owner: str | None = None
    lease_until: datetime | None = None

    def as_job(self) -> Job:
        return msgspec.structs.replace(self.job, payload=_payload_decoder.decode(self.payload))


@dataclass
class _DeliveryRow:
    workspace_id: str
    delivery: Delivery
    lease_owner: str | None = None
    lease_until: datetime | None = None

    def settle(
        self, status: DeliveryStatus, next_attempt_at: datetime | None, **changes: Any
    ) -> None:
        """Set the status, next attempt and ``changes`` (other Delivery fields); end any lease."""
        self.delivery = msgspec.structs.replace(
            self.delivery, status=status, next_attempt_at=next_attempt_at, **changes
        )
        self.lease_owner = self.lease_until = None


@dataclass
class _CollectorRow:
    workspace_id: str
    is_primary: bool
    collector: Collector


@functools.cache
def _decoder(kind: type[S]) -> msgspec.json.Decoder[S]:
    return msgspec.json.Decoder(kind)


def stored_copy(value: S) -> S:
    """``value`` as a database round trip returns it (times truncated to milliseconds)."""
    copy: S = _decoder(type(value)).decode(msgspec.json.encode(_truncate(value)))
    return copy


def _truncate(value: S) -> S:
    """Replace every top-level and review datetime by its millisecond truncation."""
    changes: dict[str, object] = {}
    for name in value.__struct_fields__:
        field = getattr(value, name)
        if isinstance(field, datetime):
            changes[name] = _ms(field)
        elif name == "review" and getattr(field, "decided_at", None) is not None:
            changes[name] = msgspec.structs.replace(field, decided_at=_ms(field.decided_at))
    return msgspec.structs.replace(value, **changes)


class MemoryTables:
    """The state of a memory storage and the writes every part of it makes."""

    def __init__(self) -> None:
        self._lock: anyio.Lock | None = None
        self._workspaces: dict[str, Workspace] = {}
        self._api_keys: dict[str, ApiKey] = {}
        self._collectors: dict[str, _CollectorRow] = {}
        self._submissions: dict[str, SubmissionRecord] = {}
        self._events: dict[str, EventRecord] = {}
        self._endpoints: dict[str, WebhookEndpointRecord] = {}
        self._deliveries: dict[str, _DeliveryRow] = {}
        self._attempts: dict[str, dict[int, DeliveryAttempt]] = {}  # delivery id -> number -> log
        self._jobs: dict[str, _JobRow] = {}
        self._idempotency: dict[tuple[str, str], IdempotencyRecord] = {}

    def _locked(self) -> anyio.Lock:
        # Created on first use, inside the running event loop.
        if self._lock is None:
            self._lock = anyio.Lock()
        return self._lock

    # -- the outbox ----------------------------------------------------------------------------
    def _check_new_events_and_jobs(
        self, events: Sequence[EventRecord], jobs: Sequence[Job]
    ) -> None:
        """Refuse duplicates before anything is written, so a failed call writes nothing."""
        event_ids = [event.id for event in events]
        job_ids = [job.id for job in jobs]
        if len(set(event_ids)) != len(event_ids) or any(i in self._events for i in event_ids):
            raise Conflict("an event with this id is already stored")
        if len(set(job_ids)) != len(job_ids) or any(i in self._jobs for i in job_ids):
            raise Conflict("a job with this id is already stored")
        for event in events:
            _utf8(event.payload)

    def _write_event(self, event: EventRecord) -> EventRecord:
        stored = EventRecord(
            id=event.id,
            workspace_id=event.workspace_id,
            type=event.type,
            created_at=_ms(event.created_at),
            payload=_utf8(event.payload),
        )
        self._events[stored.id] = stored
        return stored

    def _write_events(self, events: Sequence[EventRecord]) -> None:
        """Store events and one delivery per subscribed endpoint (call after the checks)."""
        for event in events:
            stored = self._write_event(event)
            for record in list(self._endpoints.values()):
                status = record.new_delivery_status(stored.workspace_id, stored.type)
                if status is None:
                    continue
                delivery = Delivery(
                    id=new_id("dlv", stored.created_at),
                    event_id=stored.id,
                    event_type=stored.type,
                    endpoint_id=record.endpoint.id,
                    status=status,
                    attempts=0,
                    next_attempt_at=stored.created_at if status == "pending" else None,
                    created_at=stored.created_at,
                )
                self._deliveries[delivery.id] = _DeliveryRow(stored.workspace_id, delivery)

    def _write_jobs(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            stored = Job(
                id=job.id,
                workspace_id=job.workspace_id,
                kind=job.kind,
                subject_id=job.subject_id,
                payload={},
                status=job.status,
                attempts=job.attempts,
                max_attempts=job.max_attempts,
                run_at=_ms(job.run_at),
                last_error=job.last_error,
                created_at=_ms(job.created_at),
                finished_at=_ms_or_none(job.finished_at),
            )
            self._jobs[stored.id] = _JobRow(job=stored, payload=msgspec.json.encode(job.payload))

    @staticmethod
    def _normalised_submission(record: SubmissionRecord) -> SubmissionRecord:
        email = record.invitation_email
        return SubmissionRecord(
            id=record.id,
            workspace_id=record.workspace_id,
            collector_id=record.collector_id,
            status=record.status,
            customer=Customer(
                email=record.customer.email, name=record.customer.name, phone=record.customer.phone
            ),
            token_hash=record.token_hash,
            invitation_email=InvitationEmail(
                status=email.status, sent_at=_ms_or_none(email.sent_at), error=email.error
            ),
            email_requested_at=_ms_or_none(record.email_requested_at),
            consent=(
                None
                if record.consent is None
                else _consent_decoder.decode(msgspec.json.encode(record.consent))
            ),
            created_at=_ms(record.created_at),
            updated_at=_ms(record.updated_at),
        )
