"""API keys and collectors remembered on SQLite: never used after a commit replaced them."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import msgspec
import pytest

from ravepilot_core import RavePilot
from ravepilot_core.errors import AuthenticationFailed
from ravepilot_core.models import Brand, Collector, Workspace
from ravepilot_core.outbox import open_outbox_mailer
from ravepilot_core.sql.sqlite import open_sqlite_storage
from ravepilot_core.sql.storage import SQLStorage
from ravepilot_core.testing import MemoryStorage

pytestmark = pytest.mark.anyio

SECRET = "s" * 40


async def open_instance(directory: Path) -> RavePilot:
    storage = open_sqlite_storage(f"sqlite:///{directory}/ravepilot.db")
    await storage.migrate()
    return RavePilot(
        storage=storage,
        mailer=open_outbox_mailer(f"outbox://{directory}/outbox"),
        secret_key=SECRET,
        public_url="https://reviews.example.test",
    )


@pytest.fixture
async def ravepilot(tmp_path: Path) -> AsyncIterator[RavePilot]:
    instance = await open_instance(tmp_path)
    yield instance
    await instance.close()


@pytest.fixture
async def other_process(tmp_path: Path) -> AsyncIterator[RavePilot]:
    """A second instance on the same file: its commits come from another connection."""
    instance = await open_instance(tmp_path)
    yield instance
    await instance.close()


class CountedReads:
    """Counts the SELECTs that reach SQLite for key and collector look-ups."""

    def __init__(self, storage: SQLStorage, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = storage._one

        async def counted(sql: str, *args: object) -> object:
            if "FROM rp_api_keys WHERE key_hash" in sql or "FROM rp_collectors" in sql:
                self.count += 1
            return await original(sql, *args)

        monkeypatch.setattr(storage, "_one", counted)


def storage_of(ravepilot: RavePilot) -> SQLStorage:
    assert isinstance(ravepilot.storage, SQLStorage)
    return ravepilot.storage


async def test_look_ups_are_remembered_until_something_changes(
    ravepilot: RavePilot, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = await ravepilot.workspaces.create("acme")
    _, key = await ravepilot.api_keys.create(workspace.id)
    await ravepilot.api_keys.authenticate(key)  # the first use stores a last-used time
    reads = CountedReads(storage_of(ravepilot), monkeypatch)

    for _ in range(5):
        await ravepilot.api_keys.authenticate(key)
        await ravepilot.collectors.primary(workspace.id)
    assert reads.count == 2  # one read each, then remembered


async def test_a_key_revoked_here_stops_working_at_once(ravepilot: RavePilot) -> None:
    workspace = await ravepilot.workspaces.create("acme")
    created, key = await ravepilot.api_keys.create(workspace.id)
    await ravepilot.api_keys.authenticate(key)
    await ravepilot.api_keys.authenticate(key)  # remembered by now

    await ravepilot.api_keys.revoke(created.id)
    with pytest.raises(AuthenticationFailed, match="revoked"):
        await ravepilot.api_keys.authenticate(key)


async def test_a_key_revoked_by_another_process_stops_working_at_once(
    ravepilot: RavePilot, other_process: RavePilot
) -> None:
    workspace = await ravepilot.workspaces.create("acme")
    created, key = await ravepilot.api_keys.create(workspace.id)
    await ravepilot.api_keys.authenticate(key)
    await ravepilot.api_keys.authenticate(key)

    await other_process.api_keys.revoke(created.id)  # `ravepilot keys revoke`, say
    with pytest.raises(AuthenticationFailed, match="revoked"):
        await ravepilot.api_keys.authenticate(key)


async def test_a_collector_changed_here_or_elsewhere_is_read_again(
    ravepilot: RavePilot, other_process: RavePilot, tmp_path: Path
) -> None:
    workspace = await ravepilot.workspaces.create("acme")
    primary = await ravepilot.collectors.primary(workspace.id)
    assert await ravepilot.collectors.primary(workspace.id) == primary

    renamed = rebranded(primary, "Acme Here")
    await storage_of(ravepilot).update_collector(workspace.id, renamed)
    assert (await ravepilot.collectors.primary(workspace.id)).brand.name == "Acme Here"

    await storage_of(other_process).update_collector(workspace.id, rebranded(primary, "Acme There"))
    assert (await ravepilot.collectors.primary(workspace.id)).brand.name == "Acme There"
    assert (await ravepilot.collectors.get(workspace.id, primary.id)).brand.name == "Acme There"

    # Even a change written with no RavePilot code at all (an operator's sqlite3 shell). It runs
    # on a thread, as another process's change reaches this one through I/O: the engine keeps
    # data_version for the rest of a turn of the event loop.
    await anyio.to_thread.run_sync(
        rename_in_shell, tmp_path / "ravepilot.db", primary.id, "Acme Shell"
    )
    assert (await ravepilot.collectors.primary(workspace.id)).brand.name == "Acme Shell"


async def test_a_look_up_that_overlaps_a_change_is_not_remembered(
    ravepilot: RavePilot, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = await ravepilot.workspaces.create("acme")
    primary = await ravepilot.collectors.primary(workspace.id)
    storage = storage_of(ravepilot)
    await storage.update_collector(workspace.id, rebranded(primary, "Acme Old"))

    # A look-up reads the old row, and the change commits before it finishes.
    read_done, change_committed = anyio.Event(), anyio.Event()
    original = storage._one

    async def slow_read(sql: str, *args: object) -> object:
        row = await original(sql, *args)
        if "is_primary" in sql and not change_committed.is_set():
            read_done.set()
            await change_committed.wait()
        return row

    monkeypatch.setattr(storage, "_one", slow_read)
    seen: list[str] = []

    async def look_up() -> None:
        seen.append((await storage.get_primary_collector(workspace.id)).brand.name)  # type: ignore[union-attr]

    with anyio.fail_after(10):  # fails, rather than hangs, if the look-up never reads
        async with anyio.create_task_group() as group:
            group.start_soon(look_up)
            await read_done.wait()
            await storage.update_collector(workspace.id, rebranded(primary, "Acme New"))
            change_committed.set()

    assert seen == ["Acme Old"]  # what was committed when it read
    assert (await storage.get_primary_collector(workspace.id)).brand.name == "Acme New"  # type: ignore[union-attr]


async def test_inside_a_transaction_look_ups_see_the_batch(ravepilot: RavePilot) -> None:
    workspace = await ravepilot.workspaces.create("acme")
    storage = storage_of(ravepilot)
    primary = await storage.get_primary_collector(workspace.id)
    assert primary is not None
    async with storage.engine.transaction():
        await storage.update_collector(workspace.id, rebranded(primary, "Uncommitted"))
        inside = await storage.get_primary_collector(workspace.id)
        assert inside is not None and inside.brand.name == "Uncommitted"
    after = await storage.get_primary_collector(workspace.id)
    assert after is not None and after.brand.name == "Uncommitted"


async def test_a_rolled_back_change_leaves_the_remembered_row(ravepilot: RavePilot) -> None:
    workspace = await ravepilot.workspaces.create("acme")
    storage = storage_of(ravepilot)
    primary = await storage.get_primary_collector(workspace.id)
    assert primary is not None
    with pytest.raises(RuntimeError):
        async with storage.engine.transaction():
            await storage.update_collector(workspace.id, rebranded(primary, "Never"))
            raise RuntimeError("changed my mind")
    assert await storage.get_primary_collector(workspace.id) == primary


async def test_engines_without_a_change_counter_remember_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ravepilot_core.sql.stable import StableRows

    loads = 0

    async def load() -> str:
        nonlocal loads
        loads += 1
        return "row"

    stable = StableRows(MemoryStorage())  # no data_version: Postgres is the real case
    for _ in range(3):
        assert await stable.get("k", load) == "row"
    assert loads == 3
    stable.forget_on_commit()  # harmless


async def test_the_change_counter_is_read_once_per_turn_of_the_event_loop(
    ravepilot: RavePilot, other_process: RavePilot
) -> None:
    storage, workspace, primary = await acme(ravepilot)
    pragmas: list[str] = []
    storage.engine._connect().set_trace_callback(
        lambda sql: pragmas.append(sql) if "data_version" in sql else None
    )

    await anyio.lowlevel.checkpoint()  # a new turn
    for _ in range(3):  # remembered look-ups never yield, so all three share one turn
        assert await storage.get_primary_collector(workspace.id) == primary
    assert len(pragmas) == 1  # the suite runs on asyncio (on trio it is read each time)

    # The next turn reads it again, and sees what another process committed in between.
    await storage_of(other_process).update_collector(workspace.id, rebranded(primary, "Renamed"))
    await anyio.lowlevel.checkpoint()
    renamed = await storage.get_primary_collector(workspace.id)
    assert renamed is not None and renamed.brand.name == "Renamed"
    assert len(pragmas) == 2


async def test_a_read_that_sees_a_newer_commit_makes_the_next_look_up_see_it_too(
    ravepilot: RavePilot, tmp_path: Path
) -> None:
    # Within one turn: a look-up keeps data_version; another process renames the collector,
    # then the workspace; this process reads the workspace, then looks the collector up. The
    # database itself carried the news, so the look-up must not use the number kept before.
    storage, workspace, primary = await acme(ravepilot)
    await anyio.lowlevel.checkpoint()

    assert await storage.get_primary_collector(workspace.id) == primary  # keeps the number
    rename_in_shell(tmp_path / "ravepilot.db", primary.id, "Renamed elsewhere")
    with sqlite3.connect(tmp_path / "ravepilot.db") as shell:
        shell.execute(
            "UPDATE rp_workspaces SET name = 'touched later' WHERE id = ?", (workspace.id,)
        )
    seen = await storage.get_workspace(workspace.id)  # a lone read: it sees the later commit
    assert seen is not None and seen.name == "touched later"
    renamed = await storage.get_primary_collector(workspace.id)
    assert renamed is not None and renamed.brand.name == "Renamed elsewhere"


async def acme(ravepilot: RavePilot) -> tuple[SQLStorage, Workspace, Collector]:
    """A new workspace and its primary collector, with the storage they are in."""
    workspace = await ravepilot.workspaces.create("acme")
    storage = storage_of(ravepilot)
    primary = await storage.get_primary_collector(workspace.id)
    assert primary is not None
    return storage, workspace, primary


def rename_in_shell(database: Path, collector_id: str, name: str) -> None:
    """Rename a collector's brand with no RavePilot code: an operator's ``sqlite3`` shell."""
    with sqlite3.connect(database) as shell:
        (stored,) = shell.execute(
            "SELECT body FROM rp_collectors WHERE id = ?", (collector_id,)
        ).fetchone()
        body = msgspec.json.decode(stored)
        body["brand"]["name"] = name
        shell.execute(
            "UPDATE rp_collectors SET body = ? WHERE id = ?",
            (msgspec.json.encode(body).decode(), collector_id),
        )


def rebranded(collector: Collector, name: str) -> Collector:
    return msgspec.structs.replace(
        collector, brand=Brand(name=name, primary_color=collector.brand.primary_color)
    )
