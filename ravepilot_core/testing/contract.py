"""The Storage contract suite: a pytest class any storage backend subclasses to prove it behaves.

Subclass :class:`StorageContract` in your own tests and override the one ``storage`` fixture; every
test then runs against your backend::

    import pytest
    from ravepilot_core.testing import StorageContract

    class TestMyStorage(StorageContract):
        @pytest.fixture
        async def storage(self, tmp_path):
            storage = await open_my_storage(tmp_path)
            await storage.migrate()
            yield storage
            await storage.close()

The tests run under anyio's pytest plugin (``anyio`` is a dependency of the core); provide an
``anyio_backend`` fixture if you want another event loop than asyncio.
"""

# The tests are public methods whose names say what they check; docstrings would only repeat them.
# ruff: noqa: D102

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

import anyio
import msgspec
import pytest

from ravepilot_core.errors import Conflict
from ravepilot_core.ids import new_id
from ravepilot_core.mail import invitation_email_job
from ravepilot_core.models import (
    Brand,
    Delivery,
    DeliveryStatus,
    IdempotencyRecord,
    InvitationEmail,
    Job,
    ScriptPrompt,
    SubmissionRecord,
    SubmissionStatus,
    WebhookEndpointRecord,
)
from ravepilot_core.protocols import Storage
from ravepilot_core.testing.contract_data import (
    T0,
    at,
    invitation_event,
    make_api_key,
    make_collector,
    make_endpoint,
    make_job,
    make_submission,
    make_workspace,
    new_workspace,
)
from ravepilot_core.testing.delivery_contract import DeliveryQueueContract
from ravepilot_core.testing.recordings_contract import RecordingsContract

__all__ = ["StorageContract"]


class StorageContract(RecordingsContract, DeliveryQueueContract):
    """Behaviour every :class:`~ravepilot_core.protocols.Storage` must have.

    Subclass it in a class named ``Test...`` and override the ``storage`` fixture to yield a
    migrated, empty storage (and close it afterwards).
    """

    pytestmark = pytest.mark.anyio

    @pytest.fixture
    def storage(self) -> Storage:
        """Override this fixture: yield a migrated, empty storage and close it after the test."""
        raise NotImplementedError("subclass StorageContract and override the `storage` fixture")

    # -- lifecycle -------------------------------------------------------------------------------
    async def test_implements_the_protocol(self, storage: Storage) -> None:
        assert isinstance(storage, Storage)
        await storage.ping()

    async def test_migrate_again_keeps_the_data(self, storage: Storage) -> None:
        workspace, _ = await new_workspace(storage)
        await storage.migrate()
        assert await storage.get_workspace(workspace.id) == workspace

    # -- workspaces ------------------------------------------------------------------------------
    async def test_workspace_round_trip(self, storage: Storage) -> None:
        workspace, primary = await new_workspace(storage, "acme")
        assert await storage.get_workspace(workspace.id) == workspace
        assert await storage.get_workspace_by_slug("acme") == workspace
        assert await storage.get_primary_collector(workspace.id) == primary
        assert await storage.list_collectors(workspace.id) == [primary]

    async def test_unknown_workspace_is_none(self, storage: Storage) -> None:
        await new_workspace(storage, "acme")
        assert await storage.get_workspace(new_id("ws", T0)) is None
        assert await storage.get_workspace_by_slug("acme-2") is None
        assert await storage.get_primary_collector(new_id("ws", T0)) is None

    async def test_taken_slug_is_a_conflict_and_writes_nothing(self, storage: Storage) -> None:
        first, _ = await new_workspace(storage, "acme")
        second, second_primary = make_workspace("acme", when=at(seconds=1))
        with pytest.raises(Conflict):
            await storage.create_workspace(second, second_primary)
        assert await storage.get_workspace_by_slug("acme") == first
        assert await storage.get_workspace(second.id) is None
        assert await storage.get_collector(second.id, second_primary.id) is None
        assert await storage.list_collectors(second.id) == []

    # -- api keys --------------------------------------------------------------------------------
    async def test_api_key_round_trip(self, storage: Storage) -> None:
        workspace, _ = await new_workspace(storage)
        key = make_api_key(workspace.id)
        await storage.create_api_key(key)
        assert await storage.get_api_key_by_hash(key.key_hash) == key
        assert await storage.get_api_key_by_hash(secrets.token_hex(32)) is None

    async def test_api_keys_list_newest_first_per_workspace(self, storage: Storage) -> None:
        workspace, _ = await new_workspace(storage)
        other, _ = await new_workspace(storage)
        keys = [make_api_key(workspace.id, name=f"k{i}", when=at(seconds=i)) for i in range(3)]
        for key in keys:
            await storage.create_api_key(key)
        await storage.create_api_key(make_api_key(other.id, when=at(seconds=5)))
        assert await storage.list_api_keys(workspace.id) == keys[::-1]
        assert [k.workspace_id for k in await storage.list_api_keys(other.id)] == [other.id]

    async def test_touch_api_key_records_last_use(self, storage: Storage) -> None:
        workspace, _ = await new_workspace(storage)
        key = make_api_key(workspace.id)
        await storage.create_api_key(key)
        await storage.touch_api_key(key.id, at(minutes=1))
        await storage.touch_api_key(key.id, at(minutes=2))
        touched = await storage.get_api_key_by_hash(key.key_hash)
        assert touched is not None
        assert touched.last_used_at == at(minutes=2)
        await storage.touch_api_key(new_id("key", T0), at(minutes=3))  # unknown: no error

    async def test_revoke_keeps_the_first_revocation_time(self, storage: Storage) -> None:
        workspace, _ = await new_workspace(storage)
        key = make_api_key(workspace.id)
        await storage.create_api_key(key)
        revoked = await storage.revoke_api_key(key.id, at(hours=1))
        assert revoked == msgspec.structs.replace(key, revoked_at=at(hours=1))
        again = await storage.revoke_api_key(key.id, at(hours=2))
        assert again is not None and again.revoked_at == at(hours=1)
        stored = await storage.get_api_key_by_hash(key.key_hash)
        assert stored is not None and stored.revoked_at == at(hours=1)
        assert await storage.revoke_api_key(new_id("key", T0), at(hours=1)) is None

    # -- collectors ------------------------------------------------------------------------------
    async def test_collectors_create_get_list(self, storage: Storage) -> None:
        workspace, primary = await new_workspace(storage)
        first = make_collector(name="Summer", when=at(seconds=1))
        second = make_collector(name="Autumn", when=at(seconds=2))
        await storage.create_collector(workspace.id, first)
        await storage.create_collector(workspace.id, second)
        assert await storage.get_collector(workspace.id, first.id) == first
        assert await storage.list_collectors(workspace.id) == [second, first, primary]
        assert await storage.get_primary_collector(workspace.id) == primary

    async def test_collectors_are_isolated_per_workspace(self, storage: Storage) -> None:
        workspace, primary = await new_workspace(storage)
        other, other_primary = await new_workspace(storage)
        collector = make_collector(when=at(seconds=1))
        await storage.create_collector(workspace.id, collector)
        assert await storage.get_collector(other.id, collector.id) is None
        assert await storage.get_collector(other.id, primary.id) is None
        assert await storage.list_collectors(other.id) == [other_primary]
        assert await storage.get_primary_collector(other.id) == other_primary

    async def test_one_primary_collector_per_workspace(self, storage: Storage) -> None:
        workspace, primary = await new_workspace(storage)
        with pytest.raises(Exception):  # noqa: B017 - the error type is the backend's own
            await storage.create_collector(
                workspace.id, make_collector(primary=True, when=at(seconds=1))
            )
        assert await storage.get_primary_collector(workspace.id) == primary

    async def test_update_collector_replaces_settings(self, storage: Storage) -> None:
        workspace, _ = await new_workspace(storage)
        collector = make_collector(when=at(seconds=1))
        await storage.create_collector(workspace.id, collector)
        changed = msgspec.structs.replace(
            collector,
            name="Renamed",
            brand=Brand(name="Renamed", primary_color="#112233"),
            host="reviews.example.com",
            script=(ScriptPrompt(key="only", prompt="One question"),),
            auto_render=True,
        )
        await storage.update_collector(workspace.id, changed)
        assert await storage.get_collector(workspace.id, collector.id) == changed

    async def test_update_collector_keeps_id_primary_flag_and_creation_time(
        self, storage: Storage
    ) -> None:
        workspace, primary = await new_workspace(storage)
        changed = msgspec.structs.replace(
            primary, name="Renamed", primary=False, created_at=at(days=3)
        )
        await storage.update_collector(workspace.id, changed)
        expected = msgspec.structs.replace(primary, name="Renamed")
        assert await storage.get_collector(workspace.id, primary.id) == expected
        assert await storage.get_primary_collector(workspace.id) == expected

    async def test_update_collector_of_another_workspace_changes_nothing(
        self, storage: Storage
    ) -> None:
        workspace, primary = await new_workspace(storage)
        other, _ = await new_workspace(storage)
        await storage.update_collector(other.id, msgspec.structs.replace(primary, name="Hijacked"))
        assert await storage.get_collector(workspace.id, primary.id) == primary

    # -- submissions -----------------------------------------------------------------------------
    async def test_create_submission_stores_it_with_its_events_and_jobs(
        self, storage: Storage
    ) -> None:
        workspace, primary = await new_workspace(storage)
        submission = make_submission(workspace.id, primary.id, email_requested_at=T0)
        event = invitation_event(workspace.id)
        job = invitation_email_job(submission, T0)
        stored, created = await storage.create_submission(submission, events=[event], jobs=[job])
        assert created is True
        assert stored == submission
        assert await storage.get_submission(workspace.id, submission.id) == submission
        assert await storage.list_events(workspace.id) == [event]
        assert await storage.list_jobs(submission.id) == [job]

    async def test_second_create_returns_the_first_and_writes_nothing(
        self, storage: Storage
    ) -> None:
        workspace, primary = await new_workspace(storage)
        first = make_submission(workspace.id, primary.id, name="Ada")
        await storage.create_submission(
            first,
            events=[invitation_event(workspace.id)],
            jobs=[invitation_email_job(first, T0)],
        )
        second = make_submission(workspace.id, primary.id, name="Someone else", when=at(seconds=1))
        second_job = invitation_email_job(second, at(seconds=1))
        stored, created = await storage.create_submission(
            second,
            events=[invitation_event(workspace.id, when=at(seconds=1))],
            jobs=[second_job],
        )
        assert created is False
        assert stored == first
        assert await storage.get_submission(workspace.id, second.id) is None
        assert len(await storage.list_events(workspace.id)) == 1
        assert await storage.list_jobs(second.id) == []
        assert len(await storage.list_jobs(first.id)) == 1
        assert await storage.list_submissions(workspace.id, status=None, limit=10) == [first]

    async def test_same_email_in_another_collector_is_another_submission(
        self, storage: Storage
    ) -> None:
        workspace, primary = await new_workspace(storage)
        collector = make_collector(when=at(seconds=1))
        await storage.create_collector(workspace.id, collector)
        first = make_submission(workspace.id, primary.id)
        second = make_submission(workspace.id, collector.id, when=at(seconds=2))
        assert (await storage.create_submission(first))[1] is True
        assert (await storage.create_submission(second))[1] is True
        other_email = make_submission(
            workspace.id, primary.id, email="grace@example.com", when=at(seconds=3)
        )
        assert (await storage.create_submission(other_email))[1] is True

    async def test_concurrent_creates_make_exactly_one(self, storage: Storage) -> None:
        workspace, primary = await new_workspace(storage)
        attempts = [
            make_submission(workspace.id, primary.id, name=f"try {i}", when=at(milliseconds=i))
            for i in range(50)
        ]
        results: list[tuple[SubmissionRecord, bool]] = []

        async def create(submission: SubmissionRecord) -> None:
            event = invitation_event(workspace.id, when=submission.created_at)
            job = invitation_email_job(submission, submission.created_at)
            results.append(await storage.create_submission(submission, events=[event], jobs=[job]))

        async with anyio.create_task_group() as group:
            for submission in attempts:
                group.start_soon(create, submission)

        assert len(results) == 50
        created = [record for record, was_created in results if was_created]
        assert len(created) == 1
        assert all(record == created[0] for record, _ in results)
        assert len(await storage.list_events(workspace.id)) == 1
        assert await storage.list_submissions(workspace.id, status=None, limit=100) == created
        jobs = [job for s in attempts for job in await storage.list_jobs(s.id)]
        assert [job.subject_id for job in jobs] == [created[0].id]

    async def test_concurrent_creates_of_many_customers_each_get_their_own(
        self, storage: Storage
    ) -> None:
        # Invitations arriving together (a backend may write them together): every customer
        # gets one submission with its own event and job, and a repeated email gets the first.
        workspace, primary = await new_workspace(storage)
        emails = [f"c{i % 30}@example.com" for i in range(40)]  # ten emails come twice
        attempts = [
            make_submission(workspace.id, primary.id, email=email, when=at(milliseconds=i))
            for i, email in enumerate(emails)
        ]
        results: dict[str, tuple[SubmissionRecord, bool]] = {}

        async def create(submission: SubmissionRecord) -> None:
            event = invitation_event(workspace.id, when=submission.created_at)
            job = invitation_email_job(submission, submission.created_at)
            results[submission.id] = await storage.create_submission(
                submission, events=[event], jobs=[job]
            )

        async with anyio.create_task_group() as group:
            for submission in attempts:
                group.start_soon(create, submission)

        created = {s.id: s for s in attempts if results[s.id][1]}
        assert sorted(s.customer.email for s in created.values()) == sorted(set(emails))
        for attempt in attempts:
            stored, was_created = results[attempt.id]
            if was_created:
                assert stored == attempt
                assert [job.subject_id for job in await storage.list_jobs(attempt.id)] == [
                    attempt.id
                ]
            else:
                assert stored.id in created and stored.customer.email == attempt.customer.email
                assert await storage.list_jobs(attempt.id) == []
        assert len(await storage.list_events(workspace.id)) == 30
        listed = await storage.list_submissions(workspace.id, status=None, limit=100)
        assert sorted(s.id for s in listed) == sorted(created)

    async def test_list_submissions_newest_first_with_paging(self, storage: Storage) -> None:
        workspace, primary = await new_workspace(storage)
        statuses: list[SubmissionStatus] = [
            "invited",
            "submitted",
            "invited",
            "submitted",
            "invited",
        ]
        subs = [
            make_submission(
                workspace.id, primary.id, email=f"c{i}@example.com", status=s, when=at(seconds=i)
            )
            for i, s in enumerate(statuses)
        ]
        for submission in subs:
            await storage.create_submission(submission)
        newest = subs[::-1]

        async def page(**kwargs: Any) -> list[SubmissionRecord]:
            kwargs.setdefault("status", None)
            kwargs.setdefault("limit", 10)
            return await storage.list_submissions(workspace.id, **kwargs)

        assert await page() == newest
        assert await page(limit=2) == newest[:2]
        assert await page(limit=2, offset=1) == newest[1:3]
        assert await page(limit=2, before_id=subs[3].id) == [subs[2], subs[1]]
        assert await page(before_id=subs[0].id) == []
        assert await page(status="submitted") == [subs[3], subs[1]]
        assert await page(status="invited", limit=1, before_id=subs[4].id) == [subs[2]]
        assert await page(status="withdrawn") == []

    async def test_submissions_are_isolated_per_workspace(self, storage: Storage) -> None:
        workspace, primary = await new_workspace(storage)
        other, _ = await new_workspace(storage)
        submission = make_submission(workspace.id, primary.id)
        await storage.create_submission(submission)
        assert await storage.get_submission(other.id, submission.id) is None
        assert await storage.list_submissions(other.id, status=None, limit=10) == []
        assert await storage.get_submission(workspace.id, new_id("sub", T0)) is None

    # -- the outbox ------------------------------------------------------------------------------
    async def test_events_get_one_delivery_per_subscribed_endpoint(self, storage: Storage) -> None:
        workspace, primary = await new_workspace(storage)
        other, _ = await new_workspace(storage)
        endpoints = {
            "all": make_endpoint(workspace.id, events=("*",)),
            "named": make_endpoint(workspace.id, events=("invitation.created", "clip.uploaded")),
            "unrelated": make_endpoint(workspace.id, events=("clip.uploaded",)),
            "auto": make_endpoint(workspace.id, active=False, disabled_reason="auto"),
            "gone": make_endpoint(workspace.id, active=False, disabled_reason="gone"),
            "manual": make_endpoint(workspace.id, active=False, disabled_reason="manual"),
            "other_workspace": make_endpoint(other.id),
        }
        for record in endpoints.values():
            await storage.create_webhook_endpoint(record)
        event = invitation_event(workspace.id, when=at(seconds=1))
        await storage.create_submission(
            make_submission(workspace.id, primary.id, when=at(seconds=1)), events=[event]
        )

        assert await storage.list_events(workspace.id) == [event]
        assert await storage.list_events(other.id) == []
        seen: dict[str, list[tuple[str, str, str]]] = {}
        for name, record in endpoints.items():
            deliveries = await storage.list_deliveries(record.endpoint.id)
            seen[name] = [(d.status, d.event_id, d.event_type) for d in deliveries]
            for delivery in deliveries:
                assert delivery.endpoint_id == record.endpoint.id
                assert delivery.attempts == 0
                assert delivery.created_at == event.created_at
                expected_next = event.created_at if delivery.status == "pending" else None
                assert delivery.next_attempt_at == expected_next
        pending = [("pending", event.id, "invitation.created")]
        held = [("held", event.id, "invitation.created")]
        assert seen == {
            "all": pending,
            "named": pending,
            "unrelated": [],
            "auto": held,
            "gone": held,
            "manual": [],
            "other_workspace": [],
        }

    async def test_a_new_delivery_has_not_been_attempted(self, storage: Storage) -> None:
        workspace, primary = await new_workspace(storage)
        active = make_endpoint(workspace.id)
        held = make_endpoint(workspace.id, active=False, disabled_reason="auto")
        for record in (active, held):
            await storage.create_webhook_endpoint(record)
        event = invitation_event(workspace.id)
        await storage.create_submission(make_submission(workspace.id, primary.id), events=[event])
        expected: list[tuple[WebhookEndpointRecord, DeliveryStatus, datetime | None]] = [
            (active, "pending", T0),
            (held, "held", None),
        ]
        for record, status, next_attempt_at in expected:
            [delivery] = await storage.list_deliveries(record.endpoint.id)
            assert delivery == Delivery(
                id=delivery.id,
                event_id=event.id,
                event_type=event.type,
                endpoint_id=record.endpoint.id,
                status=status,
                attempts=0,
                response_status=None,
                latency_ms=None,
                error=None,
                last_attempt_at=None,
                next_attempt_at=next_attempt_at,
                created_at=event.created_at,
            )

    async def test_list_events_newest_first_with_limit(self, storage: Storage) -> None:
        workspace, primary = await new_workspace(storage)
        events = []
        for i in range(3):
            event = invitation_event(workspace.id, when=at(seconds=i))
            events.append(event)
            await storage.create_submission(
                make_submission(
                    workspace.id, primary.id, email=f"c{i}@example.com", when=at(seconds=i)
                ),
                events=[event],
            )
        assert await storage.list_events(workspace.id) == events[::-1]
        assert await storage.list_events(workspace.id, limit=2) == events[:0:-1]

    async def test_list_deliveries_newest_first_with_limit(self, storage: Storage) -> None:
        workspace, primary = await new_workspace(storage)
        endpoint = make_endpoint(workspace.id)
        await storage.create_webhook_endpoint(endpoint)
        events = [invitation_event(workspace.id, when=at(seconds=i)) for i in range(3)]
        await storage.create_submission(make_submission(workspace.id, primary.id), events=events)
        deliveries = await storage.list_deliveries(endpoint.endpoint.id)
        assert [d.event_id for d in deliveries] == [e.id for e in events[::-1]]
        limited = await storage.list_deliveries(endpoint.endpoint.id, limit=1)
        assert [d.event_id for d in limited] == [events[-1].id]

    async def test_webhook_endpoints_round_trip_and_isolation(self, storage: Storage) -> None:
        workspace, _ = await new_workspace(storage)
        other, _ = await new_workspace(storage)
        first = make_endpoint(workspace.id, when=at(seconds=1))
        second = make_endpoint(workspace.id, events=("clip.uploaded",), when=at(seconds=2))
        for record in (first, second, make_endpoint(other.id, when=at(seconds=3))):
            await storage.create_webhook_endpoint(record)
        assert await storage.get_webhook_endpoint(workspace.id, first.endpoint.id) == first
        assert await storage.get_webhook_endpoint(other.id, first.endpoint.id) is None
        assert await storage.list_webhook_endpoints(workspace.id) == [second, first]

    async def test_update_webhook_endpoint(self, storage: Storage) -> None:
        workspace, _ = await new_workspace(storage)
        other, _ = await new_workspace(storage)
        record = make_endpoint(workspace.id)
        await storage.create_webhook_endpoint(record)
        changed = msgspec.structs.replace(
            record,
            endpoint=msgspec.structs.replace(
                record.endpoint,
                url="https://hooks.example.com/new",
                events=("clip.uploaded",),
                active=False,
                disabled_reason="auto",
                failure_count=7,
                first_failure_at=at(hours=1),
                last_status_code=503,
                last_attempt_at=at(hours=2),
                auto_disabled_at=at(hours=2),
            ),
            previous_secret_ciphertext=record.secret_ciphertext,
            previous_secret_expires_at=at(days=1),
            secret_ciphertext="new-secret",
        )
        await storage.update_webhook_endpoint(changed)
        assert await storage.get_webhook_endpoint(workspace.id, record.endpoint.id) == changed
        # The record names its workspace: another workspace cannot overwrite the endpoint.
        hijack = msgspec.structs.replace(
            changed,
            workspace_id=other.id,
            endpoint=msgspec.structs.replace(changed.endpoint, url="https://evil.example.com/"),
        )
        await storage.update_webhook_endpoint(hijack)
        assert await storage.get_webhook_endpoint(workspace.id, record.endpoint.id) == changed
        assert await storage.get_webhook_endpoint(other.id, record.endpoint.id) is None

    async def test_delete_webhook_endpoint_drops_what_it_still_had(self, storage: Storage) -> None:
        workspace, primary = await new_workspace(storage)
        other, _ = await new_workspace(storage)
        active = make_endpoint(workspace.id)
        held = make_endpoint(workspace.id, active=False, disabled_reason="auto")
        kept = make_endpoint(workspace.id)
        for record in (active, held, kept):
            await storage.create_webhook_endpoint(record)
        event = invitation_event(workspace.id)
        await storage.create_submission(make_submission(workspace.id, primary.id), events=[event])

        assert await storage.delete_webhook_endpoint(other.id, active.endpoint.id) is False
        assert await storage.get_webhook_endpoint(workspace.id, active.endpoint.id) == active
        assert [d.status for d in await storage.list_deliveries(active.endpoint.id)] == ["pending"]

        assert await storage.delete_webhook_endpoint(workspace.id, active.endpoint.id) is True
        assert await storage.delete_webhook_endpoint(workspace.id, held.endpoint.id) is True
        for record in (active, held):
            deliveries = await storage.list_deliveries(record.endpoint.id)
            assert [(d.status, d.next_attempt_at) for d in deliveries] == [("dropped", None)]
            assert await storage.get_webhook_endpoint(workspace.id, record.endpoint.id) is None
        assert [d.status for d in await storage.list_deliveries(kept.endpoint.id)] == ["pending"]
        assert await storage.list_webhook_endpoints(workspace.id) == [kept]
        assert await storage.delete_webhook_endpoint(workspace.id, active.endpoint.id) is False
        assert await storage.delete_webhook_endpoint(workspace.id, new_id("we", T0)) is False

        # A deleted endpoint receives nothing new.
        later = invitation_event(workspace.id, when=at(seconds=1))
        await storage.create_submission(
            make_submission(workspace.id, primary.id, email="b@example.com", when=at(seconds=1)),
            events=[later],
        )
        assert len(await storage.list_deliveries(active.endpoint.id)) == 1
        assert len(await storage.list_deliveries(kept.endpoint.id)) == 2

    # -- the invitation email throttle -----------------------------------------------------------
    async def test_queue_invitation_email_is_throttled(self, storage: Storage) -> None:
        workspace, primary = await new_workspace(storage)
        submission = make_submission(workspace.id, primary.id, email_requested_at=T0)
        await storage.create_submission(submission, jobs=[invitation_email_job(submission, T0)])
        window = timedelta(minutes=10)

        soon = at(minutes=5)
        refused = await storage.queue_invitation_email(
            submission.id,
            invitation_email_job(submission, soon),
            requested_at=soon,
            not_since=soon - window,
        )
        assert refused is False
        edge = T0 + window  # requested exactly at not_since still counts as recent
        assert not await storage.queue_invitation_email(
            submission.id, invitation_email_job(submission, edge), requested_at=edge, not_since=T0
        )
        assert len(await storage.list_jobs(submission.id)) == 1
        assert await storage.get_submission(workspace.id, submission.id) == submission

        later = at(minutes=11)
        job = invitation_email_job(submission, later)
        accepted = await storage.queue_invitation_email(
            submission.id, job, requested_at=later, not_since=later - window
        )
        assert accepted is True
        assert (await storage.list_jobs(submission.id))[-1] == job
        stored = await storage.get_submission(workspace.id, submission.id)
        assert stored is not None
        assert stored.email_requested_at == later
        assert stored.invitation_email.status == "queued"
        assert stored.invitation_email.error is None

    async def test_queue_invitation_email_for_a_link_only_submission(
        self, storage: Storage
    ) -> None:
        workspace, primary = await new_workspace(storage)
        submission = make_submission(workspace.id, primary.id)  # never emailed
        await storage.create_submission(submission)
        job = invitation_email_job(submission, T0)
        assert await storage.queue_invitation_email(
            submission.id, job, requested_at=T0, not_since=at(minutes=-10)
        )
        assert await storage.list_jobs(submission.id) == [job]
        stored = await storage.get_submission(workspace.id, submission.id)
        assert stored is not None
        assert (stored.invitation_email.status, stored.email_requested_at) == ("queued", T0)

    async def test_queue_invitation_email_clears_a_failure(self, storage: Storage) -> None:
        workspace, primary = await new_workspace(storage)
        submission = make_submission(workspace.id, primary.id, email_requested_at=T0)
        job = invitation_email_job(submission, T0)
        await storage.create_submission(submission, jobs=[job])
        [claimed] = await storage.claim_jobs(
            now=T0, worker_id="w1", lease_until=at(minutes=5), limit=1
        )
        failed = InvitationEmail(status="failed", error="550 mailbox unavailable")
        assert await storage.finish_job(
            claimed.id,
            worker_id="w1",
            outcome="failed",
            at=at(minutes=1),
            error="550",
            invitation_email=failed,
        )
        later = at(hours=1)
        assert await storage.queue_invitation_email(
            submission.id,
            invitation_email_job(submission, later),
            requested_at=later,
            not_since=later - timedelta(minutes=10),
        )
        stored = await storage.get_submission(workspace.id, submission.id)
        assert stored is not None
        assert (stored.invitation_email.status, stored.invitation_email.error) == ("queued", None)

    async def test_queue_invitation_email_for_unknown_submission(self, storage: Storage) -> None:
        workspace, primary = await new_workspace(storage)
        ghost = make_submission(workspace.id, primary.id)
        queued = await storage.queue_invitation_email(
            ghost.id, invitation_email_job(ghost, T0), requested_at=T0, not_since=at(minutes=-10)
        )
        assert queued is False
        assert await storage.list_jobs(ghost.id) == []

    # -- jobs ------------------------------------------------------------------------------------
    async def test_claim_respects_run_at(self, storage: Storage) -> None:
        workspace, _ = await new_workspace(storage)
        job = make_job(workspace.id, "sub_subject", run_at=at(minutes=1), payload={"n": [1, "x"]})
        await self._add_jobs(storage, workspace.id, [job])
        assert (
            await storage.claim_jobs(now=T0, worker_id="w1", lease_until=at(minutes=5), limit=10)
            == []
        )
        claimed = await storage.claim_jobs(
            now=at(minutes=1), worker_id="w1", lease_until=at(minutes=6), limit=10
        )
        assert claimed == [msgspec.structs.replace(job, status="running", attempts=1)]
        assert await storage.list_jobs("sub_subject") == claimed

    async def test_claim_takes_the_oldest_due_jobs_up_to_the_limit(self, storage: Storage) -> None:
        workspace, _ = await new_workspace(storage)
        jobs = [
            make_job(workspace.id, "sub_a", run_at=at(seconds=-1), when=at(seconds=-9)),
            make_job(workspace.id, "sub_a", run_at=at(seconds=-3), when=at(seconds=-8)),
            make_job(workspace.id, "sub_a", run_at=at(seconds=-2), when=at(seconds=-7)),
        ]
        await self._add_jobs(storage, workspace.id, jobs)
        claimed = await storage.claim_jobs(
            now=T0, worker_id="w1", lease_until=at(minutes=5), limit=2
        )
        assert [job.id for job in claimed] == [jobs[1].id, jobs[2].id]
        rest = await storage.claim_jobs(now=T0, worker_id="w2", lease_until=at(minutes=5), limit=2)
        assert [job.id for job in rest] == [jobs[0].id]

    async def test_a_lease_prevents_a_second_claim_until_it_expires(self, storage: Storage) -> None:
        workspace, _ = await new_workspace(storage)
        job = make_job(workspace.id, "sub_subject")
        await self._add_jobs(storage, workspace.id, [job])
        [first] = await storage.claim_jobs(
            now=T0, worker_id="w1", lease_until=at(minutes=5), limit=10
        )
        assert first.attempts == 1
        assert (
            await storage.claim_jobs(
                now=at(minutes=4), worker_id="w2", lease_until=at(minutes=9), limit=10
            )
            == []
        )
        [second] = await storage.claim_jobs(
            now=at(minutes=6), worker_id="w2", lease_until=at(minutes=11), limit=10
        )
        assert (second.id, second.status, second.attempts) == (job.id, "running", 2)
        # The first worker lost its lease: its result is not recorded.
        assert not await storage.finish_job(
            job.id, worker_id="w1", outcome="succeeded", at=at(minutes=7)
        )
        assert (await storage.list_jobs("sub_subject"))[0].status == "running"
        assert await storage.finish_job(
            job.id, worker_id="w2", outcome="succeeded", at=at(minutes=8)
        )

    async def test_a_renewed_lease_keeps_a_long_job_from_a_second_worker(
        self, storage: Storage
    ) -> None:
        workspace, _ = await new_workspace(storage)
        job = make_job(workspace.id, "rnd_subject")
        await self._add_jobs(storage, workspace.id, [job])
        await storage.claim_jobs(now=T0, worker_id="w1", lease_until=at(minutes=5), limit=10)
        assert not await storage.extend_job_lease(
            job.id, worker_id="intruder", lease_until=at(minutes=30)
        )
        assert await storage.extend_job_lease(job.id, worker_id="w1", lease_until=at(minutes=9))
        assert (
            await storage.claim_jobs(
                now=at(minutes=6), worker_id="w2", lease_until=at(minutes=11), limit=10
            )
            == []
        )
        assert await storage.finish_job(
            job.id, worker_id="w1", outcome="succeeded", at=at(minutes=8)
        )
        assert not await storage.extend_job_lease(
            job.id, worker_id="w1", lease_until=at(minutes=20)
        )

    async def test_concurrent_claims_hand_each_job_to_one_worker(self, storage: Storage) -> None:
        workspace, _ = await new_workspace(storage)
        jobs = [make_job(workspace.id, f"sub_{i}", when=at(milliseconds=i)) for i in range(20)]
        await self._add_jobs(storage, workspace.id, jobs)
        claimed: list[Job] = []

        async def claim(worker: int) -> None:
            claimed.extend(
                await storage.claim_jobs(
                    now=T0, worker_id=f"w{worker}", lease_until=at(minutes=5), limit=3
                )
            )

        async with anyio.create_task_group() as group:
            for worker in range(10):
                group.start_soon(claim, worker)
        assert sorted(job.id for job in claimed) == sorted(job.id for job in jobs)

    async def test_finish_job_by_another_worker_writes_nothing(self, storage: Storage) -> None:
        workspace, primary = await new_workspace(storage)
        submission = make_submission(workspace.id, primary.id, email_requested_at=T0)
        job = invitation_email_job(submission, T0)
        await storage.create_submission(submission, jobs=[job])
        await storage.create_webhook_endpoint(make_endpoint(workspace.id))
        assert not await storage.finish_job(  # not claimed yet
            job.id, worker_id="w1", outcome="succeeded", at=T0
        )
        await storage.claim_jobs(now=T0, worker_id="w1", lease_until=at(minutes=5), limit=1)
        finished = await storage.finish_job(
            job.id,
            worker_id="intruder",
            outcome="succeeded",
            at=at(minutes=1),
            invitation_email=InvitationEmail(status="sent", sent_at=at(minutes=1)),
            events=[invitation_event(workspace.id, when=at(minutes=1))],
        )
        assert finished is False
        assert [(j.status, j.finished_at) for j in await storage.list_jobs(submission.id)] == [
            ("running", None)
        ]
        assert await storage.get_submission(workspace.id, submission.id) == submission
        assert await storage.list_events(workspace.id) == []
        assert not await storage.finish_job(
            new_id("job", T0), worker_id="w1", outcome="succeeded", at=T0
        )

    async def test_retry_requeues_at_retry_at(self, storage: Storage) -> None:
        workspace, _ = await new_workspace(storage)
        job = make_job(workspace.id, "sub_subject")
        await self._add_jobs(storage, workspace.id, [job])
        await storage.claim_jobs(now=T0, worker_id="w1", lease_until=at(minutes=5), limit=1)
        assert await storage.finish_job(
            job.id,
            worker_id="w1",
            outcome="retry",
            at=at(seconds=1),
            error="ConnectionError: refused",
            retry_at=at(seconds=31),
        )
        [requeued] = await storage.list_jobs("sub_subject")
        assert requeued == msgspec.structs.replace(
            job, attempts=1, run_at=at(seconds=31), last_error="ConnectionError: refused"
        )
        # The old lease is gone: the worker cannot finish the job a second time.
        assert not await storage.finish_job(job.id, worker_id="w1", outcome="succeeded", at=T0)
        assert (
            await storage.claim_jobs(
                now=at(seconds=30), worker_id="w1", lease_until=at(minutes=5), limit=1
            )
            == []
        )
        [again] = await storage.claim_jobs(
            now=at(seconds=31), worker_id="w2", lease_until=at(minutes=5), limit=1
        )
        assert (again.status, again.attempts) == ("running", 2)

    async def test_success_applies_the_email_state_and_events(self, storage: Storage) -> None:
        workspace, primary = await new_workspace(storage)
        endpoint = make_endpoint(workspace.id)
        await storage.create_webhook_endpoint(endpoint)
        submission = make_submission(workspace.id, primary.id, email_requested_at=T0)
        job = invitation_email_job(submission, T0)
        await storage.create_submission(submission, jobs=[job])
        await storage.claim_jobs(now=T0, worker_id="w1", lease_until=at(minutes=5), limit=1)
        done_at = at(seconds=2)
        event = invitation_event(workspace.id, when=done_at)
        assert await storage.finish_job(
            job.id,
            worker_id="w1",
            outcome="succeeded",
            at=done_at,
            invitation_email=InvitationEmail(status="sent", sent_at=done_at),
            events=[event],
        )
        [finished] = await storage.list_jobs(submission.id)
        assert finished == msgspec.structs.replace(
            job, status="succeeded", attempts=1, finished_at=done_at
        )
        stored = await storage.get_submission(workspace.id, submission.id)
        assert stored == msgspec.structs.replace(
            submission,
            invitation_email=InvitationEmail(status="sent", sent_at=done_at),
            updated_at=done_at,
        )
        assert await storage.list_events(workspace.id) == [event]
        assert [d.event_id for d in await storage.list_deliveries(endpoint.endpoint.id)] == [
            event.id
        ]
        assert not await storage.finish_job(job.id, worker_id="w1", outcome="failed", at=done_at)

    async def test_failure_is_final(self, storage: Storage) -> None:
        workspace, _ = await new_workspace(storage)
        job = make_job(workspace.id, "sub_subject")
        await self._add_jobs(storage, workspace.id, [job])
        await storage.claim_jobs(now=T0, worker_id="w1", lease_until=at(minutes=5), limit=1)
        assert await storage.finish_job(
            job.id, worker_id="w1", outcome="failed", at=at(seconds=1), error="gave up"
        )
        [failed] = await storage.list_jobs("sub_subject")
        assert (failed.status, failed.last_error, failed.finished_at) == (
            "failed",
            "gave up",
            at(seconds=1),
        )
        assert (
            await storage.claim_jobs(
                now=at(days=1), worker_id="w2", lease_until=at(days=2), limit=10
            )
            == []
        )

    async def test_list_jobs_oldest_first_per_subject(self, storage: Storage) -> None:
        workspace, _ = await new_workspace(storage)
        jobs = [make_job(workspace.id, "sub_a", when=at(seconds=i)) for i in range(3)]
        await self._add_jobs(storage, workspace.id, [*jobs[::-1], make_job(workspace.id, "sub_b")])
        assert await storage.list_jobs("sub_a") == jobs
        assert await storage.list_jobs("sub_none") == []

    async def test_returned_jobs_cannot_change_stored_state(self, storage: Storage) -> None:
        workspace, _ = await new_workspace(storage)
        job = make_job(workspace.id, "sub_subject", payload={"attempt": {"n": 1}})
        await self._add_jobs(storage, workspace.id, [job])
        [listed] = await storage.list_jobs("sub_subject")
        listed.payload["attempt"]["n"] = 99
        [claimed] = await storage.claim_jobs(
            now=T0, worker_id="w1", lease_until=at(minutes=1), limit=1
        )
        assert claimed.payload == {"attempt": {"n": 1}}

    @staticmethod
    async def _add_jobs(storage: Storage, workspace_id: str, jobs: list[Job]) -> None:
        """Store jobs through the one Storage method that takes arbitrary ones."""
        collector = make_collector(when=T0)
        await storage.create_collector(workspace_id, collector)
        carrier = make_submission(workspace_id, collector.id, email="jobs@example.com")
        await storage.create_submission(carrier, jobs=jobs)

    # -- idempotency -----------------------------------------------------------------------------
    @staticmethod
    def _key(workspace_id: str, fingerprint: str, *, when: datetime = T0) -> IdempotencyRecord:
        return IdempotencyRecord(
            workspace_id=workspace_id,
            key="order-42",
            fingerprint=fingerprint,
            created_at=when,
            expires_at=when + timedelta(hours=24),
        )

    async def test_begin_claims_then_returns_the_in_flight_record(self, storage: Storage) -> None:
        workspace, _ = await new_workspace(storage)
        first = self._key(workspace.id, "a" * 64)
        assert await storage.begin_idempotent_request(first) is None
        held = await storage.begin_idempotent_request(
            self._key(workspace.id, "b" * 64, when=at(seconds=1))
        )
        assert held == first
        assert held is not None and held.in_flight
        other, _ = await new_workspace(storage)
        assert await storage.begin_idempotent_request(self._key(other.id, "c" * 64)) is None

    async def test_complete_stores_the_response(self, storage: Storage) -> None:
        workspace, _ = await new_workspace(storage)
        first = self._key(workspace.id, "a" * 64)
        await storage.begin_idempotent_request(first)
        body = b'{"ok":true,"link":"https://example.com/r/x"}'
        await storage.complete_idempotent_request(workspace.id, "order-42", status=201, body=body)
        replay = await storage.begin_idempotent_request(
            self._key(workspace.id, "a" * 64, when=at(hours=1))
        )
        assert replay == msgspec.structs.replace(first, response_status=201, response_body=body)
        assert replay is not None and not replay.in_flight

    async def test_an_expired_record_can_be_reclaimed(self, storage: Storage) -> None:
        workspace, _ = await new_workspace(storage)
        await storage.begin_idempotent_request(self._key(workspace.id, "a" * 64))
        await storage.complete_idempotent_request(workspace.id, "order-42", status=200, body=b"{}")
        still_live = at(hours=24, milliseconds=-1)
        assert (
            await storage.begin_idempotent_request(
                self._key(workspace.id, "b" * 64, when=still_live)
            )
            is not None
        )
        expired = at(hours=24)
        fresh = self._key(workspace.id, "b" * 64, when=expired)
        assert await storage.begin_idempotent_request(fresh) is None
        assert (
            await storage.begin_idempotent_request(
                self._key(workspace.id, "c" * 64, when=at(hours=25))
            )
            == fresh
        )

    async def test_release_forgets_only_unfinished_keys(self, storage: Storage) -> None:
        workspace, _ = await new_workspace(storage)
        await storage.begin_idempotent_request(self._key(workspace.id, "a" * 64))
        await storage.release_idempotent_request(workspace.id, "order-42")
        retry = self._key(workspace.id, "b" * 64, when=at(seconds=1))
        assert await storage.begin_idempotent_request(retry) is None

        await storage.complete_idempotent_request(workspace.id, "order-42", status=201, body=b"{}")
        await storage.release_idempotent_request(workspace.id, "order-42")
        kept = await storage.begin_idempotent_request(
            self._key(workspace.id, "c" * 64, when=at(seconds=2))
        )
        assert kept == msgspec.structs.replace(retry, response_status=201, response_body=b"{}")
        await storage.release_idempotent_request(workspace.id, "never-used")  # no error
