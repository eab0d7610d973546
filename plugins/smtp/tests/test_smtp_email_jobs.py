"""End to end with the email job: 4xx and lost connections retry, 5xx fails the email at once."""

from __future__ import annotations

import pytest
from conftest import StartServer
from smtp_servers import free_port

from ravepilot_core import InvitationRequest, RavePilot
from ravepilot_core.jobs import JOB_BACKOFF
from ravepilot_core.models import InvitationEmail
from ravepilot_core.testing import FrozenClock, MemoryStorage
from ravepilot_smtp import open_smtp_mailer

pytestmark = pytest.mark.anyio


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


async def invite(ravepilot: RavePilot, email: str) -> tuple[str, str]:
    """Invite ``email``; return the workspace and submission ids."""
    workspace = await ravepilot.workspaces.create("acme", "Acme")
    result = await ravepilot.invitations.create(
        workspace.id, InvitationRequest(customer_email=email, customer_name="Ann")
    )
    return workspace.id, result.submission.id


async def email_state(ravepilot: RavePilot, ids: tuple[str, str]) -> InvitationEmail:
    return (await ravepilot.submissions.get(*ids)).invitation_email


def ravepilot_sending_to(url: str, clock: FrozenClock) -> RavePilot:
    """A RavePilot whose mailer is the SMTP one; ``async with`` it to close the mailer after."""
    return RavePilot(
        storage=MemoryStorage(),
        mailer=open_smtp_mailer(url),
        secret_key="s" * 40,
        clock=clock,
        public_url="https://reviews.acme.test",
    )


async def test_a_4xx_is_retried_after_the_backoff_then_sent(
    start_server: StartServer, clock: FrozenClock
) -> None:
    server = start_server("starttls")
    server.recorder.rcpt_replies.append("451 4.3.0 try later")
    async with ravepilot_sending_to(server.url(), clock) as ravepilot:
        ids = await invite(ravepilot, "ann@example.com")
        worker = ravepilot.worker()

        assert await worker.run_due() == 1
        state = await email_state(ravepilot, ids)
        assert state.status == "queued"
        assert "451 4.3.0 try later" in (state.error or "")
        assert server.recorder.deliveries == []

        clock.advance(JOB_BACKOFF[0] * 1.11)
        assert await worker.run_due() == 1
        state = await email_state(ravepilot, ids)
        assert state.status == "sent" and state.sent_at == clock.now()
        (delivery,) = server.recorder.deliveries
        assert delivery.rcpt_tos == ["ann@example.com"]
        assert b"Acme would love to hear from you" in delivery.raw


async def test_a_5xx_fails_the_email_at_once_with_the_servers_reason(
    start_server: StartServer, clock: FrozenClock
) -> None:
    server = start_server("starttls")
    server.recorder.rcpt_replies.append("550 5.1.1 mailbox unavailable")
    async with ravepilot_sending_to(server.url(), clock) as ravepilot:
        ids = await invite(ravepilot, "gone@example.com")
        worker = ravepilot.worker()

        assert await worker.run_due() == 1
        state = await email_state(ravepilot, ids)
        assert state.status == "failed"
        assert "550 5.1.1 mailbox unavailable" in (state.error or "")
        assert "gone@example.com" in (state.error or "")
        (job,) = await ravepilot.storage.list_jobs(ids[1])
        assert job.status == "failed" and job.attempts == 1

        clock.advance(hours=10)
        assert await worker.run_due() == 0, "a refused email is never tried again"
        assert server.recorder.deliveries == []


async def test_no_server_listening_is_retried(clock: FrozenClock) -> None:
    port = free_port()
    async with ravepilot_sending_to(f"smtp://127.0.0.1:{port}?tls=none", clock) as ravepilot:
        ids = await invite(ravepilot, "ann@example.com")
        worker = ravepilot.worker()
        assert await worker.run_due() == 1
        state = await email_state(ravepilot, ids)
        assert state.status == "queued"
        assert f"127.0.0.1:{port}" in (state.error or "")
        (job,) = await ravepilot.storage.list_jobs(ids[1])
        assert job.status == "queued" and job.attempts == 1


async def test_a_batch_of_invitations_goes_out_over_reused_sessions(
    start_server: StartServer, clock: FrozenClock
) -> None:
    server = start_server("starttls")
    async with ravepilot_sending_to(server.url(), clock) as ravepilot:
        workspace = await ravepilot.workspaces.create("acme", "Acme")
        for number in range(12):
            await ravepilot.invitations.create(
                workspace.id, InvitationRequest(customer_email=f"c{number}@example.com")
            )
        assert await ravepilot.worker().run_due() == 12
    assert len(server.recorder.deliveries) == 12
    assert len(server.recorder.connections) <= 4  # the worker's concurrency, not one per email
    assert server.recorder.quits == len(server.recorder.connections), "closed with QUIT"
