"""The SQL storage: one implementation on Piccolo for SQLite (here) and Postgres (plugin)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
from piccolo.engine.base import Engine

from ravepilot_core.errors import BackendError, Conflict
from ravepilot_core.ids import new_id
from ravepilot_core.models import (
    ApiKey,
    Collector,
    Delivery,
    EventRecord,
    IdempotencyRecord,
    InvitationEmail,
    Job,
    SubmissionRecord,
    SubmissionStatus,
    WebhookEndpointRecord,
    Workspace,
)
from ravepilot_core.protocols import JobOutcome
from ravepilot_core.sql import rows
from ravepilot_core.sql.migrations import apply_migrations
from ravepilot_core.sql.tables import Tables, bind_tables

__all__ = ["SQLStorage"]

ms = rows.ms


def _is_unique_violation(exc: Exception) -> bool:
    text = str(exc).lower()
    return "unique" in text or "duplicate key" in text


class SQLStorage:
    """A :class:`~ravepilot_core.protocols.Storage` over any Piccolo engine."""

    def __init__(self, engine: Engine[Any]) -> None:
        self.engine = engine
        self.t: Tables = bind_tables(engine)

    # -- lifecycle ---------------------------------------------------------------------------
    async def migrate(self) -> None:
        """Apply pending migrations."""
        await apply_migrations(self.engine)

    async def ping(self) -> None:
        """Run a trivial query."""
        try:
            await self.t.workspaces.count()
        except Exception as exc:
            raise BackendError(f"storage unreachable: {exc}") from exc

    async def close(self) -> None:
        """Close the engine's connections."""
        close = getattr(self.engine, "close", None) or getattr(
            self.engine, "close_connection_pool", None
        )
        if close is not None:
            await close()

    # -- the outbox ----------------------------------------------------------------------------
    async def _write_events(self, events: Sequence[EventRecord]) -> None:
        """Insert events and their deliveries; must run inside the caller's transaction."""
        if not events:
            return
        t = self.t
        await t.events.insert(*[t.events(**rows.event_row(e)) for e in events])
        workspace_ids = {e.workspace_id for e in events}
        endpoints = [
            rows.endpoint_from_row(row)
            for row in await t.webhook_endpoints.select().where(
                t.webhook_endpoints.workspace_id.is_in(list(workspace_ids))
            )
        ]
        deliveries = []
        for event in events:
            for record in endpoints:
                ep = record.endpoint
                if record.workspace_id != event.workspace_id or not record.subscribes_to(
                    event.type
                ):
                    continue
                if ep.active:
                    status = "pending"
                elif ep.disabled_reason in ("auto", "gone"):
                    status = "held"
                else:
                    continue  # switched off by hand: the user asked for silence
                deliveries.append(
                    t.deliveries(
                        id=new_id("dlv", event.created_at),
                        workspace_id=event.workspace_id,
                        event_id=event.id,
                        endpoint_id=ep.id,
                        event_type=event.type,
                        status=status,
                        attempts=0,
                        next_attempt_at=ms(event.created_at) if status == "pending" else None,
                        created_at=ms(event.created_at),
                    )
                )
        if deliveries:
            await t.deliveries.insert(*deliveries)

    async def _write_jobs(self, jobs: Sequence[Job]) -> None:
        if jobs:
            await self.t.jobs.insert(*[self.t.jobs(**rows.job_row(j)) for j in jobs])

    # -- workspaces and keys -------------------------------------------------------------------
    async def create_workspace(self, workspace: Workspace, primary_collector: Collector) -> None:
        """Insert a workspace and its primary collector."""
        t = self.t
        try:
            async with self.engine.transaction():
                await t.workspaces.insert(
                    t.workspaces(
                        id=workspace.id,
                        slug=workspace.slug,
                        name=workspace.name,
                        created_at=ms(workspace.created_at),
                    )
                )
                await self._insert_collector(workspace.id, primary_collector)
        except Exception as exc:
            if _is_unique_violation(exc) and "slug" in str(exc):
                raise Conflict(f"a workspace with slug {workspace.slug!r} already exists") from None
            if _is_unique_violation(exc):
                raise Conflict(f"workspace {workspace.id} or its collector exists") from None
            raise

    async def get_workspace(self, workspace_id: str) -> Workspace | None:
        """Select a workspace by id."""
        row = await self.t.workspaces.select().where(self.t.workspaces.id == workspace_id).first()
        return rows.workspace_from_row(row) if row else None

    async def get_workspace_by_slug(self, slug: str) -> Workspace | None:
        """Select a workspace by slug."""
        row = await self.t.workspaces.select().where(self.t.workspaces.slug == slug).first()
        return rows.workspace_from_row(row) if row else None

    async def create_api_key(self, key: ApiKey) -> None:
        """Insert an API key."""
        await self.t.api_keys.insert(self.t.api_keys(**rows.api_key_row(key)))

    async def get_api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        """Select a key by the hash of its secret."""
        row = await self.t.api_keys.select().where(self.t.api_keys.key_hash == key_hash).first()
        return rows.api_key_from_row(row) if row else None

    async def list_api_keys(self, workspace_id: str) -> list[ApiKey]:
        """Select a workspace's keys, newest first."""
        t = self.t.api_keys
        found = (
            await t.select().where(t.workspace_id == workspace_id).order_by(t.id, ascending=False)
        )
        return [rows.api_key_from_row(row) for row in found]

    async def touch_api_key(self, key_id: str, used_at: datetime) -> None:
        """Set a key's last-used time."""
        t = self.t.api_keys
        await t.update({t.last_used_at: ms(used_at)}).where(t.id == key_id)

    async def revoke_api_key(self, key_id: str, revoked_at: datetime) -> ApiKey | None:
        """Revoke a key, keeping the first revocation time."""
        t = self.t.api_keys
        async with self.engine.transaction():
            await t.update({t.revoked_at: ms(revoked_at)}).where(
                (t.id == key_id) & t.revoked_at.is_null()
            )
            row = await t.select().where(t.id == key_id).first()
        return rows.api_key_from_row(row) if row else None

    # -- collectors ----------------------------------------------------------------------------
    async def _insert_collector(self, workspace_id: str, collector: Collector) -> None:
        await self.t.collectors.insert(
            self.t.collectors(
                id=collector.id,
                workspace_id=workspace_id,
                is_primary=collector.primary,
                body=rows.collector_body(collector),
                created_at=ms(collector.created_at),
            )
        )

    async def create_collector(self, workspace_id: str, collector: Collector) -> None:
        """Insert a collector."""
        await self._insert_collector(workspace_id, collector)

    async def update_collector(self, workspace_id: str, collector: Collector) -> None:
        """Replace a collector's stored settings, keeping its primary flag and creation time."""
        t = self.t.collectors
        async with self.engine.transaction():
            row = (
                await t.select(t.body)
                .where((t.id == collector.id) & (t.workspace_id == workspace_id))
                .first()
            )
            if row is None:
                return
            stored = rows.collector_from_row(row)
            kept = msgspec.structs.replace(
                collector, primary=stored.primary, created_at=stored.created_at
            )
            await t.update({t.body: rows.collector_body(kept)}).where(t.id == collector.id)

    async def get_collector(self, workspace_id: str, collector_id: str) -> Collector | None:
        """Select one collector of the workspace."""
        t = self.t.collectors
        row = (
            await t.select(t.body)
            .where((t.id == collector_id) & (t.workspace_id == workspace_id))
            .first()
        )
        return rows.collector_from_row(row) if row else None

    async def get_primary_collector(self, workspace_id: str) -> Collector | None:
        """Select the workspace's primary collector."""
        t = self.t.collectors
        row = (
            await t.select(t.body)
            .where((t.workspace_id == workspace_id) & t.is_primary.eq(True))
            .first()
        )
        return rows.collector_from_row(row) if row else None

    async def list_collectors(self, workspace_id: str) -> list[Collector]:
        """Select the workspace's collectors, newest first."""
        t = self.t.collectors
        found = (
            await t.select(t.body)
            .where(t.workspace_id == workspace_id)
            .order_by(t.id, ascending=False)
        )
        return [rows.collector_from_row(row) for row in found]

    # -- submissions ---------------------------------------------------------------------------
    async def create_submission(
        self,
        submission: SubmissionRecord,
        *,
        events: Sequence[EventRecord] = (),
        jobs: Sequence[Job] = (),
    ) -> tuple[SubmissionRecord, bool]:
        """Insert the submission unless the customer already has one in the collector."""
        t = self.t.submissions
        async with self.engine.transaction():
            inserted = await (
                t.insert(t(**rows.submission_row(submission)))
                .on_conflict(action="DO NOTHING")
                .returning(t.id)
            )
            if inserted:
                await self._write_events(events)
                await self._write_jobs(jobs)
                return submission, True
            row = (
                await t.select()
                .where(
                    (t.collector_id == submission.collector_id)
                    & (t.customer_email == submission.customer.email)
                )
                .first()
            )
        if row is None:  # the conflict was on another unique column: a bug, not a race
            raise BackendError("submission insert conflicted unexpectedly; retry")
        return rows.submission_from_row(row), False

    async def queue_invitation_email(
        self, submission_id: str, job: Job, *, requested_at: datetime, not_since: datetime
    ) -> bool:
        """Queue the email unless one was requested at or after ``not_since``."""
        t = self.t.submissions
        async with self.engine.transaction():
            updated = await (
                t.update(
                    {
                        t.email_status: "queued",
                        t.email_requested_at: ms(requested_at),
                        t.email_error: None,
                    }
                )
                .where(
                    (t.id == submission_id)
                    & (t.email_requested_at.is_null() | (t.email_requested_at < ms(not_since)))
                )
                .returning(t.id)
            )
            if not updated:
                return False
            await self._write_jobs([job])
        return True

    async def get_submission(
        self, workspace_id: str, submission_id: str
    ) -> SubmissionRecord | None:
        """Select one submission of the workspace."""
        t = self.t.submissions
        row = (
            await t.select()
            .where((t.id == submission_id) & (t.workspace_id == workspace_id))
            .first()
        )
        return rows.submission_from_row(row) if row else None

    async def list_submissions(
        self,
        workspace_id: str,
        *,
        status: SubmissionStatus | None,
        limit: int,
        offset: int = 0,
        before_id: str | None = None,
    ) -> list[SubmissionRecord]:
        """Select a page of submissions, newest first."""
        t = self.t.submissions
        where = t.workspace_id == workspace_id
        if status is not None:
            where &= t.status == status
        if before_id is not None:
            where &= t.id < before_id
        query = t.select().where(where).order_by(t.id, ascending=False).limit(limit)
        if offset:
            query = query.offset(offset)
        return [rows.submission_from_row(row) for row in await query]

    # -- events and webhooks -------------------------------------------------------------------
    async def list_events(self, workspace_id: str, *, limit: int = 50) -> list[EventRecord]:
        """Select the workspace's newest events."""
        t = self.t.events
        found = (
            await t.select()
            .where(t.workspace_id == workspace_id)
            .order_by(t.id, ascending=False)
            .limit(limit)
        )
        return [rows.event_from_row(row) for row in found]

    async def create_webhook_endpoint(self, record: WebhookEndpointRecord) -> None:
        """Insert an endpoint."""
        t = self.t.webhook_endpoints
        await t.insert(t(**rows.endpoint_row(record)))

    async def get_webhook_endpoint(
        self, workspace_id: str, endpoint_id: str
    ) -> WebhookEndpointRecord | None:
        """Select one endpoint of the workspace."""
        t = self.t.webhook_endpoints
        row = (
            await t.select().where((t.id == endpoint_id) & (t.workspace_id == workspace_id)).first()
        )
        return rows.endpoint_from_row(row) if row else None

    async def list_webhook_endpoints(self, workspace_id: str) -> list[WebhookEndpointRecord]:
        """Select the workspace's endpoints, newest first."""
        t = self.t.webhook_endpoints
        found = (
            await t.select().where(t.workspace_id == workspace_id).order_by(t.id, ascending=False)
        )
        return [rows.endpoint_from_row(row) for row in found]

    async def update_webhook_endpoint(self, record: WebhookEndpointRecord) -> None:
        """Write every column of the endpoint."""
        t = self.t.webhook_endpoints
        values = rows.endpoint_row(record)
        del values["id"], values["workspace_id"], values["created_at"]
        await t.update({getattr(t, name): value for name, value in values.items()}).where(
            (t.id == record.endpoint.id) & (t.workspace_id == record.workspace_id)
        )

    async def delete_webhook_endpoint(self, workspace_id: str, endpoint_id: str) -> bool:
        """Delete the endpoint and drop what it still had to receive."""
        t, d = self.t.webhook_endpoints, self.t.deliveries
        async with self.engine.transaction():
            deleted = (
                await t.delete()
                .where((t.id == endpoint_id) & (t.workspace_id == workspace_id))
                .returning(t.id)
            )
            if not deleted:
                return False
            await d.update(
                {d.status: "dropped", d.next_attempt_at: None, d.lease_until: None}
            ).where((d.endpoint_id == endpoint_id) & d.status.is_in(["pending", "held"]))
        return True

    async def list_deliveries(self, endpoint_id: str, *, limit: int = 50) -> list[Delivery]:
        """Select the endpoint's newest deliveries."""
        d = self.t.deliveries
        found = (
            await d.select()
            .where(d.endpoint_id == endpoint_id)
            .order_by(d.id, ascending=False)
            .limit(limit)
        )
        return [rows.delivery_from_row(row) for row in found]

    # -- jobs ----------------------------------------------------------------------------------
    async def claim_jobs(
        self, *, now: datetime, worker_id: str, lease_until: datetime, limit: int
    ) -> list[Job]:
        """Lease due jobs; the conditional update makes a job go to exactly one worker."""
        j = self.t.jobs
        now_ms = ms(now)
        due = ((j.status == "queued") & (j.run_at <= now_ms)) | (
            (j.status == "running") & (j.lease_until < now_ms)
        )
        claimed: list[Job] = []
        async with self.engine.transaction():
            candidates = await j.select(j.id).where(due).order_by(j.run_at).limit(limit)
            for candidate in candidates:
                updated = await (
                    j.update(
                        {
                            j.status: "running",
                            j.attempts: j.attempts + 1,
                            j.lease_owner: worker_id,
                            j.lease_until: ms(lease_until),
                        }
                    )
                    .where((j.id == candidate["id"]) & due)
                    .returning(*j.all_columns())
                )
                claimed.extend(rows.job_from_row(row) for row in updated)
        return claimed

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
        """Record a job's outcome while the worker still holds its lease."""
        j, s = self.t.jobs, self.t.submissions
        values: dict[Any, Any] = {j.lease_owner: None, j.lease_until: None, j.last_error: error}
        if outcome == "retry":
            if retry_at is None:
                raise ValueError("a retry needs retry_at")
            values.update({j.status: "queued", j.run_at: ms(retry_at)})
        else:
            values.update({j.status: outcome, j.finished_at: ms(at)})
        async with self.engine.transaction():
            updated = await (
                j.update(values)
                .where((j.id == job_id) & (j.lease_owner == worker_id) & (j.status == "running"))
                .returning(j.subject_id)
            )
            if not updated:
                return False
            if invitation_email is not None:
                await s.update(
                    {
                        s.email_status: invitation_email.status,
                        s.email_sent_at: ms(invitation_email.sent_at),
                        s.email_error: invitation_email.error,
                        s.updated_at: ms(at),
                    }
                ).where(s.id == updated[0]["subject_id"])
            await self._write_events(events)
        return True

    async def list_jobs(self, subject_id: str) -> list[Job]:
        """Select the jobs about one subject, oldest first."""
        j = self.t.jobs
        return [
            rows.job_from_row(row)
            for row in await j.select().where(j.subject_id == subject_id).order_by(j.id)
        ]

    # -- idempotency ---------------------------------------------------------------------------
    @staticmethod
    def _idempotency_id(workspace_id: str, key: str) -> str:
        return f"{workspace_id}:{key}"

    async def begin_idempotent_request(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        """Claim a key unless a live record holds it."""
        t = self.t.idempotency_keys
        row_id = self._idempotency_id(record.workspace_id, record.key)
        async with self.engine.transaction():
            # An expired record no longer counts: remove it so the insert below can claim the key.
            await t.delete().where((t.id == row_id) & (t.expires_at <= ms(record.created_at)))
            inserted = await (
                t.insert(
                    t(
                        id=row_id,
                        workspace_id=record.workspace_id,
                        key=record.key,
                        fingerprint=record.fingerprint,
                        created_at=ms(record.created_at),
                        expires_at=ms(record.expires_at),
                    )
                )
                .on_conflict(action="DO NOTHING")
                .returning(t.id)
            )
            if inserted:
                return None
            row = await t.select().where(t.id == row_id).first()
        return rows.idempotency_from_row(row) if row else None

    async def complete_idempotent_request(
        self, workspace_id: str, key: str, *, status: int, body: bytes
    ) -> None:
        """Store the response for the key."""
        t = self.t.idempotency_keys
        await t.update({t.response_status: status, t.response_body: body.decode()}).where(
            t.id == self._idempotency_id(workspace_id, key)
        )

    async def release_idempotent_request(self, workspace_id: str, key: str) -> None:
        """Delete an unfinished key."""
        t = self.t.idempotency_keys
        await t.delete().where(
            (t.id == self._idempotency_id(workspace_id, key)) & t.response_status.is_null()
        )
