"""The Storage contract, run against every backend in this distribution."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

import ravepilot_core.testing
from ravepilot_core.errors import ConfigurationError
from ravepilot_core.mime import render_mime
from ravepilot_core.models import Email
from ravepilot_core.outbox import open_outbox_mailer
from ravepilot_core.protocols import Clock, Mailer, Storage
from ravepilot_core.sql.sqlite import open_sqlite_storage
from ravepilot_core.testing import (
    FrozenClock,
    MailerContract,
    MemoryMailer,
    StorageContract,
    open_memory_mailer,
    open_memory_storage,
)
from ravepilot_core.testing.contract import T0, at, make_api_key, make_submission, new_workspace
from ravepilot_core.testing.mailer_contract import Received


class TestMemoryStorage(StorageContract):
    @pytest.fixture
    async def storage(self) -> AsyncIterator[Storage]:
        storage = open_memory_storage("memory://")
        await storage.migrate()
        yield storage
        await storage.close()


class TestSQLiteStorage(StorageContract):
    @pytest.fixture
    async def storage(self, tmp_path: Path) -> AsyncIterator[Storage]:
        storage = open_sqlite_storage(f"sqlite:///{tmp_path}/rp.db")
        await storage.migrate()
        yield storage
        await storage.close()


@pytest.mark.anyio
async def test_sqlite_migrate_twice_and_share_a_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/shared/rp.db"
    first = open_sqlite_storage(url)
    second = open_sqlite_storage(url)
    try:
        await first.migrate()
        workspace, primary = await new_workspace(first, "acme")
        await first.migrate()
        await second.migrate()  # another process starting on a migrated file
        assert await second.get_workspace_by_slug("acme") == workspace

        key = make_api_key(workspace.id)
        await second.create_api_key(key)
        assert await first.get_api_key_by_hash(key.key_hash) == key

        submission = make_submission(workspace.id, primary.id, when=at(seconds=1))
        assert (await first.create_submission(submission))[1] is True
        again = make_submission(workspace.id, primary.id, when=at(seconds=2))
        assert await second.create_submission(again) == (submission, False)
        assert await second.list_submissions(workspace.id, status=None, limit=10) == [submission]
        assert await first.revoke_api_key(key.id, T0) is not None
        revoked = await second.get_api_key_by_hash(key.key_hash)
        assert revoked is not None and revoked.revoked_at == T0
    finally:
        await first.close()
        await second.close()


# -- the other doubles of ravepilot_core.testing ---------------------------------------------------
def test_testing_exports_a_sorted_all() -> None:
    exported = ravepilot_core.testing.__all__
    assert exported == sorted(exported)
    assert all(getattr(ravepilot_core.testing, name) is not None for name in exported)


def test_frozen_clock() -> None:
    clock = FrozenClock()
    assert isinstance(clock, Clock)
    assert clock.now() == datetime(2026, 1, 1, tzinfo=UTC)
    assert clock.advance(minutes=10, microseconds=1500) == datetime(
        2026, 1, 1, 0, 10, 0, 1000, tzinfo=UTC
    )
    clock.advance(timedelta(hours=1), seconds=1)
    assert clock.now() == datetime(2026, 1, 1, 1, 10, 1, 1000, tzinfo=UTC)
    clock.set(datetime(2025, 6, 1, 14, tzinfo=timezone(timedelta(hours=2))))
    assert clock.now() == datetime(2025, 6, 1, 12, tzinfo=UTC)
    assert clock.now().tzinfo is UTC
    assert (
        FrozenClock(datetime(2026, 2, 3, 4, 5, 6, 789999, tzinfo=UTC)).now().microsecond == 789000
    )
    with pytest.raises(ValueError, match="forward"):
        clock.advance(seconds=-1)
    with pytest.raises(ValueError, match="aware"):
        clock.set(datetime(2026, 1, 1))


@pytest.mark.anyio
async def test_memory_mailer_keeps_sent_messages_and_fails_on_demand() -> None:
    mailer = open_memory_mailer("memory://")
    assert isinstance(mailer, MemoryMailer) and isinstance(mailer, Mailer)
    message = Email(
        sender="a@b.test", to="ada@example.com", subject="s", text="t", html="h", message_id="m@x"
    )
    mailer.fail_next(2)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await mailer.send(message)
    assert mailer.sent == []
    await mailer.send(message)
    assert mailer.sent == [message]
    await mailer.close()
    assert mailer.closed


def test_memory_factories_check_the_scheme() -> None:
    assert open_memory_storage("memory://") is not open_memory_storage("memory://")
    with pytest.raises(ConfigurationError):
        open_memory_storage("sqlite:///x.db")
    with pytest.raises(ConfigurationError):
        open_memory_mailer("smtp://localhost")


@pytest.mark.anyio
async def test_sqlite_hears_commits_of_another_connection_but_not_its_own(tmp_path: Path) -> None:
    import anyio

    url = f"sqlite:///{tmp_path}/rp.db"
    listener, writer = open_sqlite_storage(url), open_sqlite_storage(url)  # two "processes"
    try:
        await listener.migrate()
        await writer.migrate()
        # Its own commit does not count: the wait runs to its timeout.
        await new_workspace(listener)
        started = anyio.current_time()
        await listener.wait_for_changes(0.2)
        assert anyio.current_time() - started >= 0.2

        # Another connection's commit ends the wait at once.
        async def commit_elsewhere() -> None:
            await anyio.sleep(0.05)
            await new_workspace(writer)

        async with anyio.create_task_group() as group:
            group.start_soon(commit_elsewhere)
            started = anyio.current_time()
            await listener.wait_for_changes(5)
            waited = anyio.current_time() - started
        assert 0.05 <= waited < 1, waited
    finally:
        await listener.close()
        await writer.close()


class TestMemoryMailer(MailerContract):
    @pytest.fixture
    def mailer(self) -> MemoryMailer:
        return open_memory_mailer("memory://")

    @pytest.fixture
    def received(self, mailer: MemoryMailer) -> Received:
        async def read() -> list[bytes]:
            return [render_mime(email, date=T0) for email in mailer.sent]

        return read


class TestOutboxMailer(MailerContract):
    @pytest.fixture
    async def mailer(self, tmp_path: Path) -> AsyncIterator[Mailer]:
        mailer = open_outbox_mailer(f"outbox://{tmp_path}/outbox")
        yield mailer
        await mailer.close()

    @pytest.fixture
    def received(self, tmp_path: Path) -> Received:
        async def read() -> list[bytes]:
            return [path.read_bytes() for path in sorted((tmp_path / "outbox").glob("*.eml"))]

        return read
