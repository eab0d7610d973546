"""A real server over a real SQLite file and the real outbox mailer, per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar

from ravepilot_core import RavePilot, Settings
from ravepilot_core.filemedia import FileMediaStore
from ravepilot_core.outbox import open_outbox_mailer
from ravepilot_core.sql.sqlite import open_sqlite_storage
from ravepilot_server import create_app
from tests.loopback import QuietHandler, http_server
from tests.server.helpers import Client, serve

SECRET_KEY = "test-secret-key-test-secret-key-test-secret"
PUBLIC_URL = "https://reviews.example.test"


@dataclass
class Tenant:
    """A workspace with an all-scope key."""

    workspace_id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@asynccontextmanager
async def open_ravepilot(directory: Path, **options: Any) -> AsyncIterator[RavePilot]:
    """A RavePilot over a fresh SQLite file and outbox in ``directory``, closed on exit."""
    storage = open_sqlite_storage(f"sqlite:///{directory}/ravepilot.db")
    await storage.migrate()
    instance = RavePilot(
        storage=storage,
        mailer=open_outbox_mailer(f"outbox://{directory}/outbox"),
        secret_key=SECRET_KEY,
        public_url=PUBLIC_URL,
        **{"media": FileMediaStore(directory / "media"), **options},
    )
    try:
        yield instance
    finally:
        await instance.close()


async def make_tenant(ravepilot: RavePilot, slug: str) -> Tenant:
    workspace = await ravepilot.workspaces.create(slug)
    _, key = await ravepilot.api_keys.create(workspace.id)
    return Tenant(workspace_id=workspace.id, key=key)


@asynccontextmanager
async def serve_tenant(
    directory: Path, slug: str, **options: Any
) -> AsyncIterator[tuple[Client, Tenant]]:
    """A server of its own (a RavePilot built with ``options``) and one tenant in it."""
    async with open_ravepilot(directory, **options) as ravepilot:
        tenant = await make_tenant(ravepilot, slug)
        async with serve(create_app(Settings(data_dir=directory), ravepilot=ravepilot)) as client:
            yield client, tenant


@pytest.fixture
async def ravepilot(tmp_path: Path) -> AsyncIterator[RavePilot]:
    async with open_ravepilot(tmp_path, allow_private_webhooks=True) as instance:
        yield instance


@pytest.fixture
def app(ravepilot: RavePilot, tmp_path: Path) -> Litestar:
    return create_app(Settings(data_dir=tmp_path), ravepilot=ravepilot)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[Client]:
    """An HTTP client to ``app``, served on the test's own event loop."""
    async with serve(app) as test_client:
        yield test_client


@pytest.fixture
async def tenant(ravepilot: RavePilot) -> Tenant:
    return await make_tenant(ravepilot, "acme")


@pytest.fixture
async def other_tenant(ravepilot: RavePilot) -> Tenant:
    return await make_tenant(ravepilot, "globex")


@dataclass
class Receiver:
    """A webhook receiver on loopback: answers ``status`` to every POST and records each one."""

    url: str
    status: int = 204
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def headers_of(self, event_type: str) -> list[dict[str, str]]:
        """The headers of every request that carried ``event_type``."""
        return [h for h, _ in self.received if h.get("X-RavePilot-Event") == event_type]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state.received.append((dict(self.headers.items()), body))
            self.send_response(state.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    with http_server(Handler) as base_url:
        state.url = f"{base_url}/hook"
        yield state
