"""Concurrent submissions written in shared batches on SQLite (ravepilot_core.sql.submission_batch).

The Storage contract checks what callers see; these check the batching itself: that it
happens, that one bad submission fails only its own caller, that cancelled callers leave the
others (and the next batch) alone, and that a caller's own transaction is respected.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from ravepilot_core.mail import invitation_email_job
from ravepilot_core.models import SubmissionRecord
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
