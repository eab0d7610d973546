"""The inline SQLite engine: group commit keeps every caller's guarantees."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from pathlib import Path

import anyio
import pytest
from piccolo.querystring import QueryString

from ravepilot_core.errors import BackendError
from ravepilot_core.sql import checkpointer as checkpointer_module
from ravepilot_core.sql.checkpointer import BACKSTOP_PAGES, checkpoint_mode
from ravepilot_core.sql.engine import InlineSQLiteEngine

pytestmark = pytest.mark.anyio


@pytest.fixture
async def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = InlineSQLiteEngine(str(tmp_path / "engine.db"))
    await engine.run_ddl("CREATE TABLE items (id INTEGER PRIMARY KEY, owner TEXT NOT NULL)")
    yield engine
    await engine.close()


def committed_ids(path: str) -> set[int]:
    """What another process would see: a separate connection reads only committed rows."""
    with sqlite3.connect(path) as reader:
        return {row[0] for row in reader.execute("SELECT id FROM items")}


async def test_each_caller_returns_only_after_its_rows_are_committed(
    engine: InlineSQLiteEngine,
) -> None:
    seen_after_return: dict[int, bool] = {}
    statements: list[str] = []
    engine._connect().set_trace_callback(statements.append)

    async def write(n: int) -> None:
        async with engine.transaction():
            await engine.run_querystring(QueryString("INSERT INTO items VALUES ({}, 'x')", n))
            await anyio.sleep(0)  # let others queue up behind us, so batches form
        seen_after_return[n] = n in committed_ids(engine.path)

    async with anyio.create_task_group() as group:
        for n in range(200):
            group.start_soon(write, n)
    assert all(seen_after_return.values()) and len(seen_after_return) == 200
    assert committed_ids(engine.path) == set(range(200))
    commits = statements.count("COMMIT")
    assert 200 / 64 <= commits < 200 / 4, f"callers should share commits, got {commits}"


async def test_a_failing_caller_rolls_back_only_its_own_changes(
    engine: InlineSQLiteEngine,
) -> None:
    outcomes: dict[int, str] = {}

    async def write(n: int) -> None:
        try:
            async with engine.transaction():
                await engine.run_querystring(QueryString("INSERT INTO items VALUES ({}, 'x')", n))
                await anyio.sleep(0)
                if n % 7 == 0:
                    raise ValueError("refused")
            outcomes[n] = "ok"
        except ValueError:
            outcomes[n] = "refused"

    async with anyio.create_task_group() as group:
        for n in range(100):
            group.start_soon(write, n)
    expected = {n for n in range(100) if n % 7}
    assert committed_ids(engine.path) == expected
    assert {n for n, outcome in outcomes.items() if outcome == "ok"} == expected


async def test_a_constraint_error_in_one_caller_leaves_the_batch_intact(
    engine: InlineSQLiteEngine,
) -> None:
    await engine.run_querystring(QueryString("INSERT INTO items VALUES (1, 'first')"))
    errors: list[BaseException] = []

    async def write(n: int) -> None:
        try:
            async with engine.transaction():
                await engine.run_querystring(QueryString("INSERT INTO items VALUES ({}, 'x')", n))
                await anyio.sleep(0)
        except sqlite3.IntegrityError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as group:
        for n in (2, 1, 3, 4):  # 1 is taken
            group.start_soon(write, n)
    assert len(errors) == 1
    assert committed_ids(engine.path) == {1, 2, 3, 4}


async def test_another_process_holding_the_write_lock_delays_without_blocking(
    engine: InlineSQLiteEngine,
) -> None:
    other = sqlite3.connect(engine.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0.01)

    async def release_soon() -> None:
        await anyio.sleep(0.3)
        other.execute("COMMIT")

    async with anyio.create_task_group() as group:
        group.start_soon(ticker)
        group.start_soon(release_soon)
        await engine.run_querystring(QueryString("INSERT INTO items VALUES (9, 'late')"))
        group.cancel_scope.cancel()
    other.close()
    assert ticks >= 10, "the event loop kept running while SQLite was locked"
    assert committed_ids(engine.path) == {9}


async def test_a_lock_held_too_long_is_a_clear_error(
    engine: InlineSQLiteEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ravepilot_core.sql.engine.LOCK_WAIT_SECONDS", 0.2)
    other = sqlite3.connect(engine.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(BackendError, match="locked by another process"):
            await engine.run_querystring(QueryString("INSERT INTO items VALUES (5, 'x')"))
    finally:
        other.execute("ROLLBACK")
        other.close()
    # The engine recovers once the other writer is gone.
    await engine.run_querystring(QueryString("INSERT INTO items VALUES (6, 'x')"))
    assert committed_ids(engine.path) == {6}


async def test_a_successor_cancelled_in_the_queue_does_not_strand_the_batch(
    engine: InlineSQLiteEngine,
) -> None:
    # A leaves its open batch for B, who queued for the lock; B is cancelled before it joins.
    # Someone must still commit A's row, and A must not wait forever.
    a_inside, a_may_leave = anyio.Event(), anyio.Event()

    async def a() -> None:
        async with engine.transaction():
            await engine.run_querystring(QueryString("INSERT INTO items VALUES (1, 'a')"))
            a_inside.set()
            await a_may_leave.wait()

    async def b() -> None:
        async with engine.transaction():
            await engine.run_querystring(QueryString("INSERT INTO items VALUES (2, 'b')"))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(a)
            await a_inside.wait()
            async with anyio.create_task_group() as queued:
                queued.start_soon(b)
                await anyio.sleep(0.01)  # b now waits for the lock
                # In one step: a may hand its batch on to b (b still counts as waiting), and
                # b is cancelled before it can join.
                a_may_leave.set()
                queued.cancel_scope.cancel()
    assert committed_ids(engine.path) == {1}
    # The engine is free again.
    await engine.run_querystring(QueryString("INSERT INTO items VALUES (3, 'c')"))
    assert committed_ids(engine.path) == {1, 3}


async def test_a_caller_cancelled_while_its_batch_commits_is_committed_anyway(
    engine: InlineSQLiteEngine,
) -> None:
    # A hands its batch to B and is cancelled while waiting for B's commit: A's row is
    # committed with B's, so A must not report a failure it did not have. It waits (shielded)
    # for the outcome and then sees its cancellation.
    a_inside, a_may_leave = anyio.Event(), anyio.Event()
    a_finished = []

    async def a() -> None:
        async with engine.transaction():
            await engine.run_querystring(QueryString("INSERT INTO items VALUES (1, 'a')"))
            a_inside.set()
            await a_may_leave.wait()
        a_finished.append(committed_ids(engine.path))

    async def b() -> None:
        async with engine.transaction():
            await engine.run_querystring(QueryString("INSERT INTO items VALUES (2, 'b')"))
            await anyio.sleep(0.05)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            async with anyio.create_task_group() as holder:
                holder.start_soon(a)
                await a_inside.wait()
                group.start_soon(b)
                await anyio.sleep(0.01)
                a_may_leave.set()
                await anyio.sleep(0.01)  # a handed off and now waits for b's commit
                holder.cancel_scope.cancel()
    assert a_finished == [{1, 2}]  # a left its transaction only after the commit


async def test_checkpoints_run_in_the_background_and_stop_with_the_engine(
    engine: InlineSQLiteEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpointer_module, "CHECK_INTERVAL", 0.01)
    database = Path(engine.path)
    before = database.stat().st_size
    # ~300 pages: below SQLite's own automatic threshold (1,000), so only the background
    # thread can copy them into the database file.
    for n in range(100):
        async with engine.transaction():
            await engine.run_sql("INSERT INTO items VALUES ({}, {})", (n, "x" * 12_000))
    writer = engine._connect()
    assert writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == BACKSTOP_PAGES
    checkpointer = engine._checkpointer
    assert checkpointer is not None
    # A look during the writes copies only part of the WAL; one after them copies it all.
    with anyio.fail_after(10):
        while database.stat().st_size < before + 1_000_000 or checkpointer.checkpoints < 1:
            await anyio.sleep(0.01)
    await engine.close()
    assert not checkpointer.running
    assert committed_ids(engine.path) == set(range(100))


async def test_a_long_wal_file_is_emptied_once_writes_pause(
    engine: InlineSQLiteEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpointer_module, "CHECK_INTERVAL", 0.01)
    wal = Path(f"{engine.path}-wal")
    async with engine.transaction():  # one commit: the WAL cannot start over half-way
        for n in range(100):
            await engine.run_sql("INSERT INTO items VALUES ({}, {})", (n, "x" * 12_000))
    assert wal.stat().st_size > 1_000_000
    # Left to SQLite, the file would keep its size until a write restarted it, and then too.
    # Lowered only now, so no truncation can happen between the writes above.
    monkeypatch.setattr(checkpointer_module, "TRUNCATE_BYTES", 64 * 1024)
    with anyio.fail_after(10):
        while wal.stat().st_size >= 64 * 1024:
            await anyio.sleep(0.01)
    assert committed_ids(engine.path) == set(range(100))


async def test_the_checkpointer_survives_its_directory_vanishing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(checkpointer_module, "CHECK_INTERVAL", 0.01)
    directory = tmp_path / "data"
    directory.mkdir()
    engine = InlineSQLiteEngine(str(directory / "engine.db"))
    await engine.run_ddl("CREATE TABLE items (id INTEGER PRIMARY KEY, owner TEXT NOT NULL)")
    checkpointer = engine._checkpointer
    assert checkpointer is not None
    shutil.rmtree(directory)
    directory.write_text("now a file where the data dir was")
    await anyio.sleep(0.3)  # some thirty looks
    assert checkpointer.running
    assert not (directory.is_dir())  # and it created nothing
    assert len([r for r in caplog.records if r.name == "ravepilot.sqlite"]) <= 1
    await engine.close()
    assert not checkpointer.running


BIG = checkpointer_module.TRUNCATE_BYTES


@pytest.mark.parametrize(
    ("written", "previous", "done", "mode"),
    [
        (None, None, None, None),  # no WAL
        ((1, 100), None, None, "PASSIVE"),  # something to copy
        ((1, 100), (1, 100), (1, 100), None),  # copied already, nothing new
        ((2, 100), (1, 100), (1, 100), "PASSIVE"),  # a commit since the last checkpoint
        ((1, BIG), (1, BIG), (1, BIG), "TRUNCATE"),  # long and quiet: empty it
        ((1, BIG), (1, BIG), None, "TRUNCATE"),
        # Long but being written to: never the checkpoint that holds writers up.
        ((2, BIG), (1, BIG), (1, BIG), "PASSIVE"),
        ((2, BIG + 1), (1, BIG), (2, BIG + 1), None),
    ],
)
def test_the_checkpoint_mode_empties_a_long_wal_only_while_writes_pause(
    written: tuple[int, int] | None,
    previous: tuple[int, int] | None,
    done: tuple[int, int] | None,
    mode: str | None,
) -> None:
    assert checkpoint_mode(written, previous=previous, done=done) == mode


async def test_after_commit_runs_once_the_batch_committed_and_never_after_a_rollback(
    engine: InlineSQLiteEngine,
) -> None:
    ran: list[tuple[str, bool]] = []

    async def write(n: int, fail: bool) -> None:
        async with engine.transaction():
            await engine.run_querystring(QueryString("INSERT INTO items VALUES ({}, 'x')", n))
            engine.after_commit(lambda: ran.append((f"w{n}", n in committed_ids(engine.path))))
            await anyio.sleep(0)  # others queue up: the callback waits for the shared commit
            if fail:
                raise RuntimeError("rolled back")

    async def maybe_fail(n: int, fail: bool) -> None:
        with contextlib.suppress(RuntimeError):
            await write(n, fail)

    async with anyio.create_task_group() as group:
        for n in range(10):
            group.start_soon(maybe_fail, n, False)
    assert sorted(ran) == sorted((f"w{n}", True) for n in range(10))  # each saw its own commit

    ran.clear()
    await maybe_fail(99, True)  # alone: its batch rolls back, so nothing commits
    assert ran == [] and 99 not in committed_ids(engine.path)

    with pytest.raises(RuntimeError, match="open transaction"):
        engine.after_commit(lambda: None)


def sqlite_temporary_files() -> list[str]:
    """SQLite's open temporary files (named ``etilqs_*``, unlinked at once) in this process."""
    found = []
    for descriptor in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            target = descriptor.readlink().name
            if target.startswith("etilqs_"):
                found.append(target)
    return found


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux's /proc")
async def test_a_savepoint_keeps_the_pages_it_may_restore_in_memory(
    engine: InlineSQLiteEngine,
) -> None:
    # Every caller writes inside a savepoint, so SQLite journals the original of each page it
    # changes. Past 64 KiB that journal used to spill into a temporary file: ~30 pwrite()
    # calls an invitation under load.
    async with engine.transaction():
        for n in range(400):
            await engine.run_sql("INSERT INTO items VALUES ({}, {})", (n, "x" * 2_000))
    async with engine.transaction():
        await engine.run_sql("UPDATE items SET owner = {}", ("y" * 2_000,))  # ~200 pages
        spilled = sqlite_temporary_files()
    assert spilled == []
    assert committed_ids(engine.path) == set(range(400))
