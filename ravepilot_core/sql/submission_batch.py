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
  same batch), with ``(that submission, False)`` and nothing of its own written. Answers are
  handed out only after the batch's transaction has ended well;
- a batch whose statements fail is written again one caller at a time, each in a transaction of
  its own, so a bad submission (its collector deleted a moment ago) fails its own caller and
  nobody else. When the transaction could not even begin (another process held SQLite's write
  lock past the wait), every caller gets that error at once: each would have waited as long;
- a caller that stops waiting before its batch begins is left out of it, as it would have been
  without batches; one that stops later may find its rows committed (the API is idempotent);
- a caller already inside a transaction is not batched: its rows belong to that transaction.

The writer of a batch is shielded from anyio cancellation: others wait for it. An asyncio
cancellation (``task.cancel()``, ``asyncio.timeout``) still reaches it; then its batch's callers
are told their rows may not have been written ("retry"), and the next batch's writer goes on.

Rows are inserted in (collector, email) order, so two processes writing overlapping batches on
Postgres take the unique index's locks in the same order and cannot deadlock.
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

    __slots__ = ("abandoned", "error", "events", "jobs", "result", "submission")

    def __init__(
        self, submission: SubmissionRecord, events: Sequence[EventRecord], jobs: Sequence[Job]
    ) -> None:
        self.submission = submission
        self.events = events
        self.jobs = jobs
        self.abandoned = False  # its caller stopped waiting
        self.result: tuple[SubmissionRecord, bool] | None = None
        self.error: Exception | None = None

    def outcome(self) -> tuple[SubmissionRecord, bool]:
        if self.error is not None:
            raise self.error
        if self.result is None:  # its writer was cancelled, or stopped on a BaseException
            raise BackendError("the submission may not have been written; retry")
        return self.result


class _Batch:
    """Callers' submissions written in one transaction; the first caller to join writes it."""

    __slots__ = ("done", "pending", "turn")

    def __init__(self) -> None:
        self.pending: list[_Pending] = []
        self.turn = anyio.Event()  # set while its writer holds the writer's turn
        self.done = anyio.Event()  # every caller's outcome is known


class SubmissionBatcher:
    """Writes the submissions of concurrent ``create_submission`` calls in shared batches."""

    def __init__(self, statements: SQLStatements) -> None:
        self._sql = statements
        self._queued: list[_Batch] = []  # not yet being written, oldest first
        self._writing = False  # some batch holds the writer's turn

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
            try:
                await batch.done.wait()
            except BaseException:
                pending.abandoned = True  # left out, unless its batch has begun already
                raise
            return pending.outcome()

        batch = _Batch()
        batch.pending.append(pending)
        self._queued.append(batch)
        try:
            # Shielded: everybody who joins this batch waits for us to write it.
            with anyio.CancelScope(shield=True):
                if self._writing:
                    await batch.turn.wait()  # set by the writer before us
                else:
                    self._writing = True
                    batch.turn.set()
                await self._write(batch)
        finally:
            if batch in self._queued:  # stopped before its transaction began
                self._queued.remove(batch)
            batch.done.set()
            if batch.turn.is_set():  # we held the writer's turn: pass it on
                if self._queued:
                    self._queued[0].turn.set()
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
        (result,) = await self._insert([_Pending(submission, events, jobs)])
        return result

    async def _write(self, batch: _Batch) -> None:
        members: list[_Pending] = []
        began = False
        try:
            async with self._sql.engine.transaction():
                began = True
                # Closed to newcomers only now: whoever came while we waited for the lock joined.
                self._queued.remove(batch)
                members = [pending for pending in batch.pending if not pending.abandoned]
                results = await self._insert(members)
        except Exception as exc:
            if not began:
                for pending in batch.pending:
                    pending.error = exc
                return
            for pending in members:
                await self._write_alone(pending)
            return
        for pending, result in zip(members, results, strict=True):
            pending.result = result

    async def _write_alone(self, pending: _Pending) -> None:
        """Write one caller's submission in a transaction of its own; record what happened."""
        try:
            async with self._sql.engine.transaction():
                (result,) = await self._insert([pending])
        except Exception as exc:
            pending.error = exc
        else:
            pending.result = result

    async def _insert(self, members: Sequence[_Pending]) -> list[tuple[SubmissionRecord, bool]]:
        """One INSERT per table for all ``members``; what each caller is to be told, in order."""
        sql = self._sql
        in_lock_order = sorted(
            members, key=lambda p: (p.submission.collector_id, p.submission.customer.email)
        )
        inserted = {
            row["id"]
            for row in await sql._insert(
                "rp_submissions",
                [rows.submission_row(pending.submission) for pending in in_lock_order],
                " ON CONFLICT DO NOTHING RETURNING id",
            )
        }
        fresh = []  # per member, in arrival order: the first of two identical ids wins
        for pending in members:
            fresh.append(pending.submission.id in inserted)
            inserted.discard(pending.submission.id)
        created = [pending for pending, new in zip(members, fresh, strict=True) if new]
        await sql._write_events([event for pending in created for event in pending.events])
        await sql._write_jobs([job for pending in created for job in pending.jobs])
        return [
            (pending.submission, True) if new else (await self._existing(pending.submission), False)
            for pending, new in zip(members, fresh, strict=True)
        ]

    async def _existing(self, submission: SubmissionRecord) -> SubmissionRecord:
        row = await self._sql._one(_EXISTING, submission.collector_id, submission.customer.email)
        if row is None:  # the conflict was on another unique column: a bug, not a race
            raise BackendError("submission insert conflicted unexpectedly; retry")
        return rows.submission_from_row(row)
