"""The background worker for durable jobs: claim with a lease, run, record, retry with backoff.

Jobs are rows, so nothing a user asked for is lost when a process dies: a crashed worker's lease
expires and another worker (or the same one after a restart) takes the job again.
"""

from __future__ import annotations

import collections
import logging
import os
import random
import secrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta

import anyio

from ravepilot_core.context import Context
from ravepilot_core.erasure import MEDIA_DELETE_JOB, delete_media
from ravepilot_core.errors import JobAbandoned
from ravepilot_core.ingest import INGEST_JOB, TRANSCRIBE_JOB, ingest_clip, transcribe_clip
from ravepilot_core.mail import (
    INVITATION_EMAIL_JOB,
    WEBHOOK_DISABLED_JOB,
    send_invitation,
    send_webhook_disabled,
)
from ravepilot_core.models import InvitationEmail, Job
from ravepilot_core.protocols import JobOutcome
from ravepilot_core.renders import RENDER_JOB, run_render

__all__ = ["JOB_BACKOFF", "JobHandler", "JobWorker"]

log = logging.getLogger("ravepilot.jobs")

JobHandler = Callable[[Context, Job], Awaitable[None]]

# Delay before attempt n+1 after n failed attempts; the last entry repeats. With 8 attempts an
# email keeps trying for about 8 hours, which outlasts a typical SMTP outage.
JOB_BACKOFF: tuple[timedelta, ...] = (
    timedelta(seconds=30),
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(minutes=30),
    timedelta(hours=1),
    timedelta(hours=2),
    timedelta(hours=4),
)
LEASE = timedelta(minutes=5)
LEASE_RENEWAL = timedelta(minutes=1)  # well inside LEASE, so one slow renewal loses nothing
POLL_INTERVAL = 5.0
BATCH = 16
# How long a job about to start waits when the app is answering requests (foreground.py). Under
# a steady stream of requests each lane still starts a job every STEP_ASIDE plus the job's time.
STEP_ASIDE = 0.05

HANDLERS: Mapping[str, JobHandler] = {
    INVITATION_EMAIL_JOB: send_invitation,
    WEBHOOK_DISABLED_JOB: send_webhook_disabled,
    MEDIA_DELETE_JOB: delete_media,
    INGEST_JOB: ingest_clip,
    TRANSCRIBE_JOB: transcribe_clip,
    RENDER_JOB: run_render,
}


def _email_state(
    job: Job, outcome: JobOutcome, error: str | None, at: datetime
) -> InvitationEmail | None:
    """The invitation email state a finished email job leaves on its submission."""
    if job.kind != INVITATION_EMAIL_JOB:
        return None
    if outcome == "succeeded":
        return InvitationEmail(status="sent", sent_at=at)
    if outcome == "failed":
        return InvitationEmail(status="failed", error=error)
    return InvitationEmail(status="queued", error=error)


class JobWorker:
    """Runs due jobs until cancelled; several workers may share one storage."""

    def __init__(
        self,
        context: Context,
        *,
        handlers: Mapping[str, JobHandler] = HANDLERS,
        concurrency: int = 4,
        poll_interval: float = POLL_INTERVAL,
        step_aside: float = STEP_ASIDE,
    ) -> None:
        self._ctx = context
        self._handlers = handlers
        self._concurrency = concurrency
        self._poll_interval = poll_interval
        self._step_aside = step_aside
        self.worker_id = f"{os.getpid()}-{secrets.token_hex(4)}"

    async def run(self) -> None:
        """Process jobs forever: woken after each commit, polling as the fallback."""
        while True:
            seen = self._ctx.work.generation
            try:
                ran = await self.run_due()
            except Exception:
                # Storage trouble: try again after the poll interval rather than stop for good.
                log.exception("could not claim jobs; retrying")
                ran = 0
            if ran == 0:
                await self._ctx.work.wait(seen, self._poll_interval)

    async def run_due(self) -> int:
        """Claim and run one batch of due jobs; return how many ran."""
        now = self._ctx.clock.now()
        jobs = await self._ctx.storage.claim_jobs(
            now=now, worker_id=self.worker_id, lease_until=now + LEASE, limit=BATCH
        )
        if jobs:
            held = {job.id for job in jobs}
            waiting = collections.deque(jobs)
            async with anyio.create_task_group() as batch:
                # One lease keeper for the batch, not a task per job: an email takes well
                # under a millisecond, and a task of its own cost a tenth of that.
                batch.start_soon(self._keep_leases, held)
                # Likewise ``concurrency`` lanes that take the batch's jobs in turn, rather
                # than a task and a limiter slot for every job.
                async with anyio.create_task_group() as lanes:
                    for _ in range(min(self._concurrency, len(jobs))):
                        lanes.start_soon(self._lane, waiting, held)
                batch.cancel_scope.cancel()
        return len(jobs)

    async def _keep_leases(self, held: set[str]) -> None:
        """Renew the leases of the batch's unfinished jobs every minute until cancelled.

        A job waiting for a media slot, or a render running for minutes, must not look
        abandoned to other workers (they would run it a second time). A lease found lost
        is not renewed again.
        """
        while True:
            await anyio.sleep(LEASE_RENEWAL.total_seconds())
            until = self._ctx.clock.now() + LEASE
            # At once, and each given up after one interval, so a renewal that hangs cannot
            # hold up the others, or the next round, until their leases run out.
            async with anyio.create_task_group() as renewals:
                for job_id in list(held):
                    renewals.start_soon(self._renew, job_id, until, held)

    async def _renew(self, job_id: str, until: datetime, held: set[str]) -> None:
        renewed = True  # unless the storage says the lease is gone
        try:
            with anyio.move_on_after(LEASE_RENEWAL.total_seconds()) as waited:
                renewed = await self._ctx.storage.extend_job_lease(
                    job_id, worker_id=self.worker_id, lease_until=until
                )
            if waited.cancelled_caught:
                log.warning("renewing the lease of job %s took too long; trying again", job_id)
        except Exception:
            log.warning("could not renew the lease of job %s; trying again", job_id)
            return
        if not renewed:
            held.discard(job_id)

    async def _lane(self, waiting: collections.deque[Job], held: set[str]) -> None:
        """Run the batch's waiting jobs one after another until none is left."""
        foreground = self._ctx.foreground
        while waiting:
            # The app's requests first: an email can go out a few milliseconds later.
            await foreground.step_aside(self._step_aside)
            if not waiting:
                break  # another lane took the last job while this one waited
            job = waiting.popleft()
            try:
                await self._run(job)
            finally:
                held.discard(job.id)  # recorded (or abandoned to its lease): renew it no more

    async def _run(self, job: Job) -> None:
        handler = self._handlers.get(job.kind)
        error: str | None = None
        outcome: JobOutcome
        try:
            if handler is None:
                raise JobAbandoned(f"no handler for job kind {job.kind!r}")
            await handler(self._ctx, job)
        except JobAbandoned as exc:
            outcome, error = "failed", str(exc)
        except Exception as exc:  # every other failure is worth another try
            error = f"{type(exc).__name__}: {exc}"
            outcome = "retry" if job.attempts < job.max_attempts else "failed"
        else:
            outcome = "succeeded"
        now = self._ctx.clock.now()
        retry_at = None
        if outcome == "retry":
            delay = JOB_BACKOFF[min(job.attempts - 1, len(JOB_BACKOFF) - 1)]
            retry_at = now + delay * (1 + random.random() * 0.1)
            log.warning("job %s (%s) failed, retrying at %s: %s", job.id, job.kind, retry_at, error)
        elif outcome == "failed":
            log.error("job %s (%s) failed for good: %s", job.id, job.kind, error)
        await self._ctx.storage.finish_job(
            job.id,
            worker_id=self.worker_id,
            outcome=outcome,
            at=now,
            error=error,
            retry_at=retry_at,
            invitation_email=_email_state(job, outcome, error, now),
        )
