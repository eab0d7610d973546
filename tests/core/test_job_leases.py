"""A job that runs long keeps its lease, so a second worker never runs it at the same time."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anyio
import pytest

from ravepilot_core import jobs as jobs_module
from ravepilot_core.context import Context
from ravepilot_core.crypto import Keyring
from ravepilot_core.jobs import JobWorker
from ravepilot_core.models import Job
from ravepilot_core.testing import FrozenClock, MemoryMailer, MemoryStorage
from ravepilot_core.testing.contract_data import make_job, make_submission, new_workspace

pytestmark = pytest.mark.anyio


async def test_a_long_job_renews_its_lease_while_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs_module, "LEASE_RENEWAL", timedelta(seconds=0.02))
    clock = FrozenClock()
    storage = MemoryStorage()
    workspace, collector = await new_workspace(storage)
    job = make_job(workspace.id, "rnd_long", run_at=clock.now(), when=clock.now())
    await storage.create_submission(make_submission(workspace.id, collector.id), jobs=[job])
    context = Context(
        storage=storage,
        mailer=MemoryMailer(),
        clock=clock,
        keyring=Keyring("k" * 40),
        public_url="https://x.example",
        mail_from="x@x.example",
    )
    stolen: list[Job] = []

    async def long_render(ctx: Context, running: Job) -> None:
        # Time passes well beyond the first lease while the job works.
        for _ in range(5):
            clock.advance(minutes=3)
            await anyio.sleep(0.05)
            stolen.extend(
                await storage.claim_jobs(
                    now=clock.now(),
                    worker_id="other",
                    lease_until=clock.now() + timedelta(minutes=5),
                    limit=10,
                )
            )

    worker = JobWorker(context, handlers={"test.job": long_render})
    assert await worker.run_due() == 1
    assert stolen == []  # 15 minutes of work on a 5-minute lease, and nobody took it
    assert [j.status for j in await storage.list_jobs("rnd_long")] == ["succeeded"]


async def test_one_stuck_renewal_does_not_cost_the_batch_its_other_leases(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(jobs_module, "LEASE_RENEWAL", timedelta(seconds=0.02))
    clock = FrozenClock()

    class StuckOnOneJob(MemoryStorage):
        async def extend_job_lease(self, job_id: str, **kwargs: Any) -> bool:
            if job_id == stuck_id:
                await anyio.sleep_forever()  # a renewal that never comes back
            return await super().extend_job_lease(job_id, **kwargs)

    storage = StuckOnOneJob()
    workspace, collector = await new_workspace(storage)
    jobs = [
        make_job(workspace.id, f"rnd_{n}", run_at=clock.now(), when=clock.now()) for n in range(2)
    ]
    stuck_id = jobs[0].id
    await storage.create_submission(make_submission(workspace.id, collector.id), jobs=jobs)
    context = Context(
        storage=storage,
        mailer=MemoryMailer(),
        clock=clock,
        keyring=Keyring("k" * 40),
        public_url="https://x.example",
        mail_from="x@x.example",
    )
    stolen: list[Job] = []

    async def long_job(ctx: Context, running: Job) -> None:
        if running.id == stuck_id:
            await anyio.sleep(0.3)  # still running when the renewals come round
            return
        for _ in range(5):
            clock.advance(minutes=3)
            await anyio.sleep(0.05)
            stolen.extend(
                await storage.claim_jobs(
                    now=clock.now(),
                    worker_id="other",
                    lease_until=clock.now() + timedelta(minutes=5),
                    limit=10,
                )
            )

    worker = JobWorker(context, handlers={"test.job": long_job})
    with anyio.fail_after(10):
        assert await worker.run_due() == 2
    # The stuck job's own lease may lapse; the other job's must not.
    assert [job.id for job in stolen if job.id != stuck_id] == []
    assert [j.status for j in await storage.list_jobs("rnd_1")] == ["succeeded"]
