"""Concurrent submissions written in shared batches on SQLite (ravepilot_core.sql.submission_batch).

The Storage contract checks what callers see; these check the batching itself: that it
happens, that one bad submission fails only its own caller, that cancelled callers (anyio's
or asyncio's cancellation) leave the others and the next batch alone and are never told
"created" for rows that were not committed, that a lock held elsewhere fails a batch once, and
that a caller's own transaction is respected.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from ravepilot_core.errors import BackendError
from ravepilot_core.mail import invitation_email_job
from ravepilot_core.models import SubmissionRecord
from ravepilot_core.sql import engine as engine_module
from ravepilot_core.sql.sqlite import open_sqlite_storage
from ravepilot_core.sql.storage import SQLStorage
from ravepilot_core.testing.contract import at, make_submission, new_workspace
from ravepilot_core.testing.contract_data import invitation_event

pytestmark = pytest.mark.anyio


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SQLStorage]:
    storage = open_sqlite_storage(f"sqlite:///{tmp_path}/rp.db")
    await storage.migrate()
    yield storage
    await storage.close()


def submissions(workspace_id: str, collector_id: str, count: int) -> list[SubmissionRecord]:
    return [
        make_submission(
            workspace_id, collector_id, email=f"c{i}@example.com", when=at(milliseconds=i)
        )
        for i in range(count)
    ]


async def create(
    storage: SQLStorage, submission: SubmissionRecord
) -> tuple[SubmissionRecord, bool]:
    event = invitation_event(submission.workspace_id, when=submission.created_at)
    job = invitation_email_job(submission, submission.created_at)
    return await storage.create_submission(submission, events=[event], jobs=[job])


def count_submission_inserts(storage: SQLStorage, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the number of rows of each INSERT INTO rp_submissions statement."""
    sizes: list[int] = []
    original = storage._insert

    async def counted(table: str, records: list[object], suffix: str = "") -> object:
        if table == "rp_submissions":
            sizes.append(len(records))
        return await original(table, records, suffix)  # type: ignore[arg-type]

    monkeypatch.setattr(storage, "_insert", counted)
    return sizes


async def test_concurrent_creates_share_statements(
    storage: SQLStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace, primary = await new_workspace(storage)
    sizes = count_submission_inserts(storage, monkeypatch)
    attempts = submissions(workspace.id, primary.id, 50)

    async with anyio.create_task_group() as group:
        for submission in attempts:
            group.start_soon(create, storage, submission)

    assert sum(sizes) == 50
    assert len(sizes) <= 3, sizes  # 50 callers ready at once: one batch, or a few
    listed = await storage.list_submissions(workspace.id, status=None, limit=100)
    assert {s.id for s in listed} == {s.id for s in attempts}
    assert len(await storage.list_events(workspace.id, limit=100)) == 50


async def test_a_bad_submission_fails_only_its_own_caller(storage: SQLStorage) -> None:
    workspace, primary = await new_workspace(storage)
    good = submissions(workspace.id, primary.id, 10)
    # Its collector does not exist (deleted a moment ago, say): the foreign key refuses it.
    bad = make_submission(workspace.id, "col_gone", email="bad@example.com", when=at(seconds=1))
    outcomes: dict[str, object] = {}

    async def attempt(submission: SubmissionRecord) -> None:
        try:
            outcomes[submission.id] = await create(storage, submission)
        except Exception as exc:
            outcomes[submission.id] = exc

    async with anyio.create_task_group() as group:
        for submission in [*good[:5], bad, *good[5:]]:
            group.start_soon(attempt, submission)

    assert isinstance(outcomes[bad.id], sqlite3.IntegrityError)
    assert all(outcomes[s.id] == (s, True) for s in good)
    listed = await storage.list_submissions(workspace.id, status=None, limit=100)
    assert {s.id for s in listed} == {s.id for s in good}
    assert len(await storage.list_events(workspace.id, limit=100)) == 10
    assert await storage.list_jobs(bad.id) == []


async def test_cancelled_callers_leave_the_others_and_the_next_batch_alone(
    storage: SQLStorage,
) -> None:
    workspace, primary = await new_workspace(storage)
    attempts = submissions(workspace.id, primary.id, 20)
    finished: dict[str, tuple[SubmissionRecord, bool]] = {}

    async def attempt(submission: SubmissionRecord, scope: anyio.CancelScope) -> None:
        with scope:
            finished[submission.id] = await create(storage, submission)

    scopes = [anyio.CancelScope() for _ in attempts]
    async with anyio.create_task_group() as group:
        for submission, scope in zip(attempts, scopes, strict=True):
            group.start_soon(attempt, submission, scope)
        await anyio.lowlevel.checkpoint()  # every caller has queued; the first writes
        for scope in scopes[::2]:  # the writer among them
            scope.cancel()

    # Callers who were not cancelled were answered, and their rows are there.
    for submission in attempts[1::2]:
        assert finished[submission.id] == (submission, True)
    listed = {s.id for s in await storage.list_submissions(workspace.id, status=None, limit=100)}
    assert {s.id for s in attempts[1::2]} <= listed
    # A cancelled caller's rows were written whole or not at all.
    for submission in attempts[::2]:
        jobs = await storage.list_jobs(submission.id)
        assert len(jobs) == (1 if submission.id in listed else 0)
    assert len(await storage.list_events(workspace.id, limit=100)) == len(listed)

    # Nothing is left waiting: the next callers are written as usual.
    later = make_submission(workspace.id, primary.id, email="later@example.com", when=at(seconds=9))
    with anyio.fail_after(5):
        assert await create(storage, later) == (later, True)


async def test_inside_a_transaction_the_rows_belong_to_it(storage: SQLStorage) -> None:
    workspace, primary = await new_workspace(storage)
    submission = make_submission(workspace.id, primary.id)

    with pytest.raises(RuntimeError, match="changed my mind"):
        async with storage.engine.transaction():
            assert await create(storage, submission) == (submission, True)
            raise RuntimeError("changed my mind")

    assert await storage.get_submission(workspace.id, submission.id) is None
    assert await storage.list_jobs(submission.id) == []
    assert await storage.list_events(workspace.id) == []


async def test_an_asyncio_cancelled_writer_never_leaves_callers_told_created_wrongly(
    storage: SQLStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # anyio's shield does not stop asyncio's own cancellation (asyncio.timeout in an embedding
    # app, task.cancel()). The writer is cancelled here while its batch's transaction is open.
    workspace, primary = await new_workspace(storage)
    existing = make_submission(workspace.id, primary.id, email="dup@example.com")
    assert (await storage.create_submission(existing))[1] is True

    batcher = storage._submissions
    original = batcher._existing

    async def slow_existing(submission: SubmissionRecord) -> SubmissionRecord:
        await anyio.sleep(0.2)  # a round trip that takes a while, as on Postgres
        return await original(submission)

    monkeypatch.setattr(batcher, "_existing", slow_existing)
    writer = make_submission(workspace.id, primary.id, email="w@example.com", when=at(seconds=1))
    fresh = make_submission(workspace.id, primary.id, email="f@example.com", when=at(seconds=2))
    repeat = make_submission(workspace.id, primary.id, email="dup@example.com", when=at(seconds=3))
    outcomes: dict[str, object] = {}

    async def write_with_timeout() -> None:
        try:
            async with asyncio.timeout(0.05):
                outcomes["writer"] = await storage.create_submission(writer)
        except TimeoutError:
            outcomes["writer"] = "timed out"

    async def follow(submission: SubmissionRecord) -> None:
        try:
            outcomes[submission.id] = await storage.create_submission(submission)
        except BackendError as exc:
            outcomes[submission.id] = exc

    async with anyio.create_task_group() as group:
        group.start_soon(write_with_timeout)
        group.start_soon(follow, fresh)
        group.start_soon(follow, repeat)

    assert outcomes["writer"] == "timed out"
    with sqlite3.connect(tmp_path / "rp.db") as other_process:
        committed = {row[0] for row in other_process.execute("SELECT id FROM rp_submissions")}
    for submission in (fresh, repeat):
        outcome = outcomes[submission.id]
        assert isinstance(outcome, BackendError), outcome  # told to retry, never misled
        assert "retry" in str(outcome)
    assert committed == {existing.id}
    # The next callers are written as usual: the writer's turn was passed on.
    with anyio.fail_after(5):
        assert await create(storage, fresh) == (fresh, True)


async def test_a_write_lock_held_elsewhere_fails_the_batch_once_not_once_per_caller(
    storage: SQLStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "LOCK_WAIT_SECONDS", 0.3)  # stands in for 10 s
    workspace, primary = await new_workspace(storage)
    other_process = sqlite3.connect(tmp_path / "rp.db", isolation_level=None)
    other_process.execute("BEGIN IMMEDIATE")  # a long migration or backup elsewhere
    errors: list[Exception] = []

    async def attempt(submission: SubmissionRecord) -> None:
        with pytest.raises(BackendError, match="locked") as raised:
            await create(storage, submission)
        errors.append(raised.value)

    started = time.monotonic()
    try:
        async with anyio.create_task_group() as group:
            for submission in submissions(workspace.id, primary.id, 10):
                group.start_soon(attempt, submission)
    finally:
        other_process.execute("ROLLBACK")
        other_process.close()
    assert len(errors) == 10
    assert time.monotonic() - started < 1.5  # one wait of 0.3 s, not ten in a row


async def test_a_caller_that_stops_waiting_before_its_batch_begins_is_left_out(
    storage: SQLStorage,
) -> None:
    workspace, primary = await new_workspace(storage)
    first, gone, kept = submissions(workspace.id, primary.id, 3)
    outcomes: dict[str, tuple[SubmissionRecord, bool]] = {}
    scope = anyio.CancelScope()

    async def attempt(submission: SubmissionRecord, scope: anyio.CancelScope) -> None:
        with scope:
            outcomes[submission.id] = await create(storage, submission)

    holding = anyio.Event()
    release = anyio.Event()

    async def hold_the_lock() -> None:
        async with storage.engine.transaction():  # the batch cannot begin while this is open
            holding.set()
            await release.wait()

    async with anyio.create_task_group() as group:
        group.start_soon(hold_the_lock)
        await holding.wait()
        group.start_soon(attempt, first, anyio.CancelScope())  # writes the batch
        group.start_soon(attempt, gone, scope)
        group.start_soon(attempt, kept, anyio.CancelScope())
        await anyio.sleep(0.05)  # all three have queued behind the lock
        scope.cancel()
        await anyio.sleep(0.05)
        release.set()

    assert outcomes == {first.id: (first, True), kept.id: (kept, True)}
    assert await storage.get_submission(workspace.id, gone.id) is None
    assert await storage.list_jobs(gone.id) == []


async def test_the_same_record_twice_at_once_is_created_once(storage: SQLStorage) -> None:
    workspace, primary = await new_workspace(storage)
    submission = make_submission(workspace.id, primary.id)
    results: list[tuple[SubmissionRecord, bool]] = []

    async def attempt() -> None:
        results.append(await create(storage, submission))

    async with anyio.create_task_group() as group:
        group.start_soon(attempt)
        group.start_soon(attempt)

    assert sorted(created for _, created in results) == [False, True]
    assert all(record == submission for record, _ in results)
    assert len(await storage.list_jobs(submission.id)) == 1


async def test_rows_are_inserted_in_collector_and_email_order(
    storage: SQLStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two processes writing overlapping batches (Postgres) then lock the unique index's entries
    # in the same order, so they cannot deadlock.
    workspace, primary = await new_workspace(storage)
    orders: list[list[str]] = []
    original = storage._insert

    async def recorded(table: str, records: list[dict[str, object]], suffix: str = "") -> object:
        if table == "rp_submissions":
            orders.append([str(record["customer_email"]) for record in records])
        return await original(table, records, suffix)  # type: ignore[arg-type]

    monkeypatch.setattr(storage, "_insert", recorded)
    async with anyio.create_task_group() as group:
        for submission in reversed(submissions(workspace.id, primary.id, 12)):
            group.start_soon(create, storage, submission)

    assert orders and all(order == sorted(order) for order in orders)
    assert sum(len(order) for order in orders) == 12
