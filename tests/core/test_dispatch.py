"""Webhook delivery end to end: real receivers on loopback, a real SQLite file, a frozen clock.

Every way a receiver can answer (or not) is checked against the contract in ``api.md``
("Delivery"): a 2xx within the timeout is a success, anything else a failed attempt that is
retried 1m → 5m → 30m → 2h → 6h (≤ 10 % jitter, Retry-After honoured up to 6 h), ``failed`` after
the 6th attempt; 410 disables the endpoint at once, 25 consecutive failures disable it too.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web

from ravepilot_core import (
    BackendError,
    Conflict,
    InvalidSignature,
    RavePilot,
    WebhookChanges,
    Workspace,
)
from ravepilot_core.dispatch import Dispatcher, Sender
from ravepilot_core.metrics import Metrics
from ravepilot_core.models import Delivery, WebhookEndpoint
from ravepilot_core.retries import DISABLE_AFTER, RETRY_SCHEDULE
from ravepilot_core.signing import verify_signature, verify_standard_webhook
from ravepilot_core.testing import FrozenClock
from ravepilot_core.webhooks import NewWebhookEndpoint
from ravepilot_core.worker import Worker
from tests.core.dispatch_helpers import (
    Receiver,
    emit,
    open_raw_server,
    open_receiver,
    refused_port,
)
from tests.server.conftest import open_ravepilot

pytestmark = [pytest.mark.anyio, pytest.mark.sqlite]

FIRST_RETRY = RETRY_SCHEDULE[0]
NOTICE_JOB = "email.webhook_disabled"


# -- fixtures and small helpers ------------------------------------------------------------------
@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def rp(tmp_path: Path, clock: FrozenClock) -> AsyncIterator[RavePilot]:
    async with open_ravepilot(tmp_path, clock=clock, allow_private_webhooks=True) as instance:
        yield instance


@pytest.fixture
async def workspace(rp: RavePilot) -> Workspace:
    return await rp.workspaces.create("acme")


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    """Receivers opened in a test are closed when it ends."""
    async with AsyncExitStack() as exits:
        yield exits


async def serve(stack: AsyncExitStack, receiver: Receiver | None = None) -> Receiver:
    return await stack.enter_async_context(open_receiver(receiver))


async def register(
    rp: RavePilot, workspace: Workspace, url: str, events: list[str] | None = None
) -> tuple[WebhookEndpoint, str]:
    spec = NewWebhookEndpoint(url=url, events=events or ["*"])
    return await rp.webhooks.create(workspace.id, spec)


async def deliveries(rp: RavePilot, workspace: Workspace, endpoint_id: str) -> list[Delivery]:
    """The endpoint's deliveries, oldest first."""
    return (await rp.webhooks.deliveries(workspace.id, endpoint_id))[::-1]


async def only_delivery(rp: RavePilot, workspace: Workspace, endpoint_id: str) -> Delivery:
    [delivery] = await deliveries(rp, workspace, endpoint_id)
    return delivery


async def drain(worker: Worker) -> int:
    """Run the dispatcher until nothing is due at the frozen time; return how many were sent."""
    sent = 0
    while count := await worker.dispatcher.run_due():
        sent += count
    return sent


def within_jitter(delay: timedelta, step: timedelta) -> bool:
    return step <= delay <= step * 1.1


def signatures(header: str) -> list[str]:
    return [item for item in header.split(",") if item.startswith("v1=")]


# -- 1. success ----------------------------------------------------------------------------------
async def test_a_2xx_is_a_signed_successful_delivery(
    rp: RavePilot, clock: FrozenClock, workspace: Workspace, stack: AsyncExitStack
) -> None:
    hook = await serve(stack)
    hook.answer(200, b"y" * 5 * 1024)
    endpoint, secret = await register(rp, workspace, hook.url)
    await emit(rp, workspace.id)

    assert await rp.worker().run_due() == 1

    [hit] = hook.hits
    [event] = await rp.storage.list_events(workspace.id)
    assert hit.body == event.payload
    assert json.loads(hit.body)["type"] == "invitation.created"
    assert hit.headers["Content-Type"] == "application/json"
    assert hit.headers["User-Agent"] == f"RavePilot-Webhooks/{version('ravepilot')}"
    assert hit.event == "invitation.created"
    now = clock.now()
    signed_at = verify_signature(hit.body, hit.headers["X-RavePilot-Signature"], secret, now=now)
    assert signed_at == now
    assert len(signatures(hit.headers["X-RavePilot-Signature"])) == 1
    assert verify_standard_webhook(hit.body, hit.headers, secret, now=now) == hit.delivery_id
    assert hit.headers["webhook-id"] == hit.delivery_id
    with pytest.raises(InvalidSignature):  # the check above is a real one
        verify_signature(hit.body + b" ", hit.headers["X-RavePilot-Signature"], secret, now=now)

    delivery = await only_delivery(rp, workspace, endpoint.id)
    assert delivery.id == hit.delivery_id
    detail = await rp.webhooks.delivery(workspace.id, delivery.id)
    assert (detail.status, detail.attempts, detail.response_status, detail.error) == (
        "succeeded",
        1,
        200,
        None,
    )
    assert detail.next_attempt_at is None
    assert detail.last_attempt_at == now
    [attempt] = detail.attempt_log
    assert (attempt.number, attempt.at, attempt.target_ip, attempt.status_code) == (
        1,
        now,
        "127.0.0.1",
        200,
    )
    assert attempt.error is None
    assert attempt.latency_ms is not None and 0 <= attempt.latency_ms < 10_000
    assert detail.latency_ms == attempt.latency_ms
    assert attempt.response_body == "y" * 2048  # only the first 2 KB is kept
    healthy = await rp.webhooks.get(workspace.id, endpoint.id)
    assert (healthy.active, healthy.failure_count, healthy.last_status_code) == (True, 0, 200)
    assert healthy.last_attempt_at == now


async def test_the_log_keeps_the_first_2_kb_even_when_the_body_comes_in_pieces(
    rp: RavePilot, workspace: Workspace, stack: AsyncExitStack
) -> None:
    async def streamed(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        await response.write(b"a" * 100)
        await anyio.sleep(0.05)  # the receiver is still producing its body
        # The sender may hang up once it has read what it logs.
        with contextlib.suppress(ConnectionResetError):
            await response.write(b"b" * 4900)
            await response.write_eof()
        return response

    hook = await serve(stack, Receiver(responder=streamed))
    endpoint, _ = await register(rp, workspace, hook.url)
    await emit(rp, workspace.id)
    await rp.worker().run_due()

    delivery = await only_delivery(rp, workspace, endpoint.id)
    [attempt] = (await rp.webhooks.delivery(workspace.id, delivery.id)).attempt_log
    assert delivery.status == "succeeded"
    assert attempt.response_body == "a" * 100 + "b" * 1948


# -- 2. 5xx: retried on the schedule, then failed ------------------------------------------------
async def test_a_500_is_retried_on_the_schedule_then_failed(
    rp: RavePilot, clock: FrozenClock, workspace: Workspace, stack: AsyncExitStack
) -> None:
    hook = await serve(stack)
    hook.answer(500, b"boom")
    endpoint, secret = await register(rp, workspace, hook.url)
    await emit(rp, workspace.id)
    worker = rp.worker()

    assert await worker.run_due() == 1
    for number, step in enumerate(RETRY_SCHEDULE, start=1):
        delivery = await only_delivery(rp, workspace, endpoint.id)
        assert (delivery.status, delivery.attempts) == ("pending", number)
        assert (delivery.response_status, delivery.error) == (500, "HTTP 500")
        assert delivery.last_attempt_at == clock.now()
        due = delivery.next_attempt_at
        assert due is not None and within_jitter(due - clock.now(), step), (number, due)
        clock.set(due - timedelta(milliseconds=1))
        assert await worker.run_due() == 0, f"attempt {number + 1} was sent early"
        assert len(hook.hits) == number
        clock.set(due)
        assert await worker.run_due() == 1
        assert len(hook.hits) == number + 1
        # Each retry is signed when it is sent, so receivers' freshness checks accept it.
        hit = hook.hits[-1]
        signed = verify_signature(hit.body, hit.headers["X-RavePilot-Signature"], secret, now=due)
        assert signed == due.replace(microsecond=0)

    delivery = await only_delivery(rp, workspace, endpoint.id)
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 6, None)
    assert hook.delivery_ids() == [delivery.id] * 6  # the same id on every retry
    detail = await rp.webhooks.delivery(workspace.id, delivery.id)
    assert [(a.number, a.status_code, a.response_body) for a in detail.attempt_log] == [
        (n, 500, "boom") for n in range(1, 7)
    ]
    clock.advance(days=3)
    assert await worker.run_due() == 0
    assert len(hook.hits) == 6
    after = await rp.webhooks.get(workspace.id, endpoint.id)
    assert (after.active, after.failure_count, after.last_status_code) == (True, 6, 500)


async def test_retry_delays_are_jittered_within_ten_percent(
    rp: RavePilot, clock: FrozenClock, workspace: Workspace, stack: AsyncExitStack
) -> None:
    hook = await serve(stack)
    hook.answer(503)
    endpoint, _ = await register(rp, workspace, hook.url)
    await emit(rp, workspace.id, 20)
    assert await rp.worker().run_due() == 20

    delays = []
    for delivery in await deliveries(rp, workspace, endpoint.id):
        assert delivery.status == "pending" and delivery.next_attempt_at is not None
        delays.append(delivery.next_attempt_at - clock.now())
    assert all(within_jitter(delay, FIRST_RETRY) for delay in delays), delays
    assert len(set(delays)) > 1, "every retry got the same delay: no jitter"


# -- 3. Retry-After ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("retry_after", "expected_min", "expected_max"),
    [
        pytest.param(lambda now: "3600", timedelta(hours=1), timedelta(hours=1), id="seconds"),
        pytest.param(
            lambda now: format_datetime(now + timedelta(hours=2), usegmt=True),
            timedelta(hours=2),
            timedelta(hours=2),
            id="http-date",
        ),
        pytest.param(lambda now: "86400", timedelta(hours=6), timedelta(hours=6), id="capped"),
        pytest.param(
            lambda now: format_datetime(now + timedelta(days=3), usegmt=True),
            timedelta(hours=6),
            timedelta(hours=6),
            id="http-date-capped",
        ),
        pytest.param(lambda now: "1", FIRST_RETRY, FIRST_RETRY * 1.1, id="shorter-than-schedule"),
    ],
)
async def test_a_429_retry_after_sets_the_next_attempt(
    rp: RavePilot,
    clock: FrozenClock,
    workspace: Workspace,
    stack: AsyncExitStack,
    retry_after: Callable[[datetime], str],
    expected_min: timedelta,
    expected_max: timedelta,
) -> None:
    hook = await serve(stack)
    hook.answer(429, b"slow down", {"Retry-After": retry_after(clock.now())})
    endpoint, _ = await register(rp, workspace, hook.url)
    await emit(rp, workspace.id)
    worker = rp.worker()
    assert await worker.run_due() == 1

    delivery = await only_delivery(rp, workspace, endpoint.id)
    assert (delivery.status, delivery.response_status, delivery.error) == (
        "pending",
        429,
        "HTTP 429",
    )
    assert delivery.next_attempt_at is not None
    delay = delivery.next_attempt_at - clock.now()
    assert expected_min <= delay <= expected_max, delay
    clock.set(delivery.next_attempt_at - timedelta(milliseconds=1))
    assert await worker.run_due() == 0
    clock.set(delivery.next_attempt_at)
    assert await worker.run_due() == 1
    assert len(hook.hits) == 2


# -- 4. 410 Gone ---------------------------------------------------------------------------------
async def test_a_410_disables_the_endpoint_at_once(
    rp: RavePilot, clock: FrozenClock, workspace: Workspace, stack: AsyncExitStack
) -> None:
    gone_hook, ok_hook = await serve(stack), await serve(stack)
    gone_hook.answer(410, b"no such hook")
    gone, _ = await register(rp, workspace, gone_hook.url)
    ok, _ = await register(rp, workspace, ok_hook.url)
    await emit(rp, workspace.id, 3)
    # One request per endpoint at a time: the other two deliveries are still pending at the 410.
    worker = rp.worker(webhook_per_endpoint=1)
    assert await worker.dispatcher.run_due() == 2

    disabled = await rp.webhooks.get(workspace.id, gone.id)
    assert (disabled.active, disabled.disabled_reason) == (False, "gone")
    assert disabled.auto_disabled_at == clock.now()
    assert disabled.last_status_code == 410
    gone_deliveries = await deliveries(rp, workspace, gone.id)
    [sent] = [d for d in gone_deliveries if d.attempts]
    assert (sent.status, sent.response_status, sent.next_attempt_at) == ("failed", 410, None)
    rest = [(d.status, d.next_attempt_at) for d in gone_deliveries if d is not sent]
    assert rest == [("held", None)] * 2
    [job] = await rp.storage.list_jobs(gone.id)
    assert (job.kind, job.payload) == (NOTICE_JOB, {"reason": "gone"})

    await emit(rp, workspace.id)  # a later event is held for it, and still sent to the other
    clock.advance(days=1)
    await drain(worker)
    assert len(gone_hook.hits) == 1
    statuses = sorted(d.status for d in await deliveries(rp, workspace, gone.id))
    assert statuses == ["failed"] + ["held"] * 3
    assert [d.status for d in await deliveries(rp, workspace, ok.id)] == ["succeeded"] * 4
    assert (await rp.webhooks.get(workspace.id, ok.id)).active is True
    assert len(await rp.storage.list_jobs(gone.id)) == 1


# -- 5. timeout ----------------------------------------------------------------------------------
async def test_a_receiver_slower_than_the_timeout_is_a_failed_attempt(
    rp: RavePilot, clock: FrozenClock, workspace: Workspace, stack: AsyncExitStack
) -> None:
    hook = await serve(stack)
    hook.answer(200, b"too late", delay=5.0)
    endpoint, _ = await register(rp, workspace, hook.url)
    await emit(rp, workspace.id)
    sender = Sender(rp.context, timeout=0.5)
    dispatcher = Dispatcher(rp.context, sender, Metrics())
    try:
        started = time.monotonic()
        assert await dispatcher.run_due() == 1
        elapsed = time.monotonic() - started
    finally:
        await sender.close()

    assert 0.4 <= elapsed < 2.0
    assert len(hook.hits) == 1
    delivery = await only_delivery(rp, workspace, endpoint.id)
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("pending", 1, None)
    assert delivery.error == "timed out after 0.5 s"
    assert delivery.next_attempt_at is not None
    assert within_jitter(delivery.next_attempt_at - clock.now(), FIRST_RETRY)
    [attempt] = (await rp.webhooks.delivery(workspace.id, delivery.id)).attempt_log
    assert attempt.latency_ms is not None and 400 <= attempt.latency_ms < 2000
    assert attempt.status_code is None and attempt.response_body is None
    assert (await rp.webhooks.get(workspace.id, endpoint.id)).failure_count == 1


# -- 6. broken connections -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mode", "expected_error"),
    [
        ("reset", "Connection reset by peer"),
        ("partial_headers", "the server closed the connection before it answered"),
        ("refused", "Connection refused"),
    ],
    ids=["reset", "partial-headers", "refused"],
)
async def test_a_broken_connection_is_a_failed_attempt_retried_later(
    rp: RavePilot, clock: FrozenClock, workspace: Workspace, mode: str, expected_error: str
) -> None:
    async with AsyncExitStack() as exits:
        if mode == "refused":
            port = exits.enter_context(refused_port())
            url, requests = f"http://127.0.0.1:{port}/hook", None
        else:
            raw = await exits.enter_async_context(open_raw_server(mode))
            url, requests = raw.url, raw
        endpoint, _ = await register(rp, workspace, url)
        await emit(rp, workspace.id)
        assert await rp.worker().run_due() == 1
        if requests is not None:
            assert requests.requests == 1  # the request did reach the receiver

    delivery = await only_delivery(rp, workspace, endpoint.id)
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("pending", 1, None)
    assert delivery.error is not None and expected_error in delivery.error, delivery.error
    assert delivery.next_attempt_at is not None
    assert within_jitter(delivery.next_attempt_at - clock.now(), FIRST_RETRY)
    [attempt] = (await rp.webhooks.delivery(workspace.id, delivery.id)).attempt_log
    assert attempt.error == delivery.error and attempt.status_code is None
    assert (await rp.webhooks.get(workspace.id, endpoint.id)).failure_count == 1


async def test_a_2xx_cut_off_mid_body_is_a_failed_attempt(
    rp: RavePilot, clock: FrozenClock, workspace: Workspace
) -> None:
    # The receiver announces 5000 bytes, sends 100 and hangs up: the response is incomplete
    # (RFC 9112 §8), so the receiver's answer was never really had: retry it.
    async with open_raw_server("partial_body") as raw:
        endpoint, _ = await register(rp, workspace, raw.url)
        await emit(rp, workspace.id)
        assert await rp.worker().run_due() == 1
        assert raw.requests == 1

    delivery = await only_delivery(rp, workspace, endpoint.id)
    assert (delivery.status, delivery.attempts) == ("pending", 1), delivery
    assert delivery.error is not None
    assert delivery.next_attempt_at is not None
    assert within_jitter(delivery.next_attempt_at - clock.now(), FIRST_RETRY)


# -- 7. auto-disable after 25 consecutive failures -----------------------------------------------
async def test_25_consecutive_failures_across_deliveries_disable_the_endpoint(
    rp: RavePilot, clock: FrozenClock, workspace: Workspace, stack: AsyncExitStack
) -> None:
    assert DISABLE_AFTER == 25
    hook = await serve(stack)
    hook.answer(500)
    endpoint, _ = await register(rp, workspace, hook.url)
    worker = rp.worker()

    await emit(rp, workspace.id, 12)
    assert await worker.dispatcher.run_due() == 12
    clock.advance(FIRST_RETRY * 1.1)
    assert await worker.dispatcher.run_due() == 12  # the retries count too
    still = await rp.webhooks.get(workspace.id, endpoint.id)
    assert (still.active, still.failure_count) == (True, 24)
    assert await rp.storage.list_jobs(endpoint.id) == []

    await emit(rp, workspace.id)  # the 25th failed attempt
    assert await worker.dispatcher.run_due() == 1
    disabled = await rp.webhooks.get(workspace.id, endpoint.id)
    assert (disabled.active, disabled.disabled_reason) == (False, "auto")
    assert disabled.failure_count == 25
    assert disabled.auto_disabled_at == clock.now()
    statuses = [d.status for d in await deliveries(rp, workspace, endpoint.id)]
    assert statuses == ["held"] * 13  # the retries waiting for their turn are parked too
    [job] = await rp.storage.list_jobs(endpoint.id)
    assert (job.kind, job.payload) == (NOTICE_JOB, {"reason": "auto"})

    await emit(rp, workspace.id, 2)
    clock.advance(days=1)
    await worker.run_due()  # the notice job runs; nothing is sent to the endpoint
    await drain(worker)
    assert len(hook.hits) == 25
    assert [d.status for d in await deliveries(rp, workspace, endpoint.id)] == ["held"] * 15
    assert len(await rp.storage.list_jobs(endpoint.id)) == 1  # exactly one notice


async def test_a_success_resets_the_failure_count(
    rp: RavePilot, workspace: Workspace, stack: AsyncExitStack
) -> None:
    hook = await serve(stack)
    endpoint, _ = await register(rp, workspace, hook.url)
    worker = rp.worker()

    hook.answer(500)
    await emit(rp, workspace.id, 24, tag="a")
    assert await worker.dispatcher.run_due() == 24
    assert (await rp.webhooks.get(workspace.id, endpoint.id)).failure_count == 24

    hook.answer(200)
    await emit(rp, workspace.id, tag="b")
    assert await worker.dispatcher.run_due() == 1
    reset = await rp.webhooks.get(workspace.id, endpoint.id)
    assert (reset.failure_count, reset.first_failure_at) == (0, None)

    hook.answer(500)
    await emit(rp, workspace.id, 24, tag="c")
    assert await worker.dispatcher.run_due() == 24
    after = await rp.webhooks.get(workspace.id, endpoint.id)
    assert (after.active, after.disabled_reason, after.failure_count) == (True, None, 24)
    assert await rp.storage.list_jobs(endpoint.id) == []
    assert len(hook.hits) == 49


# -- 8. re-enabling and recovering ---------------------------------------------------------------
async def test_re_enable_needs_a_working_receiver_then_recover_replays(
    rp: RavePilot, clock: FrozenClock, workspace: Workspace, stack: AsyncExitStack
) -> None:
    hook = await serve(stack)
    hook.answer(410)
    endpoint, secret = await register(rp, workspace, hook.url)
    worker = rp.worker()
    await emit(rp, workspace.id, tag="old")
    assert await worker.dispatcher.run_due() == 1
    assert (await rp.webhooks.get(workspace.id, endpoint.id)).disabled_reason == "gone"

    clock.advance(minutes=10)
    since = clock.now()
    await emit(rp, workspace.id, 2, tag="new")  # held while disabled
    with pytest.raises(Conflict):
        await rp.webhooks.recover(workspace.id, endpoint.id, since)  # not while disabled

    hook.answer(500, b"still broken")
    with pytest.raises(Conflict, match="HTTP 500"):
        await rp.webhooks.update(workspace.id, endpoint.id, WebhookChanges(active=True))
    stays = await rp.webhooks.get(workspace.id, endpoint.id)
    assert (stays.active, stays.disabled_reason) == (False, "gone")
    assert hook.hits[-1].event == "webhook.test"
    failed_test = (await deliveries(rp, workspace, endpoint.id))[-1]
    assert (failed_test.event_type, failed_test.status) == ("webhook.test", "failed")
    assert (failed_test.attempts, failed_test.next_attempt_at) == (1, None)  # no retries
    assert len(await rp.storage.list_jobs(endpoint.id)) == 1  # no second notice

    hook.answer(200)
    enabled = await rp.webhooks.update(workspace.id, endpoint.id, WebhookChanges(active=True))
    assert (enabled.active, enabled.disabled_reason, enabled.failure_count) == (True, None, 0)
    assert await rp.webhooks.get(workspace.id, endpoint.id) == enabled
    test_hit = hook.hits[-1]
    assert test_hit.event == "webhook.test"
    verify_signature(
        test_hit.body, test_hit.headers["X-RavePilot-Signature"], secret, now=clock.now()
    )
    sent_test = await rp.webhooks.delivery(workspace.id, test_hit.delivery_id)
    assert (sent_test.event_type, sent_test.status, sent_test.attempts) == (
        "webhook.test",
        "succeeded",
        1,
    )
    assert [a.status_code for a in sent_test.attempt_log] == [200]

    # The two held events and the failed test are replayed; the old 410 one predates `since`.
    assert await rp.webhooks.recover(workspace.id, endpoint.id, since) == 3
    before = len(hook.hits)
    assert await drain(worker) == 3
    assert len(hook.hits) == before + 3
    replayed = await deliveries(rp, workspace, endpoint.id)
    assert [(d.event_type, d.status) for d in replayed] == [
        ("invitation.created", "failed"),  # from before `since`: left alone
        ("invitation.created", "succeeded"),
        ("invitation.created", "succeeded"),
        ("webhook.test", "succeeded"),  # the test that failed, replayed
        ("webhook.test", "succeeded"),
    ]


# -- 9. secret rotation --------------------------------------------------------------------------
async def test_during_rotation_both_secrets_verify_and_after_24_h_only_the_new(
    rp: RavePilot, clock: FrozenClock, workspace: Workspace, stack: AsyncExitStack
) -> None:
    hook = await serve(stack)
    endpoint, old_secret = await register(rp, workspace, hook.url)
    worker = rp.worker()
    new_secret = await rp.webhooks.rotate_secret(workspace.id, endpoint.id)
    assert new_secret != old_secret

    clock.advance(hours=24, milliseconds=-1)  # the last moment of the overlap
    await emit(rp, workspace.id, tag="overlap")
    assert await worker.dispatcher.run_due() == 1
    hit = hook.hits[-1]
    header, now = hit.headers["X-RavePilot-Signature"], clock.now()
    assert len(signatures(header)) == 2
    assert len(hit.headers["webhook-signature"].split()) == 2
    for secret in (old_secret, new_secret):
        verify_signature(hit.body, header, secret, now=now)
        verify_standard_webhook(hit.body, hit.headers, secret, now=now)

    clock.advance(milliseconds=2)  # the overlap is over
    await emit(rp, workspace.id, tag="after")
    assert await worker.dispatcher.run_due() == 1
    hit = hook.hits[-1]
    header, now = hit.headers["X-RavePilot-Signature"], clock.now()
    assert len(signatures(header)) == 1
    assert len(hit.headers["webhook-signature"].split()) == 1
    verify_signature(hit.body, header, new_secret, now=now)
    verify_standard_webhook(hit.body, hit.headers, new_secret, now=now)
    with pytest.raises(InvalidSignature):
        verify_signature(hit.body, header, old_secret, now=now)
    with pytest.raises(InvalidSignature):
        verify_standard_webhook(hit.body, hit.headers, old_secret, now=now)


# -- 10. manual retry and test events ------------------------------------------------------------
async def test_retry_sends_a_failed_delivery_again_now(
    rp: RavePilot, clock: FrozenClock, workspace: Workspace, stack: AsyncExitStack
) -> None:
    hook = await serve(stack)
    hook.answer(500)
    endpoint, _ = await register(rp, workspace, hook.url)
    worker = rp.worker()
    await emit(rp, workspace.id)
    while True:  # through the whole schedule
        assert await worker.dispatcher.run_due() == 1
        delivery = await only_delivery(rp, workspace, endpoint.id)
        if delivery.next_attempt_at is None:
            break
        clock.set(delivery.next_attempt_at)
    assert (delivery.status, delivery.attempts) == ("failed", 6)

    hook.answer(200)
    requeued = await rp.webhooks.retry(workspace.id, delivery.id)
    assert (requeued.status, requeued.next_attempt_at) == ("pending", clock.now())
    assert await worker.dispatcher.run_due() == 1
    assert hook.delivery_ids() == [delivery.id] * 7
    detail = await rp.webhooks.delivery(workspace.id, delivery.id)
    assert (detail.status, detail.attempts, detail.response_status) == ("succeeded", 7, 200)
    assert [a.status_code for a in detail.attempt_log] == [500] * 6 + [200]
    assert (await rp.webhooks.get(workspace.id, endpoint.id)).failure_count == 0


async def test_test_sends_a_webhook_test_to_that_endpoint_only(
    rp: RavePilot, clock: FrozenClock, workspace: Workspace, stack: AsyncExitStack
) -> None:
    tested_hook, other_hook = await serve(stack), await serve(stack)
    # It subscribes to something else: a test event goes to it anyway.
    tested, secret = await register(rp, workspace, tested_hook.url, ["clip.uploaded"])
    await register(rp, workspace, other_hook.url)

    queued = await rp.webhooks.test(workspace.id, tested.id)
    assert (queued.status, queued.endpoint_id, queued.event_type) == (
        "pending",
        tested.id,
        "webhook.test",
    )
    assert await rp.worker().dispatcher.run_due() == 1

    assert other_hook.hits == []
    [hit] = tested_hook.hits
    assert (hit.event, hit.delivery_id) == ("webhook.test", queued.id)
    body = json.loads(hit.body)
    assert body["type"] == "webhook.test"
    assert body["data"]["test"] is True and body["data"]["endpoint_id"] == tested.id
    verify_standard_webhook(hit.body, hit.headers, secret, now=clock.now())
    sent = await rp.webhooks.delivery(workspace.id, queued.id)
    assert (sent.status, sent.attempts) == ("succeeded", 1)


# -- 11. isolation, with the real worker loop and real time -------------------------------------
async def test_a_slow_endpoint_does_not_delay_a_fast_one(
    tmp_path: Path, stack: AsyncExitStack
) -> None:
    slow, fast = await serve(stack), await serve(stack)
    slow.answer(200, delay=2.0)
    async with open_ravepilot(tmp_path, allow_private_webhooks=True) as rp:
        workspace = await rp.workspaces.create("acme")
        slow_endpoint, _ = await register(rp, workspace, slow.url)
        fast_endpoint, _ = await register(rp, workspace, fast.url)
        await emit(rp, workspace.id, 20)  # 20 deliveries to each
        worker = rp.worker(webhook_per_endpoint=4)

        async with anyio.create_task_group() as group:
            start = time.monotonic()
            group.start_soon(worker.run)
            await fast.wait_for(lambda: len(fast.finished()) == 20, timeout=5)
            slow_finished_meanwhile = len(slow.finished())
            await slow.wait_for(lambda: len(slow.hits) > 4, timeout=5)  # the 2nd round began
            cancelled_at = time.monotonic()
            group.cancel_scope.cancel()
        stopped_after = time.monotonic() - cancelled_at

        assert max(hit.started for hit in fast.hits) - start < 1.0
        assert slow_finished_meanwhile == 0  # the slow endpoint was busy all along
        assert slow.max_in_flight == 4  # and never had more than its share
        assert stopped_after < 2.5  # cancel waits only for the attempts already started
        assert all(hit.finished is not None for hit in slow.hits)
        # Every attempt started got recorded; nothing is left leased.
        seen = set(slow.delivery_ids())
        assert len(seen) == len(slow.hits)
        for delivery in await rp.webhooks.deliveries(workspace.id, slow_endpoint.id):
            if delivery.id in seen:
                assert (delivery.status, delivery.attempts) == ("succeeded", 1), delivery
            else:
                assert (delivery.status, delivery.attempts) == ("pending", 0), delivery
                assert delivery.next_attempt_at is not None
                assert delivery.next_attempt_at <= datetime.now(UTC)  # not leased
        fast_deliveries = await rp.webhooks.deliveries(workspace.id, fast_endpoint.id)
        assert [d.status for d in fast_deliveries] == ["succeeded"] * 20


@pytest.mark.slow
async def test_a_slow_endpoint_backlog_does_not_hide_other_endpoints_work(
    tmp_path: Path, stack: AsyncExitStack
) -> None:
    # The slow endpoint's due backlog is larger than what one claim scans (twice its size, here
    # 2 x 8; with the defaults, 512 deliveries). The claim takes the slow endpoint's share and
    # must not then stop looking: the fast endpoint's deliveries are due as well.
    slow, fast = await serve(stack), await serve(stack)
    slow.answer(200, delay=2.0)
    async with open_ravepilot(tmp_path, allow_private_webhooks=True) as rp:
        workspace = await rp.workspaces.create("acme")
        await register(rp, workspace, slow.url)
        await emit(rp, workspace.id, 20, tag="backlog")  # only the slow endpoint exists yet
        await register(rp, workspace, fast.url)
        await emit(rp, workspace.id, 5, tag="both")
        worker = rp.worker(webhook_concurrency=8, webhook_per_endpoint=4, webhook_poll_interval=5.0)

        async with anyio.create_task_group() as group:
            start = time.monotonic()
            group.start_soon(worker.run)
            with anyio.move_on_after(8):
                await fast.wait_for(lambda: len(fast.finished()) == 5, timeout=8)
            group.cancel_scope.cancel()

        assert len(fast.finished()) == 5
        latest = max(hit.started for hit in fast.hits) - start
        assert latest < 1.0, f"the fast endpoint waited {latest:.1f} s behind the slow one"


# -- 12. graceful stop ---------------------------------------------------------------------------
async def test_stopping_the_worker_finishes_and_records_started_attempts(
    rp: RavePilot, workspace: Workspace, stack: AsyncExitStack
) -> None:
    hook = await serve(stack)
    hook.answer(200, b"done", delay=1.0)
    endpoint, _ = await register(rp, workspace, hook.url)
    await emit(rp, workspace.id, 3)
    worker = rp.worker()

    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        await hook.wait_for(lambda: len(hook.hits) == 3)
        assert hook.finished() == []
        cancelled_at = time.monotonic()
        group.cancel_scope.cancel()
    stopped_after = time.monotonic() - cancelled_at

    assert len(hook.finished()) == 3  # the receivers got to answer
    assert 0.5 <= stopped_after < 2.0  # it waited for them, no longer
    recorded = await deliveries(rp, workspace, endpoint.id)
    assert [(d.status, d.attempts, d.response_status) for d in recorded] == [
        ("succeeded", 1, 200)
    ] * 3
    assert all(d.next_attempt_at is None for d in recorded)
    for delivery in recorded:
        [attempt] = (await rp.webhooks.delivery(workspace.id, delivery.id)).attempt_log
        assert attempt.response_body == "done"


async def test_results_that_fail_to_save_are_written_again_not_sent_again(
    rp: RavePilot,
    workspace: Workspace,
    stack: AsyncExitStack,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hook = await serve(stack)
    endpoint, _ = await register(rp, workspace, hook.url)
    await emit(rp, workspace.id, 3)
    storage = rp.context.storage
    record = storage.record_delivery_results
    failures = [BackendError("PostgreSQL could not run a statement: connection lost; retry")] * 2

    async def flaky(*args: Any, **kwargs: Any) -> int:
        if failures:
            raise failures.pop()
        return await record(*args, **kwargs)

    monkeypatch.setattr(storage, "record_delivery_results", flaky)
    monkeypatch.setattr("ravepilot_core.dispatch.RESULT_WRITE_BACKOFF", 0.001)
    assert await rp.worker().dispatcher.run_due() == 3

    assert failures == []
    assert sorted(hook.delivery_ids()) == sorted(
        d.id for d in await deliveries(rp, workspace, endpoint.id)
    )
    recorded = await deliveries(rp, workspace, endpoint.id)
    assert [(d.status, d.attempts) for d in recorded] == [("succeeded", 1)] * 3
    assert caplog.text.count("could not record 3 delivery results; retrying") == 2


async def test_results_arriving_one_by_one_are_recorded_in_batches(
    rp: RavePilot,
    workspace: Workspace,
    stack: AsyncExitStack,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hook = await serve(stack)
    await register(rp, workspace, hook.url)
    storage = rp.context.storage
    record = storage.record_delivery_results
    batches: list[int] = []

    async def counted(results: Any, **kwargs: Any) -> int:
        batches.append(len(results))
        return await record(results, **kwargs)

    monkeypatch.setattr(storage, "record_delivery_results", counted)
    # A wide window, so a slow machine (an event every few ms) still lands in it.
    monkeypatch.setattr("ravepilot_core.dispatch.RESULT_GATHER_SECONDS", 0.2)
    async with anyio.create_task_group() as group:
        group.start_soon(rp.worker().run)
        for _ in range(40):  # events a millisecond apart: each delivered before the next
            await emit(rp, workspace.id, 1)
            await anyio.sleep(0.001)
        with anyio.fail_after(30):
            while sum(batches) < 40:
                await anyio.sleep(0.01)
        group.cancel_scope.cancel()

    # A commit costs as much as writing ~30 results: they gather for a few ms first.
    assert sum(batches) == 40 and len(batches) <= 20, batches
    assert (await storage.delivery_queue_stats()).pending == 0
    assert sorted(set(hook.delivery_ids())) == sorted(hook.delivery_ids())
    assert len(hook.delivery_ids()) == 40


# -- 13. the URL policy again at delivery time ---------------------------------------------------
async def test_a_host_that_now_resolves_to_a_private_address_is_refused(
    tmp_path: Path, clock: FrozenClock, stack: AsyncExitStack
) -> None:
    # Registered while the name pointed at a public address; by delivery time it points at the
    # loopback receiver. The worker resolves again, refuses, and never connects.
    hook = await serve(stack)
    answers = {"hooks.example.com": ["93.184.216.34"]}

    async def resolver(host: str) -> list[str]:
        return answers[host]

    async with open_ravepilot(tmp_path, clock=clock, resolver=resolver) as rp:
        workspace = await rp.workspaces.create("acme")
        port = hook.url.split(":")[2].split("/")[0]
        endpoint, _ = await register(rp, workspace, f"https://hooks.example.com:{port}/hook")
        answers["hooks.example.com"] = ["127.0.0.1"]
        await emit(rp, workspace.id)
        assert await rp.worker().dispatcher.run_due() == 1
        delivery = await only_delivery(rp, workspace, endpoint.id)
        detail = await rp.webhooks.delivery(workspace.id, delivery.id)
    assert hook.hits == []
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert delivery.error is not None and delivery.error.startswith("refused address:")
    assert "127.0.0.1 is a loopback address" in delivery.error
    assert detail.attempt_log[0].target_ip is None


# -- 14. work committed by another process --------------------------------------------------------
async def test_a_worker_hears_commits_of_another_process_at_once(
    tmp_path: Path, stack: AsyncExitStack
) -> None:
    # The API process and the worker process each hold their own connection to the SQLite
    # file; the worker polls only every 30 s, yet delivers within a fraction of a second.
    hook = await serve(stack)
    async with (
        open_ravepilot(tmp_path, allow_private_webhooks=True) as api,
        open_ravepilot(tmp_path, allow_private_webhooks=True) as worker_side,
    ):
        workspace = await api.workspaces.create("acme")
        await register(api, workspace, hook.url)
        async with anyio.create_task_group() as group:
            group.start_soon(worker_side.worker(webhook_poll_interval=30, poll_interval=30).run)
            await anyio.sleep(0.2)  # the worker is idle, waiting
            started = time.monotonic()
            await emit(api, workspace.id)
            with anyio.fail_after(5):
                while not hook.hits:
                    await anyio.sleep(0.005)
            waited = time.monotonic() - started
            group.cancel_scope.cancel()
    assert waited < 0.5, waited
