"""Invitation emails are durable jobs: sent in the background, retried with backoff, visible."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from ravepilot_core import InvitationRequest, RavePilot
from ravepilot_core.jobs import JOB_BACKOFF
from ravepilot_core.testing import FrozenClock, MemoryMailer, MemoryStorage

pytestmark = pytest.mark.anyio


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def mailer() -> MemoryMailer:
    return MemoryMailer()


@pytest.fixture
async def ravepilot(clock: FrozenClock, mailer: MemoryMailer) -> RavePilot:
    return RavePilot(
        storage=MemoryStorage(),
        mailer=mailer,
        secret_key="s" * 40,
        clock=clock,
        public_url="https://reviews.acme.test",
    )


async def test_a_failing_mailer_is_retried_with_backoff_then_succeeds(
    ravepilot: RavePilot, clock: FrozenClock, mailer: MemoryMailer
) -> None:
    workspace = await ravepilot.workspaces.create("acme", "Acme")
    result = await ravepilot.invitations.create(
        workspace.id, InvitationRequest(customer_email="ann@example.com", customer_name="Ann")
    )
    worker = ravepilot.worker()
    mailer.fail_next(2)

    assert await worker.run_due() == 1  # attempt 1 fails
    submission = await ravepilot.submissions.get(workspace.id, result.submission.id)
    assert submission.invitation_email.status == "queued"
    assert "ConnectionError" in (submission.invitation_email.error or "")

    assert await worker.run_due() == 0, "not due before the first backoff delay"
    clock.advance(JOB_BACKOFF[0] * 1.11)
    assert await worker.run_due() == 1  # attempt 2 fails
    clock.advance(JOB_BACKOFF[0] * 1.11)
    assert await worker.run_due() == 0, "the second delay is longer than the first"
    clock.advance(JOB_BACKOFF[1] * 1.11)
    assert await worker.run_due() == 1  # attempt 3 succeeds

    submission = await ravepilot.submissions.get(workspace.id, result.submission.id)
    assert submission.invitation_email.status == "sent"
    assert submission.invitation_email.sent_at == clock.now()
    assert len(mailer.sent) == 1
    email = mailer.sent[0]
    assert email.to == "ann@example.com"
    assert "Acme" in email.subject
    assert result.link in email.text and result.link in email.html
    assert "Hi Ann," in email.text
    assert email.headers["X-RavePilot-Link"] == result.link
    (job,) = await ravepilot.storage.list_jobs(result.submission.id)
    assert job.status == "succeeded" and job.attempts == 3


async def test_an_email_that_never_goes_out_ends_failed(
    ravepilot: RavePilot, clock: FrozenClock, mailer: MemoryMailer
) -> None:
    workspace = await ravepilot.workspaces.create("acme")
    result = await ravepilot.invitations.create(
        workspace.id, InvitationRequest(customer_email="bob@example.com")
    )
    mailer.fail_next(100)
    worker = ravepilot.worker()
    for _ in range(8):
        assert await worker.run_due() == 1
        clock.advance(timedelta(hours=5))
    assert await worker.run_due() == 0
    submission = await ravepilot.submissions.get(workspace.id, result.submission.id)
    assert submission.invitation_email.status == "failed"
    assert mailer.sent == []


async def test_resend_is_throttled_for_ten_minutes(
    ravepilot: RavePilot, clock: FrozenClock, mailer: MemoryMailer
) -> None:
    workspace = await ravepilot.workspaces.create("acme")
    request = InvitationRequest(customer_email="cy@example.com")
    first = await ravepilot.invitations.create(workspace.id, request)
    worker = ravepilot.worker()
    await worker.run_due()

    clock.advance(minutes=9, seconds=59)
    again = await ravepilot.invitations.create(workspace.id, request)
    assert again.reused and again.link == first.link
    assert await worker.run_due() == 0
    assert len(mailer.sent) == 1

    clock.advance(seconds=1, milliseconds=1)  # the window includes its start
    later = await ravepilot.invitations.create(workspace.id, request)
    assert later.submission.invitation_email.status == "queued"
    assert await worker.run_due() == 1
    assert len(mailer.sent) == 2
    assert len(await ravepilot.storage.list_jobs(first.submission.id)) == 2


async def test_a_link_without_email_queues_nothing(
    ravepilot: RavePilot, mailer: MemoryMailer
) -> None:
    workspace = await ravepilot.workspaces.create("acme")
    result = await ravepilot.invitations.create(
        workspace.id, InvitationRequest(customer_email="dee@example.com", send_email=False)
    )
    assert result.submission.invitation_email.status == "not_sent"
    assert await ravepilot.worker().run_due() == 0
    assert await ravepilot.storage.list_jobs(result.submission.id) == []


async def test_the_running_worker_is_woken_by_a_commit(
    ravepilot: RavePilot, mailer: MemoryMailer
) -> None:
    """No waiting for the poll interval: creating the invitation wakes the worker."""
    workspace = await ravepilot.workspaces.create("acme")
    async with anyio.create_task_group() as group:
        group.start_soon(ravepilot.worker(poll_interval=60).run)
        await anyio.sleep(0.05)  # the worker is now asleep, waiting for work
        with anyio.fail_after(5):
            await ravepilot.invitations.create(
                workspace.id, InvitationRequest(customer_email="eve@example.com")
            )
            while not mailer.sent:
                await anyio.sleep(0.01)
        group.cancel_scope.cancel()
    assert mailer.sent[0].to == "eve@example.com"


async def disable_an_endpoint(ravepilot: RavePilot, workspace_id: str) -> str:
    """Register an endpoint and have a 410 disable it, as the worker records it."""
    from ravepilot_core.mail import webhook_disabled_job
    from ravepilot_core.models import DeliveryAttempt, DeliveryResult
    from ravepilot_core.webhooks import NewWebhookEndpoint

    ravepilot.context.allow_private_webhooks = True
    endpoint, _ = await ravepilot.webhooks.create(
        workspace_id, NewWebhookEndpoint(url="https://hooks.acme.test/rp")
    )
    delivery = await ravepilot.webhooks.test(workspace_id, endpoint.id)
    now = ravepilot.context.clock.now()
    [task] = await ravepilot.storage.claim_deliveries(
        now=now, worker_id="w", lease_until=now + timedelta(minutes=1), limit=1
    )
    gone = DeliveryResult(
        delivery_id=delivery.id,
        endpoint_id=endpoint.id,
        outcome="failed",
        attempt=DeliveryAttempt(number=1, at=now, status_code=410, error="HTTP 410"),
        gone=True,
    )
    await ravepilot.storage.record_delivery_results(
        [gone], worker_id="w", at=now, disable_threshold=25, disable_notice=webhook_disabled_job
    )
    assert task.delivery_id == delivery.id
    return endpoint.id


async def test_a_disabled_endpoint_is_reported_to_the_notify_email(
    ravepilot: RavePilot, mailer: MemoryMailer
) -> None:
    workspace = await ravepilot.workspaces.create("acme", "Acme", notify_email="ops@acme.com")
    endpoint_id = await disable_an_endpoint(ravepilot, workspace.id)
    assert await ravepilot.worker().jobs.run_due() == 1
    [email] = mailer.sent
    assert email.to == "ops@acme.com"
    assert email.subject == "Webhook endpoint disabled: https://hooks.acme.test/rp"
    assert "410 Gone" in email.text
    assert f"PATCH /v1/webhooks/{endpoint_id}" in email.text
    assert f"/v1/webhooks/{endpoint_id}/recover" in email.text
    [job] = await ravepilot.storage.list_jobs(endpoint_id)
    assert job.status == "succeeded"


async def test_without_a_notify_email_the_notice_is_logged(
    ravepilot: RavePilot, mailer: MemoryMailer, caplog: pytest.LogCaptureFixture
) -> None:
    workspace = await ravepilot.workspaces.create("acme", "Acme")
    endpoint_id = await disable_an_endpoint(ravepilot, workspace.id)
    assert await ravepilot.worker().jobs.run_due() == 1
    assert mailer.sent == []
    assert "ravepilot workspaces update acme --notify-email" in caplog.text
    [job] = await ravepilot.storage.list_jobs(endpoint_id)
    assert job.status == "succeeded"
