"""The Storage contract on the real PostgreSQL, and what only Postgres does."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ravepilot_core.backends import installed_backends, open_backend
from ravepilot_core.protocols import Storage
from ravepilot_core.testing import StorageContract
from ravepilot_postgres import PostgresStorage, open_postgres_storage


class TestPostgresStorage(StorageContract):
    @pytest.fixture
    async def storage(self, database_url: str) -> AsyncIterator[Storage]:
        storage = await open_postgres_storage(database_url)
        await storage.migrate()
        yield storage
        await storage.close()


@pytest.mark.anyio
async def test_found_through_its_entry_point(database_url: str) -> None:
    found = {(b.scheme, b.distribution) for b in installed_backends() if b.kind == "storage"}
    assert {("postgresql", "ravepilot-postgres"), ("postgres", "ravepilot-postgres")} <= found
    storage = await open_backend("storage", database_url)
    try:
        assert isinstance(storage, PostgresStorage)
        await storage.ping()
    finally:
        await storage.close()
