"""The SQL storage: one implementation for SQLite (here) and Postgres (plugin).

Statements are portable SQL run through Piccolo's ``QueryString`` (see
:mod:`ravepilot_core.sql.statements`), inside Piccolo's engines and transactions. The delivery
queue's half is :mod:`ravepilot_core.sql.deliveries`, the recording portal's
:mod:`ravepilot_core.sql.recordings`. Piccolo's query builder is not used
here: building a statement with it costs ~100 µs against ~18 µs for a ``QueryString``, and an
invitation runs eight statements on the request path.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import anyio
import msgspec

from ravepilot_core.errors import BackendError, Conflict
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
from ravepilot_core.sql.deliveries import DeliveryQueries
from ravepilot_core.sql.migrations import apply_migrations
from ravepilot_core.sql.recordings import RecordingQueries
from ravepilot_core.sql.renders import RenderQueries
from ravepilot_core.sql.stable import StableRows
from ravepilot_core.sql.statements import placeholders
from ravepilot_core.sql.submission_batch import SubmissionBatcher

__all__ = ["SQLStorage"]

ms = rows.ms
CHANGE_POLL_SECONDS = 0.01  # a PRAGMA read: ~100 a second cost nothing measurable


def _is_unique_violation(exc: Exception) -> bool:
    text = str(exc).lower()
    return "unique" in text or "duplicate key" in text


class SQLStorage(RecordingQueries, RenderQueries, DeliveryQueries):
    """A :class:`~ravepilot_core.protocols.Storage` over a Piccolo engine."""

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        # API keys and collectors, looked up by every request, remembered on SQLite.
        self._stable = StableRows(engine)
        self._submissions = SubmissionBatcher(self)

    # -- lifecycle ---------------------------------------------------------------------------
    #: Run first in each migration's transaction, so processes starting together take turns.
    migration_lock: str | None = None

    async def migrate(self) -> None:
        """Apply pending migrations."""
        await apply_migrations(self.engine, lock=self.migration_lock)

    async def ping(self) -> None:
        """Run a trivial query."""
        try:
            await self._all("SELECT 1 AS ok")
        except Exception as exc:
            raise BackendError(f"storage unreachable: {exc}") from exc

    async def wait_for_changes(self, timeout: float) -> bool:
        """Watch SQLite's data_version (a cheap counter) every 10 ms; other engines sleep.

        Postgres's plugin overrides this with LISTEN/NOTIFY.
        """
        data_version = getattr(self.engine, "data_version", None)
        if data_version is None:
            await anyio.sleep(timeout)
            return False
        seen = data_version()
        with anyio.move_on_after(timeout):
            while data_version() == seen:
                await anyio.sleep(CHANGE_POLL_SECONDS)
            return True
        return False

    async def close(self) -> None:
        """Close the engine's connections."""
        close = getattr(self.engine, "close", None) or getattr(
            self.engine, "close_connection_pool", None
        )
        if close is not None:
            await close()

    # -- workspaces and keys -------------------------------------------------------------------
    async def create_workspace(self, workspace: Workspace, primary_collector: Collector) -> None:
        """Insert a workspace and its primary collector."""
        try:
            async with self.engine.transaction():
                await self._insert(
                    "rp_workspaces",
                    [
                        {
                            "id": workspace.id,
                            "slug": workspace.slug,
                            "name": workspace.name,
                            "created_at": ms(workspace.created_at),
                            "notify_email": workspace.notify_email,
                        }
                    ],
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
        row = await self._one("SELECT * FROM rp_workspaces WHERE id = {}", workspace_id)
        return rows.workspace_from_row(row) if row else None

    async def get_workspace_by_slug(self, slug: str) -> Workspace | None:
        """Select a workspace by slug."""
        row = await self._one("SELECT * FROM rp_workspaces WHERE slug = {}", slug)
        return rows.workspace_from_row(row) if row else None

    async def update_workspace(self, workspace: Workspace) -> None:
        """Set a workspace's name and notify email."""
        await self._all(
            "UPDATE rp_workspaces SET name = {}, notify_email = {} WHERE id = {}",
            workspace.name,
            workspace.notify_email,
            workspace.id,
        )

    async def create_api_key(self, key: ApiKey) -> None:
        """Insert an API key."""
        await self._insert("rp_api_keys", [rows.api_key_row(key)])

    async def get_api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        """Select a key by the hash of its secret."""

        async def load() -> ApiKey | None:
            row = await self._one("SELECT * FROM rp_api_keys WHERE key_hash = {}", key_hash)
            return rows.api_key_from_row(row) if row else None

        return await self._stable.get(("key", key_hash), load)

    async def list_api_keys(self, workspace_id: str) -> list[ApiKey]:
        """Select a workspace's keys, newest first."""
        found = await self._all(
            "SELECT * FROM rp_api_keys WHERE workspace_id = {} ORDER BY id DESC", workspace_id
        )
        return [rows.api_key_from_row(row) for row in found]

    async def touch_api_key(self, key_id: str, used_at: datetime) -> None:
        """Set a key's last-used time."""
        async with self.engine.transaction():
            await self._all(
                "UPDATE rp_api_keys SET last_used_at = {} WHERE id = {}", ms(used_at), key_id
            )
            self._stable.forget_on_commit()

    async def revoke_api_key(self, key_id: str, revoked_at: datetime) -> ApiKey | None:
        """Revoke a key, keeping the first revocation time."""
        async with self.engine.transaction():
            await self._all(
                "UPDATE rp_api_keys SET revoked_at = {} WHERE id = {} AND revoked_at IS NULL",
                ms(revoked_at),
                key_id,
            )
            self._stable.forget_on_commit()
            row = await self._one("SELECT * FROM rp_api_keys WHERE id = {}", key_id)
        return rows.api_key_from_row(row) if row else None

    # -- collectors ----------------------------------------------------------------------------
    async def _insert_collector(self, workspace_id: str, collector: Collector) -> None:
        await self._insert(
            "rp_collectors",
            [
                {
                    "id": collector.id,
                    "workspace_id": workspace_id,
                    "is_primary": collector.primary,
                    "body": rows.collector_body(collector),
                    "created_at": ms(collector.created_at),
                }
            ],
        )

    async def create_collector(self, workspace_id: str, collector: Collector) -> None:
        """Insert a collector."""
        await self._insert_collector(workspace_id, collector)

    async def update_collector(self, workspace_id: str, collector: Collector) -> None:
        """Replace a collector's stored settings, keeping its primary flag and creation time."""
        async with self.engine.transaction():
            stored = await self.get_collector(workspace_id, collector.id)
            if stored is None:
                return
            kept = msgspec.structs.replace(
                collector, primary=stored.primary, created_at=stored.created_at
            )
            await self._all(
                "UPDATE rp_collectors SET body = {} WHERE id = {}",
                rows.collector_body(kept),
                collector.id,
            )
            self._stable.forget_on_commit()

    async def get_collector(self, workspace_id: str, collector_id: str) -> Collector | None:
        """Select one collector of the workspace."""

        async def load() -> Collector | None:
            row = await self._one(
                "SELECT body FROM rp_collectors WHERE id = {} AND workspace_id = {}",
                collector_id,
                workspace_id,
            )
            return rows.collector_from_row(row) if row else None

        return await self._stable.get(("collector", workspace_id, collector_id), load)

    async def get_primary_collector(self, workspace_id: str) -> Collector | None:
        """Select the workspace's primary collector."""

        async def load() -> Collector | None:
            row = await self._one(
                "SELECT body FROM rp_collectors WHERE workspace_id = {} AND is_primary",
                workspace_id,
            )
            return rows.collector_from_row(row) if row else None

        return await self._stable.get(("primary", workspace_id), load)

    async def list_collectors(self, workspace_id: str) -> list[Collector]:
        """Select the workspace's collectors, newest first."""
        found = await self._all(
            "SELECT body FROM rp_collectors WHERE workspace_id = {} ORDER BY id DESC", workspace_id
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
        """Insert the submission unless the customer already has one in the collector.

        The unique index on (collector_id, customer_email) decides, so concurrent requests in
        any number of processes create exactly one. Concurrent calls are written in shared
        batches (:mod:`ravepilot_core.sql.submission_batch`), except inside a transaction.
        """
        if self._in_transaction():
            return await self._submissions.write_one(submission, events, jobs)
        return await self._submissions.create(submission, events, jobs)

    async def queue_invitation_email(
        self, submission_id: str, job: Job, *, requested_at: datetime, not_since: datetime
    ) -> bool:
        """Queue the email unless one was requested at or after ``not_since``."""
        async with self.engine.transaction():
            updated = await self._all(
                "UPDATE rp_submissions "
                "SET email_status = 'queued', email_requested_at = {}, email_error = NULL "
                "WHERE id = {} AND (email_requested_at IS NULL OR email_requested_at < {}) "
                "RETURNING id",
                ms(requested_at),
                submission_id,
                ms(not_since),
            )
            if not updated:
                return False
            await self._write_jobs([job])
        return True

    async def get_submission(
        self, workspace_id: str, submission_id: str
    ) -> SubmissionRecord | None:
        """Select one submission of the workspace."""
        row = await self._one(
            "SELECT * FROM rp_submissions WHERE id = {} AND workspace_id = {}",
            submission_id,
            workspace_id,
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
        """Select a page of submissions, newest first (keyset on the time-sortable id)."""
        conditions, args = ["workspace_id = {}"], [workspace_id]
        if status is not None:
            conditions.append("status = {}")
            args.append(status)
        if before_id is not None:
            conditions.append("id < {}")
            args.append(before_id)
        found = await self._all(
            f"SELECT * FROM rp_submissions WHERE {' AND '.join(conditions)} "
            "ORDER BY id DESC LIMIT {} OFFSET {}",
            *args,
            limit,
            offset,
        )
        return [rows.submission_from_row(row) for row in found]

    # -- events and webhooks -------------------------------------------------------------------
    async def list_events(self, workspace_id: str, *, limit: int = 50) -> list[EventRecord]:
        """Select the workspace's newest events."""
        found = await self._all(
            "SELECT * FROM rp_events WHERE workspace_id = {} ORDER BY id DESC LIMIT {}",
            workspace_id,
            limit,
        )
        return [rows.event_from_row(row) for row in found]

    async def create_webhook_endpoint(self, record: WebhookEndpointRecord) -> None:
        """Insert an endpoint."""
        await self._insert("rp_webhook_endpoints", [rows.endpoint_row(record)])

    async def get_webhook_endpoint(
        self, workspace_id: str, endpoint_id: str
    ) -> WebhookEndpointRecord | None:
        """Select one endpoint of the workspace."""
        row = await self._one(
            "SELECT * FROM rp_webhook_endpoints WHERE id = {} AND workspace_id = {}",
            endpoint_id,
            workspace_id,
        )
        return rows.endpoint_from_row(row) if row else None

    async def list_webhook_endpoints(self, workspace_id: str) -> list[WebhookEndpointRecord]:
        """Select the workspace's endpoints, newest first."""
        found = await self._all(
            "SELECT * FROM rp_webhook_endpoints WHERE workspace_id = {} ORDER BY id DESC",
            workspace_id,
        )
        return [rows.endpoint_from_row(row) for row in found]

    async def update_webhook_endpoint(self, record: WebhookEndpointRecord) -> None:
        """Write every column of the endpoint but its identity."""
        values = rows.endpoint_row(record)
        for fixed in ("id", "workspace_id", "created_at"):
            del values[fixed]
        assignments = ", ".join(f"{column} = {{}}" for column in values)
        async with self.engine.transaction():
            updated = await self._all(
                f"UPDATE rp_webhook_endpoints SET {assignments} "
                "WHERE id = {} AND workspace_id = {} RETURNING id",
                *values.values(),
                record.endpoint.id,
                record.workspace_id,
            )
            if updated and not record.endpoint.active:
                await self._hold_pending(record.endpoint.id)

    async def delete_webhook_endpoint(self, workspace_id: str, endpoint_id: str) -> bool:
        """Delete the endpoint and drop what it still had to receive."""
        async with self.engine.transaction():
            deleted = await self._all(
                "DELETE FROM rp_webhook_endpoints WHERE id = {} AND workspace_id = {} RETURNING id",
                endpoint_id,
                workspace_id,
            )
            if not deleted:
                return False
            await self._all(
                "UPDATE rp_deliveries "
                "SET status = 'dropped', next_attempt_at = NULL, lease_until = NULL "
                "WHERE endpoint_id = {} AND status IN ('pending', 'held')",
                endpoint_id,
            )
        return True

    async def list_deliveries(self, endpoint_id: str, *, limit: int = 50) -> list[Delivery]:
        """Select the endpoint's newest deliveries."""
        found = await self._all(
            "SELECT * FROM rp_deliveries WHERE endpoint_id = {} ORDER BY id DESC LIMIT {}",
            endpoint_id,
            limit,
        )
        return [rows.delivery_from_row(row) for row in found]

    # -- jobs ----------------------------------------------------------------------------------
    async def claim_jobs(
        self, *, now: datetime, worker_id: str, lease_until: datetime, limit: int
    ) -> list[Job]:
        """Lease due jobs; the conditional update makes a job go to exactly one worker."""
        due = "((status = 'queued' AND run_at <= {}) OR (status = 'running' AND lease_until < {}))"
        now_ms = ms(now)
        async with self.engine.transaction():
            # Two index range scans on (status, run_at), not one OR over the whole table:
            # finished jobs stay in rp_jobs, so a scan would slow down as they pile up. Two
            # statements, because row locks (claim_lock) are not allowed on a UNION.
            candidates = [
                *await self._all(
                    "SELECT id, run_at FROM rp_jobs WHERE status = 'queued' AND run_at <= {} "
                    f"ORDER BY run_at LIMIT {{}}{self.claim_lock}",
                    now_ms,
                    limit,
                ),
                *await self._all(
                    "SELECT id, run_at FROM rp_jobs WHERE status = 'running' AND lease_until < {} "
                    f"ORDER BY run_at LIMIT {{}}{self.claim_lock}",
                    now_ms,
                    limit,
                ),
            ]
            if not candidates:
                return []
            candidates.sort(key=lambda row: row["run_at"])
            ids = [row["id"] for row in candidates[:limit]]
            claimed = await self._all(
                "UPDATE rp_jobs SET status = 'running', attempts = attempts + 1, "
                "lease_owner = {}, lease_until = {} "
                f"WHERE id IN ({placeholders(len(ids))}) AND {due} RETURNING *",
                worker_id,
                ms(lease_until),
                *ids,
                now_ms,
                now_ms,
            )
        return sorted((rows.job_from_row(row) for row in claimed), key=lambda job: job.run_at)

    async def extend_job_lease(self, job_id: str, *, worker_id: str, lease_until: datetime) -> bool:
        """Renew the lease of a running job this worker holds."""
        renewed = await self._all(
            "UPDATE rp_jobs SET lease_until = {} "
            "WHERE id = {} AND lease_owner = {} AND status = 'running' RETURNING id",
            ms(lease_until),
            job_id,
            worker_id,
        )
        return bool(renewed)

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
        if outcome == "retry":
            if retry_at is None:
                raise ValueError("a retry needs retry_at")
            status, run_at, finished_at = "queued", ms(retry_at), None
        else:
            status, run_at, finished_at = outcome, None, ms(at)
        async with self.engine.transaction():
            updated = await self._all(
                "UPDATE rp_jobs SET status = {}, run_at = COALESCE({}, run_at), finished_at = {}, "
                "last_error = {}, lease_owner = NULL, lease_until = NULL "
                "WHERE id = {} AND lease_owner = {} AND status = 'running' RETURNING subject_id",
                status,
                run_at,
                finished_at,
                error,
                job_id,
                worker_id,
            )
            if not updated:
                return False
            if invitation_email is not None:
                await self._all(
                    "UPDATE rp_submissions SET email_status = {}, email_sent_at = {}, "
                    "email_error = {}, updated_at = {} WHERE id = {}",
                    invitation_email.status,
                    ms(invitation_email.sent_at),
                    invitation_email.error,
                    ms(at),
                    updated[0]["subject_id"],
                )
            await self._write_events(events)
        return True

    async def list_jobs(self, subject_id: str) -> list[Job]:
        """Select the jobs about one subject, oldest first."""
        found = await self._all(
            "SELECT * FROM rp_jobs WHERE subject_id = {} ORDER BY id", subject_id
        )
        return [rows.job_from_row(row) for row in found]

    # -- idempotency ---------------------------------------------------------------------------
    @staticmethod
    def _idempotency_id(workspace_id: str, key: str) -> str:
        return f"{workspace_id}:{key}"

    async def begin_idempotent_request(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        """Claim a key unless a live record holds it."""
        row_id = self._idempotency_id(record.workspace_id, record.key)
        async with self.engine.transaction():
            # An expired record no longer counts: remove it so the insert below can claim the key.
            await self._all(
                "DELETE FROM rp_idempotency_keys WHERE id = {} AND expires_at <= {}",
                row_id,
                ms(record.created_at),
            )
            inserted = await self._insert(
                "rp_idempotency_keys",
                [
                    {
                        "id": row_id,
                        "workspace_id": record.workspace_id,
                        "key": record.key,
                        "fingerprint": record.fingerprint,
                        "response_status": None,
                        "response_body": None,
                        "created_at": ms(record.created_at),
                        "expires_at": ms(record.expires_at),
                    }
                ],
                " ON CONFLICT DO NOTHING RETURNING id",
            )
            if inserted:
                return None
            row = await self._one("SELECT * FROM rp_idempotency_keys WHERE id = {}", row_id)
        return rows.idempotency_from_row(row) if row else None

    async def complete_idempotent_request(
        self, workspace_id: str, key: str, *, status: int, body: bytes
    ) -> None:
        """Store the response for the key."""
        await self._all(
            "UPDATE rp_idempotency_keys SET response_status = {}, response_body = {} WHERE id = {}",
            status,
            body.decode(),
            self._idempotency_id(workspace_id, key),
        )

    async def release_idempotent_request(self, workspace_id: str, key: str) -> None:
        """Delete an unfinished key."""
        await self._all(
            "DELETE FROM rp_idempotency_keys WHERE id = {} AND response_status IS NULL",
            self._idempotency_id(workspace_id, key),
        )
