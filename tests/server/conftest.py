"""A real server over a real SQLite file and the real outbox mailer, per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from ravepilot_core import RavePilot, Settings
from ravepilot_core.outbox import open_outbox_mailer
from ravepilot_core.sql.sqlite import open_sqlite_storage
from ravepilot_server import create_app

SECRET_KEY = "test-secret-key-test-secret-key-test-secret"


@dataclass
class Tenant:
    """A workspace with an all-scope key."""

    workspace_id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture
async def ravepilot(tmp_path: Path) -> AsyncIterator[RavePilot]:
    storage = open_sqlite_storage(f"sqlite:///{tmp_path}/ravepilot.db")
    await storage.migrate()
    instance = RavePilot(
        storage=storage,
        mailer=open_outbox_mailer(f"outbox://{tmp_path}/outbox"),
        secret_key=SECRET_KEY,
        public_url="https://reviews.example.test",
        allow_private_webhooks=True,
    )
    yield instance
    await instance.close()


@pytest.fixture
def app(ravepilot: RavePilot, tmp_path: Path) -> Litestar:
    return create_app(Settings(data_dir=tmp_path), ravepilot=ravepilot)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app) as test_client:
        yield test_client


async def make_tenant(ravepilot: RavePilot, slug: str) -> Tenant:
    workspace = await ravepilot.workspaces.create(slug)
    _, key = await ravepilot.api_keys.create(workspace.id)
    return Tenant(workspace_id=workspace.id, key=key)


@pytest.fixture
async def tenant(ravepilot: RavePilot) -> Tenant:
    return await make_tenant(ravepilot, "acme")


@pytest.fixture
async def other_tenant(ravepilot: RavePilot) -> Tenant:
    return await make_tenant(ravepilot, "globex")
