"""Schema migrations for the SQL storage: ordered, recorded, each in its own transaction.

Piccolo's own migration runner finds its engine through a global ``piccolo_conf`` module and
prints to stdout, which does not fit a library whose database is chosen at runtime (and may be
one of several in a process). So each migration here is a module with an ``ID`` and
``STATEMENTS`` (portable DDL, frozen as of that migration), and the runner records applied ids in
``rp_schema_migrations``. The DDL uses only types both SQLite and Postgres accept.
"""

from __future__ import annotations

import importlib
import time
from types import ModuleType
from typing import Any

from piccolo.engine.base import Engine
from piccolo.querystring import QueryString

__all__ = ["MIGRATIONS", "apply_migrations"]

MIGRATIONS: tuple[str, ...] = (
    "m0001_initial",
    "m0002_delivery_engine",
    "m0003_pending_by_endpoint",
    "m0004_clips_and_uploads",
    "m0005_media_pipeline",
    "m0006_upload_writer",
)


def _load(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{name}")


async def apply_migrations(engine: Engine[Any], *, lock: str | None = None) -> list[str]:
    """Apply every migration not yet recorded; return the ids applied now.

    Args:
        engine: Where to apply them.
        lock: A statement run first in each transaction that makes concurrent runners wait for
            each other (Postgres: an advisory lock; SQLite's write transaction already does).
    """
    async with engine.transaction():
        if lock:
            await engine.run_ddl(lock)
        await engine.run_ddl(
            "CREATE TABLE IF NOT EXISTS rp_schema_migrations "
            "(id VARCHAR(100) PRIMARY KEY, applied_at BIGINT NOT NULL)"
        )
    applied_now = []
    for name in MIGRATIONS:
        module = _load(name)
        async with engine.transaction():
            if lock:
                await engine.run_ddl(lock)
            # Checked inside the transaction so two processes starting together apply it once.
            done = await engine.run_querystring(
                QueryString("SELECT id FROM rp_schema_migrations WHERE id = {}", module.ID)
            )
            if done:
                continue
            for statement in module.STATEMENTS:
                await engine.run_ddl(statement)
            await engine.run_querystring(
                QueryString(
                    "INSERT INTO rp_schema_migrations (id, applied_at) VALUES ({}, {})",
                    module.ID,
                    int(time.time() * 1000),
                )
            )
            applied_now.append(module.ID)
    return applied_now
