"""A job that runs long keeps its lease, so a second worker never runs it at the same time."""

from __future__ import annotations

from datetime import timedelta

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
