"""The job worker steps aside for requests in flight, and never starves for them."""

from __future__ import annotations

import anyio
import pytest

from ravepilot_core.context import Context
from ravepilot_core.foreground import Foreground
from ravepilot_core.jobs import JobWorker
from ravepilot_core.models import Job
from ravepilot_core.testing import FrozenClock, MemoryStorage
from tests.core.job_helpers import job_context, queue_jobs

pytestmark = pytest.mark.anyio


async def context_with_jobs(count: int) -> Context:
    context = job_context(MemoryStorage(), FrozenClock())
    await queue_jobs(context, *(f"rnd_{n}" for n in range(count)))
    return context


def test_serving_counts_a_request_until_it_ends_even_when_it_fails() -> None:
    foreground = Foreground()
    with foreground.serving():
        with foreground.serving():
            assert foreground.in_flight == 2
        assert foreground.in_flight == 1
    with pytest.raises(RuntimeError), foreground.serving():
        raise RuntimeError("the handler failed")
    assert foreground.in_flight == 0


async def test_with_no_request_in_flight_jobs_run_without_pausing() -> None:
    context = await context_with_jobs(3)
    ran: list[str] = []

    async def work(ctx: Context, job: Job) -> None:
        ran.append(job.subject_id)

    worker = JobWorker(context, handlers={"test.job": work}, concurrency=1, step_aside=5.0)
    started = anyio.current_time()
    assert await worker.run_due() == 3
    assert sorted(ran) == ["rnd_0", "rnd_1", "rnd_2"]
    assert anyio.current_time() - started < 2.5  # one pause would have taken 5 s


async def test_jobs_wait_while_requests_are_in_flight_but_still_run() -> None:
    context = await context_with_jobs(3)
    started: list[float] = []

    async def work(ctx: Context, job: Job) -> None:
        started.append(anyio.current_time())

    worker = JobWorker(context, handlers={"test.job": work}, concurrency=1, step_aside=0.2)
    begin = anyio.current_time()
    with anyio.fail_after(10), context.foreground.serving():  # a request that never ends
        assert await worker.run_due() == 3
    # Each job waited one pause (timers may fire a clock tick early), then ran although the
    # request was still in flight.
    gaps = [later - earlier for earlier, later in zip([begin, *started], started, strict=False)]
    assert len(gaps) == 3 and all(0.19 <= gap < 2 for gap in gaps), gaps
    statuses = [job.status for n in range(3) for job in await context.storage.list_jobs(f"rnd_{n}")]
    assert statuses == ["succeeded"] * 3


async def test_a_request_that_ends_does_not_hold_up_later_jobs() -> None:
    context = await context_with_jobs(2)
    started: list[float] = []

    async def work(ctx: Context, job: Job) -> None:
        started.append(anyio.current_time())

    async def short_request() -> None:
        with context.foreground.serving():
            await anyio.sleep(0.3)

    worker = JobWorker(context, handlers={"test.job": work}, concurrency=1, step_aside=1.5)
    begin = anyio.current_time()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(short_request)
            await anyio.sleep(0)  # the request is in flight when the worker looks
            await worker.run_due()
    # The first job paused once; the request ended during that pause, so the second did not.
    assert started[0] - begin >= 1.49 and started[1] - started[0] < 0.75, started
