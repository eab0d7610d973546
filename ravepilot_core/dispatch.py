"""Webhook delivery: one signed attempt (:class:`Sender`) and the worker loop (:class:`Dispatcher`).

The dispatcher claims due deliveries in batches and writes their results back in batches.

Why it is shaped this way:

- No transaction is held across an HTTP call: a claim leases rows and commits; results are
  written later, in one transaction per batch, only while the lease still holds. A worker that
  dies loses nothing: its leases expire and the rows are due again (at-least-once delivery;
  receivers dedupe on the delivery id).
- One slow or failing endpoint cannot delay the others: each endpoint has at most
  ``per_endpoint`` requests in flight, and a claim never takes more of an endpoint's deliveries
  than it has room for, so the rest of the batch goes to other endpoints.
- An attempt that has started is finished even when the worker is asked to stop (it is bounded
  by the 10 s timeout), and its result is written before the worker returns.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections import defaultdict
from datetime import datetime, timedelta
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

import aiohttp
import anyio

from ravepilot_core.context import Context
from ravepilot_core.mail import webhook_disabled_job
from ravepilot_core.metrics import Metrics
from ravepilot_core.models import DeliveryAttempt, DeliveryResult, DeliveryTask
from ravepilot_core.retries import DISABLE_AFTER, next_attempt_at, parse_retry_after
from ravepilot_core.safehttp import check_target, new_session, peer_address, refusal_of
from ravepilot_core.signing import Signer

__all__ = ["DELIVERY_TIMEOUT", "Dispatcher", "Sender"]

log = logging.getLogger("ravepilot.webhooks")

DELIVERY_TIMEOUT = 10.0  # seconds: a 2xx within this is a success
RESPONSE_LOG_BYTES = 2048
LEASE = timedelta(seconds=60)  # well past the timeout: a live worker never loses a lease
# A batch of results that cannot be written is tried again for about 7 s (0.2, 0.4, ... 2 s).
RESULT_WRITE_RETRIES = 6
RESULT_WRITE_BACKOFF = 0.1
# A commit costs about as much as writing 30 results, so results gather for up to this long (or
# until a claim's worth arrived) before they are written. Only the record waits, not a delivery.
RESULT_GATHER_SECONDS = 0.005


def _user_agent() -> str:
    try:
        return f"RavePilot-Webhooks/{package_version('ravepilot')}"
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "RavePilot-Webhooks"


USER_AGENT = _user_agent()


class Sender:
    """Sends single attempts over one shared keep-alive session, signing each body once."""

    def __init__(self, context: Context, *, timeout: float = DELIVERY_TIMEOUT) -> None:
        self._ctx = context
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._signers: dict[str, tuple[tuple[str, str | None, bool], Signer]] = {}

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = new_session(
                resolver=self._ctx.resolver,
                allow_private=self._ctx.allow_private_webhooks,
                timeout=self._timeout,
                user_agent=USER_AGENT,
                # attempt() checks literal hosts itself and never follows redirects.
                check_each_request=False,
            )
        return self._session

    async def close(self) -> None:
        """Close the session (idle connections included)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _signer(self, task: DeliveryTask, now: datetime) -> Signer:
        record = task.endpoint
        overlap = (
            record.previous_secret_ciphertext is not None
            and record.previous_secret_expires_at is not None
            and record.previous_secret_expires_at > now
        )
        version = (record.secret_ciphertext, record.previous_secret_ciphertext, overlap)
        cached = self._signers.get(record.endpoint.id)
        if cached is not None and cached[0] == version:
            return cached[1]
        keyring = self._ctx.keyring
        valid = [keyring.decrypt(record.secret_ciphertext)]
        if overlap:
            assert record.previous_secret_ciphertext is not None
            valid.append(keyring.decrypt(record.previous_secret_ciphertext))
        signer = Signer(valid)
        self._signers[record.endpoint.id] = (version, signer)
        return signer

    async def attempt(self, task: DeliveryTask) -> DeliveryResult:
        """Make attempt number ``task.attempt`` and say what comes next."""
        now = self._ctx.clock.now()
        url = task.endpoint.endpoint.url
        headers = self._signer(task, now).headers(
            delivery_id=task.delivery_id,
            event_type=task.event_type,
            body=task.payload,
            timestamp=int(now.timestamp()),
        )
        headers["Content-Type"] = "application/json"
        status: int | None = None
        error: str | None = None
        body: str | None = None
        target_ip: str | None = None
        retry_after: str | None = None
        started = time.perf_counter()
        try:
            check_target(url, allow_private=self._ctx.allow_private_webhooks)  # cached per URL
            async with self._open().post(
                url, data=task.payload, headers=headers, allow_redirects=False
            ) as response:
                target_ip = peer_address(response)
                status = response.status
                retry_after = response.headers.get("Retry-After")
                # NUL is replaced too: a receiver may send any bytes, and Postgres text cannot
                # hold NUL (the attempt log would fail to save, and the delivery be resent).
                body = (
                    (await _read_body(response))
                    .decode("utf-8", "replace")
                    .replace("\x00", "\ufffd")
                )
        except TimeoutError:
            error = f"timed out after {self._timeout:g} s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            error = _describe(exc)
        latency_ms = round((time.perf_counter() - started) * 1000)
        # A status line alone is not an answer: a body cut off mid-way fails the attempt.
        succeeded = error is None and status is not None and 200 <= status < 300
        if error is None and not succeeded:
            error = f"HTTP {status}"
        attempt = DeliveryAttempt(
            number=task.attempt,
            at=now,
            target_ip=target_ip,
            status_code=status,
            latency_ms=latency_ms,
            error=error,
            response_body=body,
        )
        endpoint_id = task.endpoint.endpoint.id
        if succeeded:
            return DeliveryResult(
                delivery_id=task.delivery_id,
                endpoint_id=endpoint_id,
                outcome="succeeded",
                attempt=attempt,
            )
        gone = status == 410
        retry_at = (
            None
            if gone
            else next_attempt_at(task.attempt, now, retry_after=parse_retry_after(retry_after, now))
        )
        return DeliveryResult(
            delivery_id=task.delivery_id,
            endpoint_id=endpoint_id,
            outcome="retry" if retry_at is not None else "failed",
            attempt=attempt,
            next_attempt_at=retry_at,
            gone=gone,
        )


def _describe(exc: BaseException) -> str:
    """Say in a line why an attempt got no answer (it goes into the attempt log)."""
    refusal = refusal_of(exc)
    if refusal is not None:
        return f"refused address: {refusal}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = exc.os_error
        reason = os.strerror(cause.errno) if cause.errno else str(cause)
        return f"cannot connect to {exc.host}:{exc.port}: {reason}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection before it answered"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"the response was cut off: {exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _read_body(response: aiohttp.ClientResponse) -> bytes:
    """Return the first 2 KB of the body, reading (and discarding) the rest.

    Reading to the end makes a body cut off mid-way a failed attempt, as HTTP says it is, and
    lets the connection be reused; the session's timeout bounds how long it may take.
    """
    kept = bytearray()
    while len(kept) < RESPONSE_LOG_BYTES:
        chunk = await response.content.read(RESPONSE_LOG_BYTES - len(kept))
        if not chunk:
            return bytes(kept)
        kept += chunk
    while await response.content.read(65536):
        pass
    return bytes(kept)


class Dispatcher:
    """Claims due deliveries, sends them concurrently and records the outcomes, until cancelled."""

    def __init__(
        self,
        context: Context,
        sender: Sender,
        metrics: Metrics,
        *,
        concurrency: int = 256,
        per_endpoint: int = 64,
        poll_interval: float = 1.0,
        disable_after: int = DISABLE_AFTER,
    ) -> None:
        self._ctx = context
        self._sender = sender
        self._metrics = metrics
        self._concurrency = concurrency
        self._per_endpoint = per_endpoint
        self._poll_interval = poll_interval
        self._disable_after = disable_after
        # Claim again once this many attempts finished: batches stay large, pipes stay full.
        self._refill = max(1, min(per_endpoint, concurrency) // 2)
        self.worker_id = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._in_flight: dict[str, int] = defaultdict(int)
        self._total_in_flight = 0
        self._finished_since_claim = 0
        self._wake = anyio.Event()
        self._results: list[DeliveryResult] = []
        self._results_ready = anyio.Event()  # the first result of a batch is in
        self._results_full = anyio.Event()  # a claim's worth of results is in

    async def run(self) -> None:
        """Deliver until cancelled; then finish claimed attempts and write their results."""
        # A fixed pool of sender tasks takes claimed deliveries from a queue: far cheaper than a
        # task (and a cancel scope) per delivery, which cost a sixth of the worker's time at
        # thousands a second. An asyncio queue, not an anyio stream: aiohttp already ties this
        # code to asyncio, and the stream's per-item backend lookups cost as much again.
        queue: asyncio.Queue[DeliveryTask | None] = asyncio.Queue()
        try:
            async with anyio.create_task_group() as outer:
                outer.start_soon(self._senders, queue)
                try:
                    async with anyio.create_task_group() as loops:
                        loops.start_soon(self._write_results_forever)
                        loops.start_soon(self._wake_on_commits)
                        await self._claim_forever(queue)
                finally:
                    # The senders finish what is queued (claimed: better sent now than left
                    # leased for a minute), then stop.
                    for _ in range(self._concurrency):
                        queue.put_nowait(None)
        finally:
            with anyio.CancelScope(shield=True):
                await self._write_results()

    async def _senders(self, queue: asyncio.Queue[DeliveryTask | None]) -> None:
        # Shielded as a whole: a started attempt runs to its end (bounded by the timeout), so
        # stopping the worker does not turn a delivered webhook into a duplicate later. The
        # senders stop when the claim loop, which is cancellable, queues their end.
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as senders:
                for _ in range(self._concurrency):
                    senders.start_soon(self._send_forever, queue)

    async def _send_forever(self, queue: asyncio.Queue[DeliveryTask | None]) -> None:
        while (task := await queue.get()) is not None:
            await self._deliver(task)

    async def run_due(self) -> int:
        """Claim one batch of due deliveries, send them, record the results; return how many.

        For tests with an injected clock, and for apps that drive the worker by hand.
        """
        tasks = await self.claim(self._concurrency)
        async with anyio.create_task_group() as senders:
            for task in tasks:
                self._in_flight[task.endpoint.endpoint.id] += 1
                self._total_in_flight += 1
                senders.start_soon(self._deliver, task)
        await self._write_results()
        return len(tasks)

    async def _claim_forever(self, queue: asyncio.Queue[DeliveryTask | None]) -> None:
        while True:
            self._wake = anyio.Event()  # whatever happens from here on ends the wait below
            room = self._concurrency - self._total_in_flight
            if room >= self._refill:
                try:
                    tasks = await self.claim(room)
                except Exception:
                    # Storage trouble (a lock held too long, a lost connection): try again
                    # after the poll interval rather than stop delivering for good.
                    log.exception("could not claim deliveries; retrying")
                    tasks = []
                for task in tasks:
                    self._in_flight[task.endpoint.endpoint.id] += 1
                    self._total_in_flight += 1
                    queue.put_nowait(task)  # at most `concurrency` in flight: a sender is free
                if tasks and len(tasks) == room:
                    continue  # there is probably more
                # Fewer than there was room for: claims go endpoint by endpoint, so every endpoint
                # with work due got up to its cap and nothing is left behind.
            # Drained, or every endpoint with work is at its cap: wait for a commit, for enough
            # attempts to finish, or for retries falling due (polling).
            with anyio.move_on_after(self._poll_interval):
                await self._wake.wait()

    async def _wake_on_commits(self) -> None:
        work = self._ctx.work
        while True:
            await work.wait(work.generation, timeout=float("inf"))
            self._wake.set()

    async def claim(self, limit: int) -> list[DeliveryTask]:
        """Lease up to ``limit`` due deliveries within each endpoint's room."""
        now = self._ctx.clock.now()
        room = {endpoint: self._per_endpoint - count for endpoint, count in self._in_flight.items()}
        self._finished_since_claim = 0
        return await self._ctx.storage.claim_deliveries(
            now=now,
            worker_id=self.worker_id,
            lease_until=now + LEASE,
            limit=limit,
            per_endpoint=self._per_endpoint,
            endpoint_room=room,
        )

    async def _deliver(self, task: DeliveryTask) -> None:
        endpoint_id = task.endpoint.endpoint.id
        try:
            if task.endpoint.endpoint.active or task.event_type == "webhook.test":
                result = await self._sender.attempt(task)
            else:  # disabled after the claim: park it for a later recover
                result = DeliveryResult(
                    delivery_id=task.delivery_id, endpoint_id=endpoint_id, outcome="held"
                )
            self._results.append(result)
            self._results_ready.set()
            if len(self._results) >= self._refill:
                self._results_full.set()
        except Exception:
            # A bug, not an endpoint's failure: keep the worker alive; the lease expires and
            # the delivery is attempted again.
            log.exception("delivery %s could not be attempted", task.delivery_id)
        finally:
            self._in_flight[endpoint_id] -= 1
            if not self._in_flight[endpoint_id]:
                del self._in_flight[endpoint_id]
            self._total_in_flight -= 1
            self._finished_since_claim += 1
            if self._finished_since_claim >= self._refill:
                self._wake.set()

    async def _write_results_forever(self) -> None:
        while True:
            await self._results_ready.wait()
            with anyio.move_on_after(RESULT_GATHER_SECONDS):
                await self._results_full.wait()
            self._results_ready, self._results_full = anyio.Event(), anyio.Event()
            # Shielded so a batch taken off the list is always written.
            with anyio.CancelScope(shield=True):
                await self._write_results()

    async def _write_results(self) -> None:
        failures = 0
        while self._results:
            batch, self._results = self._results, []
            try:
                await self._ctx.storage.record_delivery_results(
                    batch,
                    worker_id=self.worker_id,
                    at=self._ctx.clock.now(),
                    disable_threshold=self._disable_after,
                    disable_notice=webhook_disabled_job,
                )
            except Exception:
                failures += 1
                if failures > RESULT_WRITE_RETRIES:
                    # Not lost: the leases expire and the deliveries are attempted again.
                    log.exception("could not record %d delivery results", len(batch))
                    failures = 0
                    continue
                # A database restart or failover: writing again is safe (only rows this
                # worker still leases are updated) and saves sending them all again.
                log.warning("could not record %d delivery results; retrying", len(batch))
                self._results = batch + self._results
                await anyio.sleep(min(RESULT_WRITE_BACKOFF * 2**failures, 2.0))
                continue
            failures = 0
            self._metrics.observe_results(batch)
