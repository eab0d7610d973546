"""A fresh schema on the real PostgreSQL for each scaling test (needs ravepilot-postgres)."""

from __future__ import annotations

import importlib.util
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from ravepilot_core.testing.components import require_component

SERVER_URL = os.environ.get(
    "RAVEPILOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@dataclass(frozen=True)
class Database:
    """A schema of its own: ``url`` works inside it; ``admin`` looks behind RavePilot's back."""

    url: str
    schema: str
    admin: object  # an asyncpg.Pool (asyncpg comes with the plugin)


@pytest.fixture
async def postgres() -> AsyncIterator[Database]:
    require_component(
        importlib.util.find_spec("ravepilot_postgres") is not None,
        "the Postgres plugin is not installed: pip install -e plugins/postgres",
    )
    import asyncpg

    try:
        admin = await asyncpg.create_pool(SERVER_URL, min_size=1, max_size=4, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        require_component(False, f"PostgreSQL is not reachable at {SERVER_URL}: {exc}")
        raise
    schema = f"rp_scale_{secrets.token_hex(6)}"
    await admin.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in SERVER_URL else "?"
    try:
        yield Database(
            url=f"{SERVER_URL}{separator}search_path={schema}&application_name={schema}",
            schema=schema,
            admin=admin,
        )
    finally:
        # A connection of its own: a test may have restarted the server under the pool.
        admin.terminate()
        cleanup = await asyncpg.connect(SERVER_URL, timeout=30)
        try:
            await cleanup.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = $1",
                schema,
            )
            await cleanup.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await cleanup.close()
