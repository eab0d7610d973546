"""In-memory backends: a :class:`Storage` and a :class:`Mailer` for tests and demos.

:class:`MemoryStorage` keeps exactly the semantics of the SQL storage (it passes the same contract
suite): the outbox, the idempotent submission insert, job and delivery leases, endpoint health,
idempotency keys and tenant isolation. Values are normalised the way a database round trip would
(times in UTC truncated to milliseconds, JSON-stored fields re-decoded), and every operation runs
under one lock without awaiting in between, so concurrent coroutines see each operation as one
atomic step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TypeVar
from urllib.parse import urlsplit

import anyio
import msgspec
from anyio.lowlevel import checkpoint

from ravepilot_core.errors import BackendError, ConfigurationError, Conflict
from ravepilot_core.ids import new_id
from ravepilot_core.models import (
    ApiKey,
    Collector,
    Delivery,
    DeliveryAttempt,
    DeliveryQueueStats,
    DeliveryResult,
    DeliveryStatus,
    DeliveryTask,
    Email,
    EventRecord,
    IdempotencyRecord,
    InvitationEmail,
    Job,
    SubmissionRecord,
    SubmissionStatus,
    WebhookEndpoint,
    WebhookEndpointRecord,
    Workspace,
)
from ravepilot_core.protocols import DisableNotice, JobOutcome
from ravepilot_core.testing.memory_recordings import MemoryRecordings
from ravepilot_core.testing.memory_renders import MemoryRenders
from ravepilot_core.testing.memory_tables import (
    _CollectorRow,
    _DeliveryRow,
    _JobRow,
    _ms,
    _ms_or_none,
    _utf8,
)

__all__ = ["MemoryMailer", "MemoryStorage", "open_memory_mailer", "open_memory_storage"]

T = TypeVar("T")

_collector_decoder = msgspec.json.Decoder(Collector)


def _newest_first(items: Iterable[T], key: Callable[[T], str]) -> list[T]:
    return sorted(items, key=key, reverse=True)


def _first(items: Iterable[T], limit: int, offset: int = 0) -> list[T]:
    if limit < 0 or offset < 0:
        raise ValueError("limit and offset must not be negative")
    return list(items)[offset : offset + limit]


def _attempt_order(result: DeliveryResult) -> tuple[datetime, int]:
    assert result.attempt is not None
    return result.attempt.at, result.attempt.number


def _with_health(
    record: WebhookEndpointRecord, attempted: list[DeliveryResult], at: datetime, threshold: int
) -> WebhookEndpointRecord:
    """Return ``record`` after ``attempted`` (its results with an attempt, in attempt order).

    A success restarts the failure streak, a failed attempt adds one; the last attempt gives the
    last response. An active endpoint is then disabled: ``gone`` after a 410, else ``auto`` once
    the streak reaches ``threshold``.
    """
    count, first = record.endpoint.failure_count, record.endpoint.first_failure_at
    for result in attempted:
        assert result.attempt is not None
        if result.outcome == "succeeded":
            count, first = 0, None
        else:
            count, first = count + 1, first or _ms(result.attempt.at)
    last = attempted[-1].attempt
    assert last is not None
    endpoint = msgspec.structs.replace(
        record.endpoint,
        failure_count=count,
        first_failure_at=first,
        last_status_code=last.status_code,
        last_attempt_at=_ms(last.at),
    )
    gone = any(result.gone for result in attempted)
    if endpoint.active and (gone or count >= threshold):
        endpoint = msgspec.structs.replace(
            endpoint,
            active=False,
            disabled_reason="gone" if gone else "auto",
            auto_disabled_at=_ms(at),
        )
    return msgspec.structs.replace(record, endpoint=endpoint)


class MemoryStorage(MemoryRecordings, MemoryRenders):
    """A :class:`~ravepilot_core.protocols.Storage` that keeps everything in this process.

    Every ``open_memory_storage()`` starts empty and nothing survives the process. Stored values
    are immutable structs (job payloads are decoded afresh on each read), so a caller cannot
    change stored state except through the Storage methods.

    Example::

        storage = open_memory_storage("memory://")
        await storage.migrate()
    """

    # -- lifecycle ---------------------------------------------------------------------------
    async def migrate(self) -> None:
        """Do nothing: there is no schema."""

    async def ping(self) -> None:
        """Do nothing: memory is always reachable."""

    async def close(self) -> None:
        """Do nothing: the data stays readable, as a closed SQL storage reopens on use."""

    async def wait_for_changes(self, timeout: float) -> bool:
        """Sleep: no other process shares this storage."""
        await anyio.sleep(timeout)
        return False

    # -- workspaces and keys -------------------------------------------------------------------
    async def create_workspace(self, workspace: Workspace, primary_collector: Collector) -> None:
        """Store a workspace and its primary collector; a taken slug is a Conflict."""
        async with self._locked():
            taken = workspace.id in self._workspaces or any(
                w.slug == workspace.slug for w in self._workspaces.values()
            )
            if taken or primary_collector.id in self._collectors:
                raise Conflict(f"a workspace with slug {workspace.slug!r} already exists")
            self._workspaces[workspace.id] = Workspace(
                id=workspace.id,
                slug=workspace.slug,
                name=workspace.name,
                created_at=_ms(workspace.created_at),
                notify_email=workspace.notify_email,
            )
            self._insert_collector(workspace.id, primary_collector)

    async def get_workspace(self, workspace_id: str) -> Workspace | None:
        """Return the workspace with this id."""
        async with self._locked():
            return self._workspaces.get(workspace_id)

    async def get_workspace_by_slug(self, slug: str) -> Workspace | None:
        """Return the workspace with this slug."""
        async with self._locked():
            return next((w for w in self._workspaces.values() if w.slug == slug), None)

    async def update_workspace(self, workspace: Workspace) -> None:
        """Replace a workspace's name and notify email (nothing happens for an unknown one)."""
        async with self._locked():
            stored = self._workspaces.get(workspace.id)
            if stored is not None:
                self._workspaces[stored.id] = msgspec.structs.replace(
                    stored, name=workspace.name, notify_email=workspace.notify_email
                )

    async def create_api_key(self, key: ApiKey) -> None:
        """Store an API key; a reused id or hash is a Conflict."""
        async with self._locked():
            if key.id in self._api_keys or any(
                k.key_hash == key.key_hash for k in self._api_keys.values()
            ):
                raise Conflict("an API key with this id or hash already exists")
            self._api_keys[key.id] = ApiKey(
                id=key.id,
                workspace_id=key.workspace_id,
                name=key.name,
                prefix=key.prefix,
                key_hash=key.key_hash,
                scopes=tuple(key.scopes),
                created_at=_ms(key.created_at),
                last_used_at=_ms_or_none(key.last_used_at),
                revoked_at=_ms_or_none(key.revoked_at),
            )

    async def get_api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        """Return the key with this hash, revoked or not."""
        async with self._locked():
            return next((k for k in self._api_keys.values() if k.key_hash == key_hash), None)

    async def list_api_keys(self, workspace_id: str) -> list[ApiKey]:
        """Return the workspace's keys, newest first."""
        async with self._locked():
            found = (k for k in self._api_keys.values() if k.workspace_id == workspace_id)
            return _newest_first(found, key=lambda k: k.id)

    async def touch_api_key(self, key_id: str, used_at: datetime) -> None:
        """Set the key's last-used time (nothing happens for an unknown key)."""
        async with self._locked():
            key = self._api_keys.get(key_id)
            if key is not None:
                self._api_keys[key_id] = msgspec.structs.replace(key, last_used_at=_ms(used_at))

    async def revoke_api_key(self, key_id: str, revoked_at: datetime) -> ApiKey | None:
        """Revoke a key, keeping the first revocation time."""
        async with self._locked():
            key = self._api_keys.get(key_id)
            if key is None:
                return None
            if key.revoked_at is None:
                key = msgspec.structs.replace(key, revoked_at=_ms(revoked_at))
                self._api_keys[key_id] = key
            return key

    # -- collectors ----------------------------------------------------------------------------
    def _insert_collector(self, workspace_id: str, collector: Collector) -> None:
        if collector.id in self._collectors:
            raise Conflict(f"a collector with id {collector.id!r} already exists")
        if collector.primary and any(
            row.workspace_id == workspace_id and row.is_primary for row in self._collectors.values()
        ):
            raise Conflict("the workspace already has a primary collector")
        # Stored as JSON by the SQL storage: the round trip gives the same types back.
        stored = _collector_decoder.decode(msgspec.json.encode(collector))
        self._collectors[collector.id] = _CollectorRow(workspace_id, collector.primary, stored)

    async def create_collector(self, workspace_id: str, collector: Collector) -> None:
        """Store a collector; a second primary collector in a workspace is a Conflict."""
        async with self._locked():
            self._insert_collector(workspace_id, collector)

    async def update_collector(self, workspace_id: str, collector: Collector) -> None:
        """Replace a collector's settings, keeping its id, primary flag and creation time."""
        async with self._locked():
            row = self._collectors.get(collector.id)
            if row is None or row.workspace_id != workspace_id:
                return
            kept = msgspec.structs.replace(
                collector, primary=row.collector.primary, created_at=row.collector.created_at
            )
            row.collector = _collector_decoder.decode(msgspec.json.encode(kept))

    async def get_collector(self, workspace_id: str, collector_id: str) -> Collector | None:
        """Return the collector if it belongs to the workspace."""
        async with self._locked():
            row = self._collectors.get(collector_id)
            return row.collector if row is not None and row.workspace_id == workspace_id else None

    async def get_primary_collector(self, workspace_id: str) -> Collector | None:
        """Return the workspace's primary collector."""
        async with self._locked():
            return next(
                (
                    row.collector
                    for row in self._collectors.values()
                    if row.workspace_id == workspace_id and row.is_primary
                ),
                None,
            )

    async def list_collectors(self, workspace_id: str) -> list[Collector]:
        """Return the workspace's collectors, newest first."""
        async with self._locked():
            found = (
                r.collector for r in self._collectors.values() if r.workspace_id == workspace_id
            )
            return _newest_first(found, key=lambda c: c.id)

    # -- submissions ---------------------------------------------------------------------------
    async def create_submission(
        self,
        submission: SubmissionRecord,
        *,
        events: Sequence[EventRecord] = (),
        jobs: Sequence[Job] = (),
    ) -> tuple[SubmissionRecord, bool]:
        """Store the submission unless the collector has one for the customer's email."""
        async with self._locked():
            existing = next(
                (
                    s
                    for s in self._submissions.values()
                    if s.collector_id == submission.collector_id
                    and s.customer.email == submission.customer.email
                ),
                None,
            )
            if existing is not None:
                return existing, False
            if submission.id in self._submissions or any(
                s.token_hash == submission.token_hash for s in self._submissions.values()
            ):
                # The SQL storage's insert conflicts on another unique column here.
                raise BackendError("submission insert conflicted unexpectedly; retry")
            self._check_new_events_and_jobs(events, jobs)
            stored = self._normalised_submission(submission)
            self._submissions[stored.id] = stored
            self._write_events(events)
            self._write_jobs(jobs)
            return submission, True  # as the SQL storage does: the caller's record

    async def queue_invitation_email(
        self, submission_id: str, job: Job, *, requested_at: datetime, not_since: datetime
    ) -> bool:
        """Queue ``job`` unless an email was requested at or after ``not_since``."""
        async with self._locked():
            submission = self._submissions.get(submission_id)
            if submission is None:
                return False
            last = submission.email_requested_at
            if last is not None and last >= _ms(not_since):
                return False
            self._check_new_events_and_jobs((), [job])
            self._submissions[submission_id] = msgspec.structs.replace(
                submission,
                invitation_email=msgspec.structs.replace(
                    submission.invitation_email, status="queued", error=None
                ),
                email_requested_at=_ms(requested_at),
            )
            self._write_jobs([job])
            return True

    async def get_submission(
        self, workspace_id: str, submission_id: str
    ) -> SubmissionRecord | None:
        """Return the submission if it belongs to the workspace."""
        async with self._locked():
            submission = self._submissions.get(submission_id)
            return submission if submission and submission.workspace_id == workspace_id else None

    async def list_submissions(
        self,
        workspace_id: str,
        *,
        status: SubmissionStatus | None,
        limit: int,
        offset: int = 0,
        before_id: str | None = None,
    ) -> list[SubmissionRecord]:
        """Return a page of the workspace's submissions, newest first."""
        async with self._locked():
            found = (
                s
                for s in self._submissions.values()
                if s.workspace_id == workspace_id
                and (status is None or s.status == status)
                and (before_id is None or s.id < before_id)
            )
            return _first(_newest_first(found, key=lambda s: s.id), limit, offset)

    # -- events and webhooks -------------------------------------------------------------------
    async def list_events(self, workspace_id: str, *, limit: int = 50) -> list[EventRecord]:
        """Return the workspace's newest events."""
        async with self._locked():
            found = (e for e in self._events.values() if e.workspace_id == workspace_id)
            return _first(_newest_first(found, key=lambda e: e.id), limit)

    @staticmethod
    def _normalised_endpoint(record: WebhookEndpointRecord) -> WebhookEndpointRecord:
        ep = record.endpoint
        return WebhookEndpointRecord(
            workspace_id=record.workspace_id,
            endpoint=WebhookEndpoint(
                id=ep.id,
                url=ep.url,
                events=tuple(ep.events),
                description=ep.description,
                active=ep.active,
                disabled_reason=ep.disabled_reason,
                failure_count=ep.failure_count,
                first_failure_at=_ms_or_none(ep.first_failure_at),
                last_status_code=ep.last_status_code,
                last_attempt_at=_ms_or_none(ep.last_attempt_at),
                auto_disabled_at=_ms_or_none(ep.auto_disabled_at),
                created_at=_ms(ep.created_at),
            ),
            secret_ciphertext=record.secret_ciphertext,
            previous_secret_ciphertext=record.previous_secret_ciphertext,
            previous_secret_expires_at=_ms_or_none(record.previous_secret_expires_at),
        )

    async def create_webhook_endpoint(self, record: WebhookEndpointRecord) -> None:
        """Store an endpoint; a reused id is a Conflict."""
        async with self._locked():
            if record.endpoint.id in self._endpoints:
                raise Conflict(f"a webhook endpoint with id {record.endpoint.id!r} already exists")
            self._endpoints[record.endpoint.id] = self._normalised_endpoint(record)

    async def get_webhook_endpoint(
        self, workspace_id: str, endpoint_id: str
    ) -> WebhookEndpointRecord | None:
        """Return the endpoint if it belongs to the workspace."""
        async with self._locked():
            record = self._endpoints.get(endpoint_id)
            return record if record is not None and record.workspace_id == workspace_id else None

    async def list_webhook_endpoints(self, workspace_id: str) -> list[WebhookEndpointRecord]:
        """Return the workspace's endpoints, newest first."""
        async with self._locked():
            found = (r for r in self._endpoints.values() if r.workspace_id == workspace_id)
            return _newest_first(found, key=lambda r: r.endpoint.id)

    async def update_webhook_endpoint(self, record: WebhookEndpointRecord) -> None:
        """Replace the endpoint's settings and bookkeeping (its creation time is kept).

        When the new record is inactive, the endpoint's pending deliveries become held.
        """
        async with self._locked():
            stored = self._endpoints.get(record.endpoint.id)
            if stored is None or stored.workspace_id != record.workspace_id:
                return
            endpoint = msgspec.structs.replace(
                record.endpoint, created_at=stored.endpoint.created_at
            )
            self._endpoints[endpoint.id] = self._normalised_endpoint(
                msgspec.structs.replace(record, endpoint=endpoint)
            )
            if not endpoint.active:
                self._hold_pending(endpoint.id)

    async def delete_webhook_endpoint(self, workspace_id: str, endpoint_id: str) -> bool:
        """Delete the endpoint; its pending and held deliveries become ``dropped``."""
        async with self._locked():
            record = self._endpoints.get(endpoint_id)
            if record is None or record.workspace_id != workspace_id:
                return False
            del self._endpoints[endpoint_id]
            for row in self._rows_of(endpoint_id):
                if row.delivery.status in ("pending", "held"):
                    row.settle("dropped", None)
            return True

    def _rows_of(self, endpoint_id: str) -> Iterator[_DeliveryRow]:
        return (row for row in self._deliveries.values() if row.delivery.endpoint_id == endpoint_id)

    def _hold_pending(self, endpoint_id: str) -> None:
        for row in self._rows_of(endpoint_id):
            if row.delivery.status == "pending":
                row.settle("held", None)

    async def list_deliveries(self, endpoint_id: str, *, limit: int = 50) -> list[Delivery]:
        """Return the endpoint's newest deliveries."""
        async with self._locked():
            found = (row.delivery for row in self._rows_of(endpoint_id))
            return _first(_newest_first(found, key=lambda d: d.id), limit)

    async def get_delivery(self, workspace_id: str, delivery_id: str) -> Delivery | None:
        """Return the delivery if it belongs to the workspace."""
        async with self._locked():
            row = self._deliveries.get(delivery_id)
            return row.delivery if row is not None and row.workspace_id == workspace_id else None

    async def list_delivery_attempts(self, delivery_id: str) -> list[DeliveryAttempt]:
        """Return the delivery's attempt log, first attempt first."""
        async with self._locked():
            log = self._attempts.get(delivery_id, {})
            return [log[number] for number in sorted(log)]

    async def delivery_queue_stats(self) -> DeliveryQueueStats:
        """Count pending deliveries and find when the oldest of them was created."""
        async with self._locked():
            created = [
                r.delivery.created_at
                for r in self._deliveries.values()
                if r.delivery.status == "pending"
            ]
            return DeliveryQueueStats(
                pending=len(created), oldest_pending_at=min(created, default=None)
            )

    async def create_direct_delivery(
        self,
        event: EventRecord,
        endpoint_id: str,
        *,
        leased_to: str | None = None,
        lease_until: datetime | None = None,
    ) -> Delivery:
        """Store the event and a single pending delivery to the endpoint (whatever its state).

        With ``leased_to`` the delivery starts leased to it, due at ``lease_until``.
        """
        leased = leased_to is not None and lease_until is not None
        delivery = Delivery(
            id=new_id("dlv", event.created_at),
            event_id=event.id,
            event_type=event.type,
            endpoint_id=endpoint_id,
            status="pending",
            next_attempt_at=lease_until if leased else event.created_at,
            created_at=event.created_at,
        )
        async with self._locked():
            self._check_new_events_and_jobs([event], ())
            stored = self._write_event(event)
            row = _DeliveryRow(
                stored.workspace_id,
                msgspec.structs.replace(
                    delivery,
                    next_attempt_at=_ms_or_none(delivery.next_attempt_at),
                    created_at=stored.created_at,
                ),
                lease_owner=leased_to,
                lease_until=_ms_or_none(lease_until) if leased_to is not None else None,
            )
            self._deliveries[delivery.id] = row
            return delivery  # as the SQL storage does: with the caller's times

    # -- the delivery worker's side ------------------------------------------------------------
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
        """Lease due deliveries endpoint by endpoint, oldest first, each up to its room.

        Endpoints are served in the order of their oldest due delivery; an endpoint named in
        ``endpoint_room`` gets at most that many, any other at most ``per_endpoint``.
        """
        now, lease_until = _ms(now), _ms(lease_until)
        room = endpoint_room or {}
        async with self._locked():
            by_endpoint: dict[str, list[tuple[datetime, str, _DeliveryRow]]] = {}
            for row in self._deliveries.values():
                d = row.delivery
                if d.status == "pending" and d.next_attempt_at and d.next_attempt_at <= now:
                    if d.endpoint_id in self._endpoints:  # as the SQL storage's join
                        by_endpoint.setdefault(d.endpoint_id, []).append(
                            (d.next_attempt_at, d.id, row)
                        )
            picked: list[_DeliveryRow] = []
            for endpoint_id, rows in sorted(
                by_endpoint.items(), key=lambda item: (min(item[1])[0], item[0])
            ):
                cap = room.get(endpoint_id, per_endpoint)
                take = limit - len(picked) if cap is None else min(cap, limit - len(picked))
                picked.extend(row for _, _, row in sorted(rows)[: max(take, 0)])
                if len(picked) >= limit:
                    break
            picked.sort(key=lambda row: (row.delivery.next_attempt_at, row.delivery.id))
            tasks = []
            for row in picked:
                # Due again by itself when the lease ends, should the worker die.
                row.delivery = msgspec.structs.replace(row.delivery, next_attempt_at=lease_until)
                row.lease_owner, row.lease_until = worker_id, lease_until
                endpoint = self._endpoints.get(row.delivery.endpoint_id)
                event = self._events.get(row.delivery.event_id)
                if endpoint is None or event is None:
                    continue  # leased but not returned, as the SQL storage's join leaves it out
                tasks.append(
                    DeliveryTask(
                        delivery_id=row.delivery.id,
                        workspace_id=row.workspace_id,
                        event_id=event.id,
                        event_type=row.delivery.event_type,
                        attempt=row.delivery.attempts + 1,
                        payload=event.payload,
                        endpoint=endpoint,
                    )
                )
            # All are now due at lease_until, so the SQL storage's order is by id.
            return sorted(tasks, key=lambda task: task.delivery_id)

    async def record_delivery_results(
        self,
        results: Sequence[DeliveryResult],
        *,
        worker_id: str,
        at: datetime,
        disable_threshold: int,
        disable_notice: DisableNotice,
    ) -> int:
        """Apply a batch of outcomes, log the attempts and update endpoint health, atomically."""
        async with self._locked():
            # Everything is worked out first, so a failing disable_notice writes nothing.
            applied: dict[str, DeliveryResult] = {}
            for result in results:
                row = self._deliveries.get(result.delivery_id)
                if row and row.lease_owner == worker_id and row.delivery.status == "pending":
                    applied.setdefault(result.delivery_id, result)  # the first ends the lease
            by_endpoint: dict[str, list[DeliveryResult]] = {}
            for result in sorted((r for r in applied.values() if r.attempt), key=_attempt_order):
                by_endpoint.setdefault(result.endpoint_id, []).append(result)
            endpoints = {
                endpoint_id: _with_health(
                    self._endpoints[endpoint_id], attempted, at, disable_threshold
                )
                for endpoint_id, attempted in by_endpoint.items()
                if endpoint_id in self._endpoints
            }
            disabled = [
                record
                for record in endpoints.values()
                if self._endpoints[record.endpoint.id].endpoint.active
                and not record.endpoint.active
            ]
            notices = [disable_notice(record, at) for record in disabled]
            self._check_new_events_and_jobs((), notices)
            for result in applied.values():
                self._apply_result(self._deliveries[result.delivery_id], result)
            self._endpoints.update(endpoints)
            for record in disabled:
                self._hold_pending(record.endpoint.id)
            self._write_jobs(notices)
            return len(applied)

    def _apply_result(self, row: _DeliveryRow, result: DeliveryResult) -> None:
        status: DeliveryStatus = "pending" if result.outcome == "retry" else result.outcome
        next_at = _ms_or_none(result.next_attempt_at) if status == "pending" else None
        attempt = result.attempt
        if attempt is None:
            row.settle(status, next_at)
            return
        row.settle(
            status,
            next_at,
            attempts=attempt.number,
            response_status=attempt.status_code,
            latency_ms=attempt.latency_ms,
            error=attempt.error,
            last_attempt_at=_ms(attempt.at),
        )
        log = self._attempts.setdefault(row.delivery.id, {})
        log.setdefault(attempt.number, msgspec.structs.replace(attempt, at=_ms(attempt.at)))

    # -- the operator's side -------------------------------------------------------------------
    async def requeue_delivery(
        self, workspace_id: str, delivery_id: str, *, at: datetime
    ) -> Delivery | None:
        """Make one delivery pending and due at ``at`` (a dropped one is returned unchanged)."""
        async with self._locked():
            row = self._deliveries.get(delivery_id)
            if row is None or row.workspace_id != workspace_id:
                return None
            if row.delivery.status != "dropped":
                row.settle("pending", _ms(at))
            return row.delivery

    async def recover_deliveries(self, endpoint_id: str, *, since: datetime, at: datetime) -> int:
        """Re-queue the endpoint's failed and held deliveries created since ``since``."""
        since, at = _ms(since), _ms(at)
        async with self._locked():
            found = [
                row
                for row in self._rows_of(endpoint_id)
                if row.delivery.status in ("failed", "held") and row.delivery.created_at >= since
            ]
            for row in found:
                row.settle("pending", at)
            return len(found)

    # -- jobs ----------------------------------------------------------------------------------
    async def claim_jobs(
        self, *, now: datetime, worker_id: str, lease_until: datetime, limit: int
    ) -> list[Job]:
        """Lease up to ``limit`` due jobs, oldest ``run_at`` first."""
        now, lease_until = _ms(now), _ms(lease_until)

        def due(row: _JobRow) -> bool:
            if row.job.status == "queued":
                return row.job.run_at <= now
            return (
                row.job.status == "running"
                and row.lease_until is not None
                and row.lease_until < now
            )

        async with self._locked():
            candidates = sorted(
                (row for row in self._jobs.values() if due(row)),
                key=lambda row: (row.job.run_at, row.job.id),
            )
            claimed = []
            for row in _first(candidates, limit):
                row.job = msgspec.structs.replace(
                    row.job, status="running", attempts=row.job.attempts + 1
                )
                row.lease_owner, row.lease_until = worker_id, lease_until
                claimed.append(row.as_job())
            return claimed

    async def extend_job_lease(self, job_id: str, *, worker_id: str, lease_until: datetime) -> bool:
        """Renew the lease of a running job this worker holds."""
        async with self._locked():
            row = self._jobs.get(job_id)
            if row is None or row.job.status != "running" or row.lease_owner != worker_id:
                return False
            row.lease_until = _ms(lease_until)
            return True

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
        """Record a job's outcome if ``worker_id`` still holds its lease."""
        if outcome == "retry" and retry_at is None:
            raise ValueError("a retry needs retry_at")
        async with self._locked():
            row = self._jobs.get(job_id)
            if row is None or row.lease_owner != worker_id or row.job.status != "running":
                return False
            self._check_new_events_and_jobs(events, ())
            if outcome == "retry":
                assert retry_at is not None
                row.job = msgspec.structs.replace(
                    row.job, status="queued", run_at=_ms(retry_at), last_error=error
                )
            else:
                row.job = msgspec.structs.replace(
                    row.job, status=outcome, finished_at=_ms(at), last_error=error
                )
            row.lease_owner = row.lease_until = None
            submission = self._submissions.get(row.job.subject_id)
            if invitation_email is not None and submission is not None:
                self._submissions[submission.id] = msgspec.structs.replace(
                    submission,
                    invitation_email=InvitationEmail(
                        status=invitation_email.status,
                        sent_at=_ms_or_none(invitation_email.sent_at),
                        error=invitation_email.error,
                    ),
                    updated_at=_ms(at),
                )
            self._write_events(events)
            return True

    async def list_jobs(self, subject_id: str) -> list[Job]:
        """Return every job about ``subject_id``, oldest first."""
        async with self._locked():
            found = sorted(
                (row for row in self._jobs.values() if row.job.subject_id == subject_id),
                key=lambda row: row.job.id,
            )
            return [row.as_job() for row in found]

    # -- idempotency ---------------------------------------------------------------------------
    async def begin_idempotent_request(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        """Claim ``record.key`` unless a live record holds it (then return that record)."""
        slot = (record.workspace_id, record.key)
        created_at = _ms(record.created_at)
        async with self._locked():
            existing = self._idempotency.get(slot)
            if existing is not None and existing.expires_at > created_at:
                return existing
            self._idempotency[slot] = IdempotencyRecord(
                workspace_id=record.workspace_id,
                key=record.key,
                fingerprint=record.fingerprint,
                created_at=created_at,
                expires_at=_ms(record.expires_at),
            )
            return None

    async def complete_idempotent_request(
        self, workspace_id: str, key: str, *, status: int, body: bytes
    ) -> None:
        """Store the response of the request that holds the key."""
        async with self._locked():
            existing = self._idempotency.get((workspace_id, key))
            if existing is not None:
                self._idempotency[(workspace_id, key)] = msgspec.structs.replace(
                    existing, response_status=status, response_body=_utf8(body)
                )

    async def release_idempotent_request(self, workspace_id: str, key: str) -> None:
        """Forget the key unless its request already finished."""
        async with self._locked():
            existing = self._idempotency.get((workspace_id, key))
            if existing is not None and existing.in_flight:
                del self._idempotency[(workspace_id, key)]


class MemoryMailer:
    """A :class:`~ravepilot_core.protocols.Mailer` that keeps what it sends in :attr:`sent`.

    Example::

        mailer = open_memory_mailer("memory://")
        mailer.fail_next(2)  # the next two sends raise ConnectionError, as an SMTP outage would
    """

    def __init__(self) -> None:
        self.sent: list[Email] = []
        self.closed = False
        self._failures_left = 0

    def fail_next(self, n: int) -> None:
        """Make the next ``n`` sends raise :class:`ConnectionError` (and keep nothing).

        Args:
            n: How many sends fail; replaces any count set before, 0 ends the outage.

        Raises:
            ValueError: If ``n`` is negative.
        """
        if n < 0:
            raise ValueError(f"fail_next() needs a count >= 0, got {n}")
        self._failures_left = n

    async def send(self, email: Email) -> None:
        """Append ``email`` to :attr:`sent`, or raise if a failure was asked for.

        Raises:
            ConnectionError: While failures set by :meth:`fail_next` remain.
        """
        await checkpoint()
        if self._failures_left:
            self._failures_left -= 1
            raise ConnectionError(f"memory mailer told to fail (to {email.to})")
        self.sent.append(email)

    async def close(self) -> None:
        """Mark the mailer closed; what was sent stays readable."""
        self.closed = True


def _check_memory_url(url: str) -> None:
    if urlsplit(url).scheme != "memory":
        raise ConfigurationError(f"not a memory:// URL: {url!r}")


def open_memory_storage(url: str) -> MemoryStorage:
    """Create an empty in-memory storage for ``memory://`` (every call gets its own).

    Raises:
        ConfigurationError: If ``url`` is not a ``memory://`` URL.
    """
    _check_memory_url(url)
    return MemoryStorage()


def open_memory_mailer(url: str) -> MemoryMailer:
    """Create an in-memory mailer for ``memory://`` (every call gets its own).

    Raises:
        ConfigurationError: If ``url`` is not a ``memory://`` URL.
    """
    _check_memory_url(url)
    return MemoryMailer()
