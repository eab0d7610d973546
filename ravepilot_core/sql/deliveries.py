"""The delivery queue in SQL: claims under a lease, batched results, endpoint health, replays.

The base of :class:`~ravepilot_core.sql.storage.SQLStorage`, kept apart because it is the one
hot path of the worker: a claim is one seek per endpoint with work due plus one conditional
update by id, and a batch of results is written in one transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from ravepilot_core.clock import utc_from_ms
from ravepilot_core.ids import new_id, timestamp_ms
from ravepilot_core.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryQueueStats,
    DeliveryResult,
    DeliveryTask,
    EventRecord,
    WebhookEndpointRecord,
)
from ravepilot_core.protocols import DisableNotice
from ravepilot_core.sql import rows
from ravepilot_core.sql.statements import Row, SQLStatements, chunks, placeholders

__all__ = ["CLAIM_COLUMNS", "DeliveryQueries"]

ms = rows.ms

# Ids checked per lease-check statement (well under the bound-parameter limit).
_IDS_PER_CHECK = 500
#: What a claim reads per delivery, with ``d`` the delivery, ``e`` its event, ``w`` its endpoint.
CLAIM_COLUMNS = (
    "d.id AS delivery_id, d.workspace_id, d.event_id, d.event_type, d.attempts, "
    "e.payload, w.id, w.url, w.events, w.description, w.active, w.disabled_reason, "
    "w.failure_count, w.first_failure_at, w.last_status_code, w.last_attempt_at, "
    "w.auto_disabled_at, w.secret_ciphertext, w.previous_secret_ciphertext, "
    "w.previous_secret_expires_at, w.created_at"
)


# What each outcome leaves in the status column ("retry" waits as pending).
_STATUS = {"succeeded": "succeeded", "failed": "failed", "retry": "pending", "held": "held"}


def _tasks_from_rows(found: Sequence[Row]) -> list[DeliveryTask]:
    endpoints: dict[str, WebhookEndpointRecord] = {}  # a claim is mostly a few endpoints' rows
    tasks = []
    for row in found:
        endpoint = endpoints.get(row["id"])
        if endpoint is None:
            # The w.* columns; the delivery's workspace is the endpoint's.
            endpoint = endpoints[row["id"]] = rows.endpoint_from_row(row)
        payload = row["payload"]
        tasks.append(
            DeliveryTask(
                delivery_id=row["delivery_id"],
                workspace_id=row["workspace_id"],
                event_id=row["event_id"],
                event_type=row["event_type"],
                attempt=row["attempts"] + 1,
                payload=payload.encode() if isinstance(payload, str) else bytes(payload),
                endpoint=endpoint,
            )
        )
    return tasks


class _EndpointTally:
    """What a batch of attempts does to one endpoint's health, in attempt order."""

    def __init__(self) -> None:
        self.reset = False  # a success was seen: the streak restarts from it
        self.failures = 0  # failed attempts since the last success (or in all, if none)
        self.first_failure_at: datetime | None = None
        self.last: DeliveryAttempt | None = None
        self.gone = False

    def add(self, result: DeliveryResult) -> None:
        attempt = result.attempt
        if attempt is None:
            return
        if result.outcome == "succeeded":
            self.reset, self.failures, self.first_failure_at = True, 0, None
        else:
            self.failures += 1
            self.first_failure_at = self.first_failure_at or attempt.at
        self.gone = self.gone or result.gone
        if self.last is None or attempt.at >= self.last.at:
            self.last = attempt


class DeliveryQueries(SQLStatements):
    """The delivery-engine half of the Storage protocol, for SQLStorage."""

    # -- reading -------------------------------------------------------------------------------
    async def get_delivery(self, workspace_id: str, delivery_id: str) -> Delivery | None:
        """Select one delivery of the workspace."""
        row = await self._one(
            "SELECT * FROM rp_deliveries WHERE id = {} AND workspace_id = {}",
            delivery_id,
            workspace_id,
        )
        return rows.delivery_from_row(row) if row else None

    async def list_delivery_attempts(self, delivery_id: str) -> list[DeliveryAttempt]:
        """Select a delivery's attempt log, oldest first."""
        found = await self._all(
            "SELECT * FROM rp_delivery_attempts WHERE delivery_id = {} ORDER BY number",
            delivery_id,
        )
        return [rows.attempt_from_row(row) for row in found]

    async def delivery_queue_stats(self) -> DeliveryQueueStats:
        """Count pending deliveries (an index-only scan) and find the oldest one."""
        row = await self._one(
            "SELECT COUNT(*) AS pending, MIN(created_at) AS oldest "
            "FROM rp_deliveries WHERE status = 'pending'"
        )
        assert row is not None
        oldest = row["oldest"]
        return DeliveryQueueStats(
            pending=row["pending"], oldest_pending_at=utc_from_ms(oldest) if oldest else None
        )

    # -- creating ------------------------------------------------------------------------------
    async def create_direct_delivery(
        self,
        event: EventRecord,
        endpoint_id: str,
        *,
        leased_to: str | None = None,
        lease_until: datetime | None = None,
    ) -> Delivery:
        """Insert the event and a single pending delivery to the endpoint."""
        due = lease_until if leased_to is not None and lease_until is not None else event.created_at
        delivery = Delivery(
            id=new_id("dlv", event.created_at),
            event_id=event.id,
            event_type=event.type,
            endpoint_id=endpoint_id,
            status="pending",
            next_attempt_at=due,
            created_at=event.created_at,
        )
        async with self.engine.transaction():
            await self._insert("rp_events", [rows.event_row(event)])
            await self._insert(
                "rp_deliveries",
                [
                    {
                        "id": delivery.id,
                        "workspace_id": event.workspace_id,
                        "event_id": event.id,
                        "endpoint_id": endpoint_id,
                        "event_type": event.type,
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": ms(due),
                        "lease_owner": leased_to,
                        "lease_until": ms(lease_until) if leased_to is not None else None,
                        "created_at": ms(event.created_at),
                    }
                ],
            )
            if leased_to is None:
                await self._announce_work()
        return delivery

    # -- the worker's side ---------------------------------------------------------------------
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
        """Lease due deliveries endpoint by endpoint, oldest first, each up to its room."""
        found = await self._claim_rows(
            timestamp_ms(now),
            worker_id,
            timestamp_ms(lease_until),
            limit,
            per_endpoint,
            endpoint_room or {},
        )
        return _tasks_from_rows(found)

    async def _claim_rows(
        self,
        now_ms: int,
        worker_id: str,
        lease_ms: int,
        limit: int,
        per_endpoint: int | None,
        room: Mapping[str, int],
    ) -> Sequence[Row]:
        """Lease the rows and read them with :data:`CLAIM_COLUMNS` (a dialect may do it at once)."""
        heads = await self._all(
            "SELECT w.id AS endpoint_id, (SELECT MIN(d.next_attempt_at) FROM rp_deliveries d "
            "WHERE d.endpoint_id = w.id AND d.status = 'pending') AS due "
            "FROM rp_webhook_endpoints w"
        )
        due = sorted(
            (row["due"], row["endpoint_id"])
            for row in heads
            if row["due"] is not None and row["due"] <= now_ms
        )
        if not due:
            return []
        async with self.engine.transaction():
            # Then each endpoint's oldest due rows are one seek more. A backlog of one endpoint
            # is never read to find another's work: a claim costs the same at any queue length.
            ids: list[str] = []
            for _, endpoint_id in due:
                cap = room.get(endpoint_id, per_endpoint)
                take = limit - len(ids) if cap is None else min(cap, limit - len(ids))
                if take <= 0:
                    continue
                found = await self._all(
                    "SELECT id FROM rp_deliveries WHERE endpoint_id = {} AND status = 'pending' "
                    "AND next_attempt_at <= {} ORDER BY next_attempt_at LIMIT {}" + self.claim_lock,
                    endpoint_id,
                    now_ms,
                    take,
                )
                ids.extend(row["id"] for row in found)
                if len(ids) >= limit:
                    break
            if not ids:
                return []
            # The WHERE repeats the due test for engines where another worker may have taken a
            # row since the SELECT (Postgres). Written as expressions, not bare columns, so
            # SQLite looks the rows up by id instead of range-scanning its due index.
            claimed = await self._all(
                "UPDATE rp_deliveries SET lease_owner = {}, lease_until = {}, next_attempt_at = {} "
                f"WHERE id IN ({placeholders(len(ids))}) "
                "AND status || '' = 'pending' AND next_attempt_at + 0 <= {} RETURNING id",
                worker_id,
                lease_ms,
                lease_ms,
                *ids,
                now_ms,
            )
            if not claimed:
                return []
            taken = [row["id"] for row in claimed]
            found = await self._all(
                f"SELECT {CLAIM_COLUMNS} FROM rp_deliveries d "
                "JOIN rp_events e ON e.id = d.event_id "
                "JOIN rp_webhook_endpoints w ON w.id = d.endpoint_id "
                f"WHERE d.id IN ({placeholders(len(taken))}) ORDER BY d.next_attempt_at, d.id",
                *taken,
            )
        return found

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
        if not results:
            return 0
        async with self.engine.transaction():
            await self._lock_endpoints(sorted({result.endpoint_id for result in results}))
            applied = await self._apply_results(results, worker_id)
            attempts = [
                rows.attempt_row(result.delivery_id, result.attempt)
                for result in applied
                if result.attempt is not None
            ]
            await self._insert("rp_delivery_attempts", attempts, " ON CONFLICT DO NOTHING")
            tallies: dict[str, _EndpointTally] = {}
            attempted = [result for result in applied if result.attempt is not None]
            for result in sorted(attempted, key=_attempt_order):
                tallies.setdefault(result.endpoint_id, _EndpointTally()).add(result)
            for endpoint_id, tally in tallies.items():
                await self._apply_tally(endpoint_id, tally, at, disable_threshold, disable_notice)
        return len(applied)

    async def _lock_endpoints(self, endpoint_ids: Sequence[str]) -> None:
        """With row locks, lock the endpoints first, in id order, as every writer does.

        Disabling an endpoint locks it and then holds its pending deliveries; writing results
        locks deliveries and then updates their endpoints. Taking the endpoints first here keeps
        one lock order, so the two never deadlock.
        """
        if self.lock_rows and endpoint_ids:
            await self._all(
                "SELECT id FROM rp_webhook_endpoints "
                f"WHERE id IN ({placeholders(len(endpoint_ids))}) ORDER BY id{self.lock_rows}",
                *endpoint_ids,
            )

    async def _apply_results(
        self, results: Sequence[DeliveryResult], worker_id: str
    ) -> list[DeliveryResult]:
        """Settle the deliveries this worker still holds; return the results that applied."""
        attempted = [
            (
                _STATUS[result.outcome],
                ms(result.next_attempt_at) if result.outcome == "retry" else None,
                attempt.number,
                attempt.status_code,
                attempt.latency_ms,
                attempt.error,
                ms(attempt.at),
                result.delivery_id,
            )
            for result in results
            if (attempt := result.attempt) is not None
        ]
        parked = [
            (_STATUS[result.outcome], result.delivery_id)
            for result in results
            if result.attempt is None
        ]
        held_now = await self._settle(attempted, parked, worker_id)
        return [result for result in results if result.delivery_id in held_now]

    async def _settle(
        self,
        attempted: Sequence[tuple[object, ...]],
        parked: Sequence[tuple[object, ...]],
        worker_id: str,
    ) -> set[str]:
        """Write outcomes to the rows ``worker_id`` still leases; return their ids.

        ``attempted`` rows are (status, next_attempt_at, attempts, response_status, latency_ms,
        error, last_attempt_at, id); ``parked`` rows are (status, id). A dialect may do this in
        fewer statements (the Postgres plugin updates from arrays).
        """
        held_now: set[str] = set()
        ids = [row[-1] for row in attempted] + [row[-1] for row in parked]
        for chunk in chunks(ids, _IDS_PER_CHECK):
            found = await self._all(
                # Expressions, not bare columns: SQLite must look the ids up, not range-scan
                # every pending row through an index on status.
                f"SELECT id FROM rp_deliveries WHERE id IN ({placeholders(len(chunk))}) "
                f"AND lease_owner || '' = {{}} AND status || '' = 'pending'{self.lock_rows}",
                *chunk,
                worker_id,
            )
            held_now.update(row["id"] for row in found)
        if held_attempted := [row for row in attempted if row[-1] in held_now]:
            await self._many(
                "UPDATE rp_deliveries SET status = {}, next_attempt_at = {}, attempts = {}, "
                "response_status = {}, latency_ms = {}, error = {}, last_attempt_at = {}, "
                "lease_owner = NULL, lease_until = NULL WHERE id = {}",
                held_attempted,
            )
        if held_parked := [row for row in parked if row[-1] in held_now]:
            await self._many(
                "UPDATE rp_deliveries SET status = {}, next_attempt_at = NULL, "
                "lease_owner = NULL, lease_until = NULL WHERE id = {}",
                held_parked,
            )
        return held_now

    async def _apply_tally(
        self,
        endpoint_id: str,
        tally: _EndpointTally,
        at: datetime,
        disable_threshold: int,
        disable_notice: DisableNotice,
    ) -> None:
        last = tally.last
        if last is None:
            return
        if tally.reset:
            health = "failure_count = {}, first_failure_at = {}"
        else:
            health = (
                "failure_count = failure_count + {}, "
                "first_failure_at = COALESCE(first_failure_at, {})"
            )
        await self._all(
            f"UPDATE rp_webhook_endpoints SET {health}, "
            "last_status_code = {}, last_attempt_at = {} WHERE id = {}",
            tally.failures,
            ms(tally.first_failure_at),
            last.status_code,
            ms(last.at),
            endpoint_id,
        )
        reason = "gone" if tally.gone else "auto"
        disabled = await self._all(
            "UPDATE rp_webhook_endpoints "
            "SET active = {}, disabled_reason = {}, auto_disabled_at = {} "
            "WHERE id = {} AND active = {} AND ({} OR failure_count >= {}) RETURNING *",
            False,
            reason,
            ms(at),
            endpoint_id,
            True,
            tally.gone,
            disable_threshold,
        )
        if disabled:
            await self._hold_pending(endpoint_id)
            await self._write_jobs([disable_notice(rows.endpoint_from_row(disabled[0]), at)])

    async def _hold_pending(self, endpoint_id: str) -> None:
        await self._all(
            "UPDATE rp_deliveries SET status = 'held', next_attempt_at = NULL, "
            "lease_owner = NULL, lease_until = NULL "
            "WHERE endpoint_id = {} AND status = 'pending'",
            endpoint_id,
        )

    # -- the operator's side -------------------------------------------------------------------
    async def requeue_delivery(
        self, workspace_id: str, delivery_id: str, *, at: datetime
    ) -> Delivery | None:
        """Make one delivery pending again (not a dropped one)."""
        async with self.engine.transaction():
            await self._all(
                "UPDATE rp_deliveries SET status = 'pending', next_attempt_at = {}, "
                "lease_owner = NULL, lease_until = NULL "
                "WHERE id = {} AND workspace_id = {} AND status <> 'dropped'",
                ms(at),
                delivery_id,
                workspace_id,
            )
            await self._announce_work()
            row = await self._one(
                "SELECT * FROM rp_deliveries WHERE id = {} AND workspace_id = {}",
                delivery_id,
                workspace_id,
            )
        return rows.delivery_from_row(row) if row else None

    async def recover_deliveries(self, endpoint_id: str, *, since: datetime, at: datetime) -> int:
        """Re-queue the endpoint's failed and held deliveries created since ``since``."""
        async with self.engine.transaction():
            updated = await self._all(
                "UPDATE rp_deliveries SET status = 'pending', next_attempt_at = {}, "
                "lease_owner = NULL, lease_until = NULL "
                "WHERE endpoint_id = {} AND status IN ('failed', 'held') AND created_at >= {} "
                "RETURNING id",
                ms(at),
                endpoint_id,
                ms(since),
            )
            if updated:
                await self._announce_work()
        return len(updated)


def _attempt_order(result: DeliveryResult) -> tuple[datetime, int]:
    assert result.attempt is not None
    return result.attempt.at, result.attempt.number
