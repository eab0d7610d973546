"""The delivery-queue half of the Storage contract: claims, leases, results, health, replays.

:class:`~ravepilot_core.testing.StorageContract` includes these tests; they live apart only to
keep each file readable.
"""

# The tests are public methods whose names say what they check; docstrings would only repeat them.
# ruff: noqa: D102

from __future__ import annotations

from datetime import datetime

import anyio
import msgspec
import pytest

from ravepilot_core.events import make_event
from ravepilot_core.models import (
    DeliveryAttempt,
    DeliveryResult,
    DeliveryTask,
    Job,
    WebhookEndpointRecord,
    Workspace,
)
from ravepilot_core.protocols import Storage
from ravepilot_core.testing.contract_data import (
    T0,
    at,
    invitation_event,
    make_endpoint,
    make_job,
    make_submission,
    new_workspace,
)

__all__ = ["DeliveryQueueContract"]

LEASE = at(minutes=1)
THRESHOLD = 3
NOW = at(seconds=1)  # every delivery the tests make is due by then


def notice(record: WebhookEndpointRecord, when: datetime) -> Job:
    """The disable notice a test storage stores: a job about the endpoint."""
    return msgspec.structs.replace(
        make_job(record.workspace_id, record.endpoint.id, run_at=when, when=when),
        kind="test.endpoint_disabled",
        payload={"reason": record.endpoint.disabled_reason},
    )


def attempt(
    number: int,
    when: datetime,
    status: int | None = 200,
    *,
    error: str | None = None,
    target_ip: str | None = None,
    response_body: str | None = None,
) -> DeliveryAttempt:
    """An attempt made at ``when`` that got ``status``."""
    return DeliveryAttempt(
        number=number,
        at=when,
        target_ip=target_ip,
        status_code=status,
        latency_ms=12,
        error=error,
        response_body=response_body,
    )


def success(task: DeliveryTask, when: datetime) -> DeliveryResult:
    """A 200 for ``task``."""
    return DeliveryResult(
        delivery_id=task.delivery_id,
        endpoint_id=task.endpoint.endpoint.id,
        outcome="succeeded",
        attempt=attempt(task.attempt, when, 200, target_ip="203.0.113.7", response_body="ok"),
    )


def failure(
    task: DeliveryTask, when: datetime, *, status: int = 500, retry_at: datetime | None = None
) -> DeliveryResult:
    """A failed attempt of ``task``; retried at ``retry_at`` if given, else final."""
    return DeliveryResult(
        delivery_id=task.delivery_id,
        endpoint_id=task.endpoint.endpoint.id,
        outcome="retry" if retry_at else "failed",
        attempt=attempt(task.attempt, when, status, error=f"HTTP {status}"),
        next_attempt_at=retry_at,
        gone=status == 410,
    )


async def with_deliveries(
    storage: Storage, count: int, *, endpoints: int = 1
) -> tuple[Workspace, list[WebhookEndpointRecord], list[str]]:
    """A workspace with ``endpoints`` endpoints and ``count`` events (one delivery each)."""
    workspace, primary = await new_workspace(storage)
    records = [make_endpoint(workspace.id, when=at(milliseconds=i)) for i in range(endpoints)]
    for record in records:
        await storage.create_webhook_endpoint(record)
    events = [invitation_event(workspace.id, when=at(milliseconds=i)) for i in range(count)]
    await storage.create_submission(make_submission(workspace.id, primary.id), events=events)
    return workspace, records, [event.id for event in events]


async def claim(storage: Storage, now: datetime = NOW, *, worker: str = "w1", limit: int = 100,
                per_endpoint: int | None = None,
                room: dict[str, int] | None = None) -> list[DeliveryTask]:  # fmt: skip
    return await storage.claim_deliveries(
        now=now,
        worker_id=worker,
        lease_until=now + (LEASE - T0),
        limit=limit,
        per_endpoint=per_endpoint,
        endpoint_room=room,
    )


async def record(storage: Storage, results: list[DeliveryResult], *, worker: str = "w1",
                 when: datetime = T0) -> int:  # fmt: skip
    return await storage.record_delivery_results(
        results, worker_id=worker, at=when, disable_threshold=THRESHOLD, disable_notice=notice
    )


class DeliveryQueueContract:
    """How a storage queues, leases and settles webhook deliveries."""

    pytestmark = pytest.mark.anyio

    # -- claims ----------------------------------------------------------------------------------
    async def test_claim_returns_due_deliveries_with_body_and_endpoint(
        self, storage: Storage
    ) -> None:
        workspace, [endpoint], event_ids = await with_deliveries(storage, 3)
        events = {e.id: e for e in await storage.list_events(workspace.id)}
        tasks = await claim(storage, at(seconds=1), limit=2)
        assert [t.event_id for t in tasks] == event_ids[:2]  # oldest first, up to the limit
        for task in tasks:
            assert task.attempt == 1
            assert task.workspace_id == workspace.id
            assert task.event_type == "invitation.created"
            assert task.payload == events[task.event_id].payload
            assert task.endpoint == endpoint

    async def test_claim_skips_deliveries_not_yet_due(self, storage: Storage) -> None:
        await with_deliveries(storage, 2)  # due at T0 and T0 + 1 ms
        assert [t.attempt for t in await claim(storage, at(milliseconds=-1))] == []
        assert len(await claim(storage, T0)) == 1

    async def test_a_lease_holds_a_delivery_until_it_expires(self, storage: Storage) -> None:
        await with_deliveries(storage, 1)
        [task] = await claim(storage, T0, worker="w1")
        assert await claim(storage, at(seconds=59), worker="w2") == []
        [delivery] = await storage.list_deliveries(task.endpoint.endpoint.id)
        assert delivery.next_attempt_at == LEASE  # due again by itself if w1 dies
        [again] = await claim(storage, LEASE, worker="w2")
        assert again.delivery_id == task.delivery_id
        # w1's late result no longer counts; w2's does.
        assert await record(storage, [success(task, at(seconds=61))], worker="w1") == 0
        assert await record(storage, [success(again, at(seconds=61))], worker="w2") == 1

    async def test_claim_respects_each_endpoints_room(self, storage: Storage) -> None:
        _, [busy, idle, third], _ = await with_deliveries(storage, 4, endpoints=3)
        tasks = await claim(storage, room={busy.endpoint.id: 0, idle.endpoint.id: 3})
        by_endpoint = sorted(t.endpoint.endpoint.id for t in tasks)
        assert by_endpoint == sorted([idle.endpoint.id] * 3 + [third.endpoint.id] * 4)
        rest = await claim(storage, per_endpoint=2)
        assert sorted(t.endpoint.endpoint.id for t in rest) == sorted(
            [busy.endpoint.id] * 2 + [idle.endpoint.id]
        )
        [last] = await claim(storage, per_endpoint=1)
        assert last.endpoint.endpoint.id == busy.endpoint.id
        assert len(await claim(storage)) == 1

    async def test_concurrent_claims_hand_each_delivery_to_one_worker(
        self, storage: Storage
    ) -> None:
        await with_deliveries(storage, 30)
        claimed: dict[str, list[str]] = {}

        async def take(worker: str) -> None:
            tasks = await claim(storage, at(seconds=1), worker=worker, limit=7)
            claimed[worker] = [t.delivery_id for t in tasks]

        async with anyio.create_task_group() as group:
            for n in range(6):
                group.start_soon(take, f"w{n}")
        every = [d for ids in claimed.values() for d in ids]
        assert len(every) == len(set(every)) == 30

    # -- results ---------------------------------------------------------------------------------
    async def test_success_is_recorded_with_its_attempt(self, storage: Storage) -> None:
        workspace, [endpoint], _ = await with_deliveries(storage, 1)
        [task] = await claim(storage)
        assert await record(storage, [success(task, at(seconds=2))]) == 1
        delivery = await storage.get_delivery(workspace.id, task.delivery_id)
        assert delivery is not None
        assert (delivery.status, delivery.attempts, delivery.response_status) == (
            "succeeded",
            1,
            200,
        )
        assert (delivery.latency_ms, delivery.last_attempt_at) == (12, at(seconds=2))
        assert delivery.next_attempt_at is None
        assert await storage.list_delivery_attempts(task.delivery_id) == [
            attempt(1, at(seconds=2), 200, target_ip="203.0.113.7", response_body="ok")
        ]
        stored = await storage.get_webhook_endpoint(workspace.id, endpoint.endpoint.id)
        assert stored is not None
        assert stored.endpoint.last_status_code == 200
        assert stored.endpoint.last_attempt_at == at(seconds=2)
        assert await claim(storage, at(hours=1)) == []

    async def test_a_retry_stays_pending_until_its_time(self, storage: Storage) -> None:
        workspace, _, _ = await with_deliveries(storage, 1)
        [task] = await claim(storage)
        await record(storage, [failure(task, at(seconds=1), retry_at=at(minutes=1))])
        delivery = await storage.get_delivery(workspace.id, task.delivery_id)
        assert delivery is not None
        assert (delivery.status, delivery.attempts, delivery.error) == ("pending", 1, "HTTP 500")
        assert delivery.next_attempt_at == at(minutes=1)
        assert await claim(storage, at(seconds=59)) == []
        [second] = await claim(storage, at(minutes=1))
        assert second.attempt == 2
        await record(storage, [failure(second, at(minutes=1, seconds=1))])
        numbers = [a.number for a in await storage.list_delivery_attempts(task.delivery_id)]
        assert numbers == [1, 2]
        final = await storage.get_delivery(workspace.id, task.delivery_id)
        assert final is not None and final.status == "failed"

    async def test_held_result_parks_without_an_attempt(self, storage: Storage) -> None:
        workspace, [endpoint], _ = await with_deliveries(storage, 1)
        [task] = await claim(storage)
        held = DeliveryResult(
            delivery_id=task.delivery_id, endpoint_id=endpoint.endpoint.id, outcome="held"
        )
        assert await record(storage, [held]) == 1
        delivery = await storage.get_delivery(workspace.id, task.delivery_id)
        assert delivery is not None
        assert (delivery.status, delivery.attempts) == ("held", 0)
        assert await storage.list_delivery_attempts(task.delivery_id) == []

    async def test_failures_count_in_attempt_order_and_a_success_resets(
        self, storage: Storage
    ) -> None:
        workspace, [endpoint], _ = await with_deliveries(storage, 4)
        tasks = await claim(storage)
        # Written in one batch out of order: the success at 2 s resets the two before it.
        results = [
            failure(tasks[3], at(seconds=3), retry_at=at(hours=1)),
            success(tasks[1], at(seconds=2)),
            failure(tasks[0], at(seconds=1), retry_at=at(hours=1)),
            failure(tasks[2], at(seconds=1, milliseconds=500), retry_at=at(hours=1)),
        ]
        assert await record(storage, results) == 4
        stored = await storage.get_webhook_endpoint(workspace.id, endpoint.endpoint.id)
        assert stored is not None
        assert (stored.endpoint.failure_count, stored.endpoint.first_failure_at) == (
            1,
            at(seconds=3),
        )
        assert (stored.endpoint.last_status_code, stored.endpoint.active) == (500, True)

    async def test_threshold_disables_holds_and_notifies_once(self, storage: Storage) -> None:
        workspace, [endpoint], _ = await with_deliveries(storage, 5)
        tasks = await claim(storage, limit=3)
        results = [failure(t, at(seconds=i + 1), retry_at=at(hours=1)) for i, t in enumerate(tasks)]
        await record(storage, results, when=at(seconds=10))
        stored = await storage.get_webhook_endpoint(workspace.id, endpoint.endpoint.id)
        assert stored is not None
        assert (stored.endpoint.active, stored.endpoint.disabled_reason) == (False, "auto")
        assert stored.endpoint.auto_disabled_at == at(seconds=10)
        assert stored.endpoint.failure_count == THRESHOLD
        statuses = [d.status for d in await storage.list_deliveries(endpoint.endpoint.id)]
        assert statuses == ["held"] * 5  # the retries and the never-claimed ones alike
        [job] = await storage.list_jobs(endpoint.endpoint.id)
        assert (job.kind, job.payload) == ("test.endpoint_disabled", {"reason": "auto"})
        # Later events are held, not sent, and the workspace is told only once.
        [primary] = await storage.list_collectors(workspace.id)
        later = invitation_event(workspace.id, when=at(minutes=1))
        await storage.create_submission(
            make_submission(workspace.id, primary.id, email="b@example.com", when=at(minutes=1)),
            events=[later],
        )
        [newest, *_] = await storage.list_deliveries(endpoint.endpoint.id)
        assert (newest.event_id, newest.status) == (later.id, "held")
        assert await claim(storage, at(hours=2)) == []
        assert len(await storage.list_jobs(endpoint.endpoint.id)) == 1

    async def test_a_410_disables_at_once(self, storage: Storage) -> None:
        workspace, [endpoint], _ = await with_deliveries(storage, 2)
        [task] = await claim(storage, limit=1)
        await record(storage, [failure(task, at(seconds=1), status=410)], when=at(seconds=1))
        stored = await storage.get_webhook_endpoint(workspace.id, endpoint.endpoint.id)
        assert stored is not None
        assert (stored.endpoint.active, stored.endpoint.disabled_reason) == (False, "gone")
        statuses = sorted(d.status for d in await storage.list_deliveries(endpoint.endpoint.id))
        assert statuses == ["failed", "held"]
        [job] = await storage.list_jobs(endpoint.endpoint.id)
        assert job.payload == {"reason": "gone"}

    async def test_disabling_by_hand_holds_pending_deliveries(self, storage: Storage) -> None:
        _, [endpoint], _ = await with_deliveries(storage, 2)
        off = msgspec.structs.replace(
            endpoint,
            endpoint=msgspec.structs.replace(
                endpoint.endpoint, active=False, disabled_reason="manual"
            ),
        )
        await storage.update_webhook_endpoint(off)
        statuses = [d.status for d in await storage.list_deliveries(endpoint.endpoint.id)]
        assert statuses == ["held", "held"]
        assert await claim(storage, at(hours=1)) == []

    # -- operator actions ------------------------------------------------------------------------
    async def test_requeue_makes_a_delivery_due_again(self, storage: Storage) -> None:
        workspace, [endpoint], _ = await with_deliveries(storage, 1)
        other, _ = await new_workspace(storage)
        [task] = await claim(storage)
        await record(storage, [failure(task, at(seconds=1))])
        assert await storage.requeue_delivery(other.id, task.delivery_id, at=at(hours=1)) is None
        requeued = await storage.requeue_delivery(workspace.id, task.delivery_id, at=at(hours=1))
        assert requeued is not None
        assert (requeued.status, requeued.next_attempt_at) == ("pending", at(hours=1))
        [again] = await claim(storage, at(hours=1))
        assert again.attempt == 2
        # A dropped delivery stays dropped.
        await storage.delete_webhook_endpoint(workspace.id, endpoint.endpoint.id)
        dropped = await storage.requeue_delivery(workspace.id, task.delivery_id, at=at(hours=2))
        assert dropped is not None and dropped.status == "dropped"

    async def test_recover_requeues_failed_and_held_since_a_time(self, storage: Storage) -> None:
        _, [endpoint], _ = await with_deliveries(storage, 4)
        tasks = await claim(storage)  # created at T0 + 0..3 ms
        await record(
            storage,
            [
                failure(tasks[0], at(seconds=1)),
                failure(tasks[1], at(seconds=1)),
                success(tasks[2], at(seconds=1)),
                DeliveryResult(
                    delivery_id=tasks[3].delivery_id,
                    endpoint_id=endpoint.endpoint.id,
                    outcome="held",
                ),
            ],
        )
        count = await storage.recover_deliveries(
            endpoint.endpoint.id, since=at(milliseconds=1), at=at(hours=1)
        )
        assert count == 2  # tasks[1] (failed) and tasks[3] (held); not the older or the success
        statuses = {d.id: d.status for d in await storage.list_deliveries(endpoint.endpoint.id)}
        assert [statuses[t.delivery_id] for t in tasks] == [
            "failed",
            "pending",
            "succeeded",
            "pending",
        ]
        assert {t.delivery_id for t in await claim(storage, at(hours=1))} == {
            tasks[1].delivery_id,
            tasks[3].delivery_id,
        }

    async def test_a_direct_delivery_can_start_leased(self, storage: Storage) -> None:
        workspace, _ = await new_workspace(storage)
        endpoint = make_endpoint(workspace.id)
        await storage.create_webhook_endpoint(endpoint)
        event = make_event("webhook.test", workspace_id=workspace.id, data={}, at=T0)
        delivery = await storage.create_direct_delivery(
            event, endpoint.endpoint.id, leased_to="sync", lease_until=LEASE
        )
        assert delivery.next_attempt_at == LEASE
        assert await claim(storage) == []  # the caller sends it
        sent = DeliveryResult(
            delivery_id=delivery.id,
            endpoint_id=endpoint.endpoint.id,
            outcome="succeeded",
            attempt=attempt(1, at(seconds=1)),
        )
        assert await record(storage, [sent], worker="sync") == 1
        stored = await storage.get_delivery(workspace.id, delivery.id)
        assert stored is not None and stored.status == "succeeded"

    async def test_direct_delivery_reaches_only_its_endpoint(self, storage: Storage) -> None:
        workspace, _ = await new_workspace(storage)
        target = make_endpoint(workspace.id, events=("clip.uploaded",), active=False,
                               disabled_reason="manual")  # fmt: skip
        bystander = make_endpoint(workspace.id)
        for endpoint in (target, bystander):
            await storage.create_webhook_endpoint(endpoint)
        event = make_event("webhook.test", workspace_id=workspace.id, data={}, at=T0)
        delivery = await storage.create_direct_delivery(event, target.endpoint.id)
        assert (delivery.status, delivery.endpoint_id) == ("pending", target.endpoint.id)
        assert await storage.list_deliveries(target.endpoint.id) == [delivery]
        assert await storage.list_deliveries(bystander.endpoint.id) == []
        assert await storage.get_delivery(workspace.id, delivery.id) == delivery
        assert await storage.list_events(workspace.id) == [event]
        [task] = await claim(storage)
        assert (task.delivery_id, task.payload) == (delivery.id, event.payload)

    async def test_queue_stats_count_pending_and_the_oldest(self, storage: Storage) -> None:
        empty = await storage.delivery_queue_stats()
        assert (empty.pending, empty.oldest_pending_at) == (0, None)
        await with_deliveries(storage, 3)
        tasks = await claim(storage, limit=1)
        await record(storage, [success(tasks[0], at(seconds=1))])
        stats = await storage.delivery_queue_stats()
        assert (stats.pending, stats.oldest_pending_at) == (2, at(milliseconds=1))

    async def test_wait_for_changes_returns_by_its_timeout(self, storage: Storage) -> None:
        with anyio.fail_after(2):
            await storage.wait_for_changes(0.05)

    async def test_workspace_notify_email_round_trip(self, storage: Storage) -> None:
        workspace, _ = await new_workspace(storage)
        changed = msgspec.structs.replace(
            workspace, name="Acme Inc", notify_email="ops@acme.example"
        )
        await storage.update_workspace(changed)
        assert await storage.get_workspace(workspace.id) == changed
