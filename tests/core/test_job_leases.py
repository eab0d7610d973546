"""A job that runs long keeps its lease, so a second worker never runs it at the same time."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anyio
import pytest

from ravepilot_core import jobs as jobs_module
from ravepilot_core.context import Context
from ravepilot_core.jobs import JobWorker
from ravepilot_core.models import Job
from ravepilot_core.testing import FrozenClock, MemoryStorage
from tests.core.job_helpers import job_context, queue_jobs

pytestmark = pytest.mark.anyio


class LongJobs:
    """Jobs queued in ``storage`` whose work lets 15 minutes pass on a 5-minute lease.

    While they work, another worker keeps trying to claim due jobs: ``stolen`` is what it got.
    """

    def __init__(self, storage: MemoryStorage, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(jobs_module, "LEASE_RENEWAL", timedelta(seconds=0.02))
        self.storage = storage
        self.clock = FrozenClock()
        self.context = job_context(storage, self.clock)
        self.stolen: list[Job] = []

    async def queue(self, *subjects: str) -> list[Job]:
        return await queue_jobs(self.context, *subjects)

    async def work_long(self, ctx: Context, running: Job) -> None:
        for _ in range(5):
            self.clock.advance(minutes=3)
            await anyio.sleep(0.05)
            self.stolen.extend(
                await self.storage.claim_jobs(
                    now=self.clock.now(),
                    worker_id="other",
                    lease_until=self.clock.now() + timedelta(minutes=5),
                    limit=10,
                )
            )


async def test_a_long_job_renews_its_lease_while_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    long_jobs = LongJobs(MemoryStorage(), monkeypatch)
    await long_jobs.queue("rnd_long")
    worker = JobWorker(long_jobs.context, handlers={"test.job": long_jobs.work_long})
    assert await worker.run_due() == 1
    assert long_jobs.stolen == []  # 15 minutes of work on a 5-minute lease, and nobody took it
    assert [j.status for j in await long_jobs.storage.list_jobs("rnd_long")] == ["succeeded"]


async def test_one_stuck_renewal_does_not_cost_the_batch_its_other_leases(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class StuckOnOneJob(MemoryStorage):
        async def extend_job_lease(self, job_id: str, **kwargs: Any) -> bool:
            if job_id == stuck.id:
                await anyio.sleep_forever()  # a renewal that never comes back
            return await super().extend_job_lease(job_id, **kwargs)

    long_jobs = LongJobs(StuckOnOneJob(), monkeypatch)
    stuck, _ = await long_jobs.queue("rnd_stuck", "rnd_long")

    async def work(ctx: Context, running: Job) -> None:
        if running.id == stuck.id:
            await anyio.sleep(0.3)  # still running when the renewals come round
        else:
            await long_jobs.work_long(ctx, running)

    worker = JobWorker(long_jobs.context, handlers={"test.job": work})
    with anyio.fail_after(10):
        assert await worker.run_due() == 2
    # The stuck job's own lease may lapse; the other job's must not.
    assert [job.id for job in long_jobs.stolen if job.id != stuck.id] == []
    assert [j.status for j in await long_jobs.storage.list_jobs("rnd_long")] == ["succeeded"]


async def test_a_batch_runs_concurrency_jobs_at_a_time_and_each_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    long_jobs = LongJobs(MemoryStorage(), monkeypatch)
    queued = await long_jobs.queue(*(f"rnd_{n}" for n in range(7)))
    slow = queued[0]
    running: set[str] = set()
    most = 0
    ran: list[str] = []

    async def work(ctx: Context, job: Job) -> None:
        nonlocal most
        running.add(job.id)
        most = max(most, len(running))
        # The first job takes as long as all the others together: the other lane runs them.
        await anyio.sleep(0.3 if job.id == slow.id else 0.02)
        running.discard(job.id)
        ran.append(job.id)

    worker = JobWorker(long_jobs.context, handlers={"test.job": work}, concurrency=2)
    with anyio.fail_after(10):
        assert await worker.run_due() == 7
    assert most == 2
    assert sorted(ran) == sorted(job.id for job in queued)
    assert ran[-1] == slow.id  # the six quick jobs did not wait for the slow one
    for job in queued:
        assert [j.status for j in await long_jobs.storage.list_jobs(job.subject_id)] == [
            "succeeded"
        ]
