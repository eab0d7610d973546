"""A job worker's context over memory storage, and jobs queued in it, for the job tests."""

from __future__ import annotations

from ravepilot_core.context import Context
from ravepilot_core.crypto import Keyring
from ravepilot_core.models import Job
from ravepilot_core.testing import FrozenClock, MemoryMailer, MemoryStorage
from ravepilot_core.testing.contract_data import make_job, make_submission, new_workspace


def job_context(storage: MemoryStorage, clock: FrozenClock) -> Context:
    """What a job worker needs, over ``storage`` and ``clock``."""
    return Context(
        storage=storage,
        mailer=MemoryMailer(),
        clock=clock,
        keyring=Keyring("k" * 40),
        public_url="https://x.example",
        mail_from="x@x.example",
    )


async def queue_jobs(context: Context, *subjects: str) -> list[Job]:
    """Queue one due ``test.job`` per subject, in a new workspace of ``context``'s storage."""
    workspace, collector = await new_workspace(context.storage)
    now = context.clock.now()
    jobs = [make_job(workspace.id, subject, run_at=now, when=now) for subject in subjects]
    await context.storage.create_submission(make_submission(workspace.id, collector.id), jobs=jobs)
    return jobs
