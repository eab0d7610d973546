"""What only a multi-writer database does: shared claims, wake-ups, restarts, bulk writes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import anyio
import asyncpg
import pytest
from postgres_server import SERVER_URL

from ravepilot_core.errors import BackendError, ConfigurationError
from ravepilot_core.sql.migrations import MIGRATIONS
from ravepilot_core.testing.contract_data import (
    at,
    invitation_event,
    make_endpoint,
    make_job,
    make_submission,
    new_workspace,
)
from ravepilot_core.testing.delivery_contract import (
    claim,
    record,
    success,
    with_deliveries,
)
from ravepilot_postgres import PostgresStorage, open_postgres_storage, parse_postgres_url

pytestmark = pytest.mark.anyio


@pytest.fixture
async def storage(database_url: str) -> AsyncIterator[PostgresStorage]:
    storage = await open_postgres_storage(database_url)
    await storage.migrate()
    yield storage
    await storage.close()


@pytest.fixture
async def other(database_url: str, storage: PostgresStorage) -> AsyncIterator[PostgresStorage]:
    """A second storage on the same database: another process, as far as Postgres can tell."""
    other = await open_postgres_storage(database_url)
    yield other
    await other.close()


async def test_two_processes_claiming_at_once_never_take_the_same_delivery(
    storage: PostgresStorage, other: PostgresStorage
) -> None:
    await with_deliveries(storage, 1_000, endpoints=4)
    claimed: list[str] = []

    async def drain(store: PostgresStorage, worker: str) -> None:
        while tasks := await claim(store, at(seconds=1), worker=worker, limit=40):
            claimed.extend(task.delivery_id for task in tasks)

    async with anyio.create_task_group() as group:
        for n in range(4):
            group.start_soon(drain, storage, f"a{n}")
            group.start_soon(drain, other, f"b{n}")
    # 4 endpoints x 1,000 events; every delivery leased exactly once.
    assert len(claimed) == len(set(claimed)) == 4_000


async def test_new_work_in_another_process_wakes_a_waiting_worker_at_once(
    storage: PostgresStorage, other: PostgresStorage
) -> None:
    await storage.wait_for_changes(0.01)  # starts listening
    workspace, primary = await new_workspace(other)
    await other.create_webhook_endpoint(make_endpoint(workspace.id))
    # Changes that add no work wake nobody.
    assert await storage.wait_for_changes(0.3) is False

    woke_after: list[float] = []

    async def wait() -> None:
        started = time.monotonic()
        assert await storage.wait_for_changes(10) is True
        woke_after.append(time.monotonic() - started)

    async with anyio.create_task_group() as group:
        group.start_soon(wait)
        await anyio.sleep(0.1)
        await other.create_submission(
            make_submission(workspace.id, primary.id), events=[invitation_event(workspace.id)]
        )
    assert woke_after and woke_after[0] < 2, woke_after


async def test_a_lost_listening_connection_is_reopened_and_reported_as_a_change(
    storage: PostgresStorage, other: PostgresStorage, admin: asyncpg.Connection, schema: str
) -> None:
    await storage.wait_for_changes(0.01)
    killed = await admin.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name = $1 AND query LIKE 'LISTEN%'",
        schema,
    )
    assert killed == 1
    # Notices sent while nobody listened are lost, so the next wait says "look for work".
    with anyio.fail_after(5):
        assert await storage.wait_for_changes(10) is True
    await storage.wait_for_changes(0.01)  # listening again

    async def produce() -> None:
        await anyio.sleep(0.1)
        await with_deliveries(other, 1)

    async with anyio.create_task_group() as group:
        group.start_soon(produce)
        with anyio.fail_after(5):
            assert await storage.wait_for_changes(10) is True


async def test_connections_killed_by_a_restart_are_replaced_without_losing_data(
    storage: PostgresStorage, admin: asyncpg.Connection, schema: str
) -> None:
    workspace, _ = await new_workspace(storage)
    # Fill the pool with live connections, then kill every one (what a restart does).
    async with anyio.create_task_group() as group:
        for _ in range(10):
            group.start_soon(storage.ping)
    killed = await admin.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
        schema,
    )
    assert killed >= 1
    # Reads and new transactions go to fresh connections; nothing is lost.
    assert await storage.get_workspace(workspace.id) == workspace
    await storage.create_webhook_endpoint(make_endpoint(workspace.id))
    assert len(await storage.list_webhook_endpoints(workspace.id)) == 1


async def test_a_cancelled_transaction_gives_its_connection_back(database_url: str) -> None:
    storage = await open_postgres_storage(database_url + "&pool_max=2")
    try:
        await storage.migrate()
        workspace, primary = await new_workspace(storage)

        async def stuck() -> None:
            async with storage.engine.transaction():
                await storage._all("SELECT pg_sleep(10)")

        for _ in range(5):
            with anyio.move_on_after(0.1):
                await stuck()
        # Had any cancelled transaction kept its connection, a pool of two would be stuck now.
        with anyio.fail_after(5):
            for _ in range(3):
                await storage.create_submission(make_submission(workspace.id, primary.id))
    finally:
        await storage.close()


async def test_migrations_started_by_several_processes_at_once_run_once(
    database_url: str, admin: asyncpg.Connection, schema: str
) -> None:
    storages = [await open_postgres_storage(database_url) for _ in range(4)]
    try:
        async with anyio.create_task_group() as group:
            for storage in storages:
                group.start_soon(storage.migrate)
    finally:
        for storage in storages:
            await storage.close()
    applied = await admin.fetch(f"SELECT id FROM {schema}.rp_schema_migrations ORDER BY id")
    assert [row["id"] for row in applied] == [f"{name[1:]}" for name in MIGRATIONS]


async def test_bulk_writes_beyond_the_parameter_limit_are_chunked(
    storage: PostgresStorage,
) -> None:
    # 5,000 deliveries (9 columns) and 5,000 attempts (8 columns) exceed 32,767 parameters.
    await with_deliveries(storage, 5_000)  # created over 5 s
    tasks = await claim(storage, at(seconds=10), limit=5_000)
    assert len(tasks) == 5_000
    assert await record(storage, [success(task, at(seconds=2)) for task in tasks]) == 5_000
    stats = await storage.delivery_queue_stats()
    assert stats.pending == 0
    assert len(await storage.list_delivery_attempts(tasks[-1].delivery_id)) == 1


async def test_an_unreachable_server_is_a_clear_backend_error() -> None:
    with pytest.raises(BackendError, match="PostgreSQL could not be reached"):
        await open_postgres_storage("postgresql://postgres@127.0.0.1:1/test")


def test_pool_options_are_taken_off_the_url_and_the_rest_left_for_asyncpg() -> None:
    dsn, low, high = parse_postgres_url(
        "postgres://u:p%40ss@db:5432/rp?sslmode=require&pool_min=2&pool_max=20"
    )
    assert (dsn, low, high) == ("postgresql://u:p%40ss@db:5432/rp?sslmode=require", 2, 20)
    assert parse_postgres_url("postgresql://db/rp")[1:] == (1, 10)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://", "needs a server or a database"),
        ("postgresql://db/rp?pool_max=0", "pool_max in the database URL must be a whole number"),
        ("postgresql://db/rp?pool_min=x", "pool_min in the database URL must be a whole number"),
        ("postgresql://db/rp?pool_min=5&pool_max=2", "pool_min \\(5\\) is larger than pool_max"),
        ("mysql://db/rp", "not a postgresql:// URL"),
    ],
)
def test_bad_urls_say_what_to_fix(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_postgres_url(url)


async def test_a_database_that_does_not_exist_is_a_configuration_error(admin: object) -> None:
    missing = urlsplit(SERVER_URL)._replace(path="/no_such_database_here").geturl()
    with pytest.raises(ConfigurationError, match="does not exist; check RAVEPILOT_DATABASE_URL"):
        await open_postgres_storage(missing)


async def test_a_transaction_that_adds_deliveries_and_jobs_notifies_once(
    storage: PostgresStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace, primary = await new_workspace(storage)
    await storage.create_webhook_endpoint(make_endpoint(workspace.id))
    run_sql = storage.engine.run_sql  # what the storage's statements run through
    notices: list[str] = []

    async def counting(template: str, args: Any) -> Any:
        if "pg_notify" in template:
            notices.append(template)
        return await run_sql(template, args)

    monkeypatch.setattr(storage, "_run_sql", counting)
    submission = make_submission(workspace.id, primary.id)
    await storage.create_submission(
        submission,
        events=[invitation_event(workspace.id)],
        jobs=[make_job(workspace.id, submission.id)],
    )
    assert len(notices) == 1
    # Each transaction announces its own work.
    await storage.create_submission(
        make_submission(workspace.id, primary.id, email="bo@example.com"),
        events=[invitation_event(workspace.id)],
    )
    assert len(notices) == 2


async def test_two_processes_batching_the_same_invitations_do_not_deadlock(
    storage: PostgresStorage, other: PostgresStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each process writes its concurrent invitations as one multi-row insert; in opposite
    # arrival orders they would take the unique index's locks in opposite orders (Postgres
    # then kills one with "deadlock detected" after deadlock_timeout, and the batch is written
    # again one caller at a time). Rows are inserted in (collector, email) order instead.
    workspace, primary = await new_workspace(storage)
    rewritten = 0
    for store in (storage, other):
        batcher = store._submissions
        write_alone = batcher._write_alone

        async def counted(pending: Any, write_alone: Any = write_alone) -> None:
            nonlocal rewritten
            rewritten += 1
            await write_alone(pending)

        monkeypatch.setattr(batcher, "_write_alone", counted)

    for round_ in range(5):
        emails = [f"r{round_}-{i}@example.com" for i in range(64)]
        created: list[bool] = []

        async def invite(
            store: PostgresStorage, email: str, ms: int, created: list[bool] = created
        ) -> None:
            submission = make_submission(
                workspace.id, primary.id, email=email, when=at(milliseconds=ms)
            )
            created.append((await store.create_submission(submission))[1])

        async with anyio.create_task_group() as group:
            for i, email in enumerate(emails):
                group.start_soon(invite, storage, email, i)
            for i, email in enumerate(reversed(emails)):
                group.start_soon(invite, other, email, 1_000 + i)
        assert created.count(True) == 64

    assert rewritten == 0
