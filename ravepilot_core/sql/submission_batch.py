"""Invitations that arrive together are written together: one INSERT per table for all of them.

Creating an invitation writes a submission, its ``invitation.created`` event (with a delivery per
subscribed webhook endpoint) and usually its email job. Written one caller at a time, that is four
statements, a savepoint and a turn of the engine's lock per invitation: ~180 µs of the ~400 µs an
invitation costs in-process on SQLite, against ~50 µs for the rows themselves. Under load many
invitations are waiting to be written at any moment, and their writes have the same shape, so
the caller whose turn it is writes everybody's that has queued by then: a multi-row INSERT per
table, in one transaction.

What each caller sees does not change:

- it returns once *its* rows are committed, with ``(its record, True)``; or, when the customer
  already had a submission in the collector (written earlier, or by a caller ahead of it in the
  same batch), with ``(that submission, False)`` and nothing of its own written;
- a batch that fails is written again one caller at a time, each in a transaction of its own, so
  a bad submission (its collector deleted a moment ago) fails its own caller and nobody else;
- a caller already inside a transaction is not batched: its rows belong to that transaction.

The writing is shielded from cancellation, as the engine's group commit is: callers are waiting
for its outcome, and a cancelled caller's rows may be committed anyway (by the time it could be
told, they may already be).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import anyio

from ravepilot_core.errors import BackendError
from ravepilot_core.models import EventRecord, Job, SubmissionRecord
from ravepilot_core.sql import rows

if TYPE_CHECKING:
    from ravepilot_core.sql.statements import SQLStatements

__all__ = ["MAX_BATCH", "SubmissionBatcher"]

#: Submissions per batch: 64 rows of 15 columns stay far below SQLite's bound-parameter limit.
MAX_BATCH = 64

_EXISTING = "SELECT * FROM rp_submissions WHERE collector_id = {} AND customer_email = {}"


class _Pending:
    """One caller's submission to write, and then how that went."""

    __slots__ = ("error", "events", "jobs", "result", "submission")

    def __init__(
        self, submission: SubmissionRecord, events: Sequence[EventRecord], jobs: Sequence[Job]
    ) -> None:
        self.submission = submission
        self.events = events
        self.jobs = jobs
        self.result: tuple[SubmissionRecord, bool] | None = None
        self.error: Exception | None = None

    def outcome(self) -> tuple[SubmissionRecord, bool]:
        if self.error is not None:
            raise self.error
        if self.result is None:  # the writer stopped on something worse than an Exception
            raise BackendError("the submission was not written; retry")
        return self.result


class _Batch:
    """Callers' submissions written in one transaction; the first caller to join writes it."""

    __slots__ = ("done", "pending", "turn")

    def __init__(self) -> None:
        self.pending: list[_Pending] = []
        self.turn = anyio.Event()  # the batch before it is written: this one's writer may start
        self.done = anyio.Event()  # written, or failed: every caller's outcome is known


class SubmissionBatcher:
    """Writes the submissions of concurrent ``create_submission`` calls in shared batches."""

    def __init__(self, statements: SQLStatements) -> None:
        self._sql = statements
        self._queued: list[_Batch] = []  # not yet being written, oldest first
        self._writing = False  # a batch is being written, or its writer was given the turn

    async def create(
        self,
        submission: SubmissionRecord,
        events: Sequence[EventRecord],
        jobs: Sequence[Job],
    ) -> tuple[SubmissionRecord, bool]:
        """Insert ``submission`` with its events and jobs unless its customer has one already."""
        pending = _Pending(submission, events, jobs)
        if self._queued and len(self._queued[-1].pending) < MAX_BATCH:
            batch = self._queued[-1]
            batch.pending.append(pending)
            # Not shielded: a caller that stops waiting only stops hearing how it went.
            await batch.done.wait()
            return pending.outcome()

        batch = _Batch()
        batch.pending.append(pending)
        self._queued.append(batch)
        # Shielded: everybody who joins this batch waits for us to write it.
        with anyio.CancelScope(shield=True):
            if self._writing:
                await batch.turn.wait()
            self._writing = True
            try:
                await self._write(batch)
            finally:
                if batch in self._queued:  # stopped before its transaction began
                    self._queued.remove(batch)
                batch.done.set()
                if self._queued:
                    self._queued[0].turn.set()  # the next batch's writer goes on
                else:
                    self._writing = False
        return pending.outcome()

    async def write_one(
        self,
        submission: SubmissionRecord,
        events: Sequence[EventRecord],
        jobs: Sequence[Job],
    ) -> tuple[SubmissionRecord, bool]:
        """What :meth:`create` does, inside the caller's own transaction and unbatched."""
        pending = _Pending(submission, events, jobs)
        await self._write_together([pending])
        return pending.outcome()

    async def _write(self, batch: _Batch) -> None:
        try:
            async with self._sql.engine.transaction():
                # Closed to newcomers only now: whoever came while we waited for the lock joined.
                self._queued.remove(batch)
                await self._write_together(batch.pending)
        except Exception:
            if batch in self._queued:  # the transaction never began
                self._queued.remove(batch)
            for pending in batch.pending:
                await self._write_alone(pending)

    async def _write_together(self, batch: Sequence[_Pending]) -> None:
        """One INSERT per table for the whole batch; fills in each caller's result."""
        sql = self._sql
        inserted = {
            row["id"]
            for row in await sql._insert(
                "rp_submissions",
                [rows.submission_row(pending.submission) for pending in batch],
                " ON CONFLICT DO NOTHING RETURNING id",
            )
        }
        created = [pending for pending in batch if pending.submission.id in inserted]
        await sql._write_events([event for pending in created for event in pending.events])
        await sql._write_jobs([job for pending in created for job in pending.jobs])
        for pending in batch:
            if pending.submission.id in inserted:
                pending.result = (pending.submission, True)
            else:
                pending.result = (await self._existing(pending.submission), False)

    async def _write_alone(self, pending: _Pending) -> None:
        """Write one caller's submission in a transaction of its own; record what happened."""
        try:
            async with self._sql.engine.transaction():
                await self._write_together([pending])
        except Exception as exc:
            pending.result, pending.error = None, exc

    async def _existing(self, submission: SubmissionRecord) -> SubmissionRecord:
        row = await self._sql._one(_EXISTING, submission.collector_id, submission.customer.email)
        if row is None:  # the conflict was on another unique column: a bug, not a race
            raise BackendError("submission insert conflicted unexpectedly; retry")
        return rows.submission_from_row(row)
