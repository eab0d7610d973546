"""The background worker: durable jobs and webhook dispatch, side by side in one task group."""

from __future__ import annotations

import logging

import anyio

from ravepilot_core.context import Context
from ravepilot_core.dispatch import Dispatcher
from ravepilot_core.jobs import JobWorker
from ravepilot_core.uploads import UploadService

__all__ = ["Worker"]

OUTSIDE_COMMITS_TIMEOUT = 60.0  # seconds per watch; each loop's own poll covers due retries
SWEEP_INTERVAL = 600.0  # seconds between looks for abandoned uploads (they expire after 24 h)

log = logging.getLogger("ravepilot.worker")


class Worker:
    """Runs the job worker and the webhook dispatcher until cancelled.

    Several may run at once, in this process or others, on one storage: every unit of work is
    claimed under a lease, so none is done twice at the same time and none is lost.
    """

    def __init__(
        self,
        context: Context,
        jobs: JobWorker,
        dispatcher: Dispatcher,
        uploads: UploadService | None = None,
    ) -> None:
        self._ctx = context
        self.jobs = jobs
        self.dispatcher = dispatcher
        self._uploads = uploads

    async def run(self) -> None:
        """Work until cancelled; started webhook attempts finish and are recorded first."""
        async with anyio.create_task_group() as group:
            group.start_soon(self.jobs.run)
            group.start_soon(self.dispatcher.run)
            group.start_soon(self._relay_outside_commits)
            if self._uploads is not None and self._ctx.media_store is not None:
                group.start_soon(self._sweep_uploads, self._uploads)

    async def _sweep_uploads(self, uploads: UploadService) -> None:
        """Delete uploads that were started and abandoned, now and then."""
        while True:
            try:
                while await uploads.sweep_expired():
                    pass
            except Exception:
                log.exception("sweeping expired uploads failed; trying again later")
            await anyio.sleep(SWEEP_INTERVAL)

    async def _relay_outside_commits(self) -> None:
        """Wake both loops when another process (an API server, a worker) commits."""
        while True:
            if await self._ctx.storage.wait_for_changes(OUTSIDE_COMMITS_TIMEOUT):
                self._ctx.wake_worker()

    async def run_due(self) -> int:
        """Run one batch of due jobs, then one of due deliveries; return how many in all."""
        return await self.jobs.run_due() + await self.dispatcher.run_due()
