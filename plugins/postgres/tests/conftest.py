"""A fresh schema on the real PostgreSQL for each test, dropped afterwards."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest
from postgres_server import SERVER_URL, START_HINT

from ravepilot_core.testing.components import require_component


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _connect() -> asyncpg.Connection | None:
    try:
        return await asyncpg.connect(SERVER_URL, timeout=5)
    except (OSError, asyncpg.PostgresError):
        return None


@pytest.fixture
async def admin() -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the test server, for looking behind the storage's back."""
    connection = await _connect()
    require_component(connection is not None, START_HINT)
    assert connection is not None
    yield connection
    await connection.close()


@pytest.fixture
def schema() -> str:
    """The name of this test's schema; also its connections' application_name."""
    return f"rp_test_{secrets.token_hex(6)}"


@pytest.fixture
async def database_url(admin: asyncpg.Connection, schema: str) -> AsyncIterator[str]:
    """A URL whose connections work in a new, empty schema (search_path), dropped afterwards."""
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        # asyncpg passes unknown URL parameters to the server as settings.
        separator = "&" if "?" in SERVER_URL else "?"
        yield f"{SERVER_URL}{separator}search_path={schema}&application_name={schema}"
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
