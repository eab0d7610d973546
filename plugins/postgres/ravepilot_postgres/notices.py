"""Wake sleeping workers the moment another process commits work: LISTEN/NOTIFY.

Writers send ``NOTIFY ravepilot_work`` inside the transaction that adds due work; Postgres
delivers it when (and only if) that transaction commits, to every listening connection, and
folds repeats within one transaction into one. Each storage keeps one dedicated connection
listening. When that connection breaks, notices may have been missed, so the next wait reports a
change (the worker looks for work once) and the connection is re-established.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio
import asyncpg

from ravepilot_core.errors import BackendError
from ravepilot_postgres.engine import translate_errors

__all__ = ["CHANNEL", "WorkNotices"]

log = logging.getLogger("ravepilot.postgres")

CHANNEL = "ravepilot_work"
RECONNECT_SECONDS = 1.0


class WorkNotices:
    """Counts the work notices heard on one listening connection."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._connection: asyncpg.Connection | None = None
        self._heard = 0
        self._changed = asyncio.Event()
        self._lock = anyio.Lock()

    def _on_notice(self, *_: Any) -> None:
        self._heard += 1
        self._changed.set()

    def _on_lost(self, *_: Any) -> None:
        self._connection = None
        self._changed.set()  # a waiter re-checks: notices may have been missed

    async def _listen(self) -> bool:
        """Make sure the listening connection is up; True if it had to be (re)opened."""
        async with self._lock:
            if self._connection is not None and not self._connection.is_closed():
                return False
            with translate_errors("open the connection that listens for new work"):
                connection = await asyncpg.connect(self._dsn)
            connection.add_termination_listener(self._on_lost)
            await connection.add_listener(CHANNEL, self._on_notice)
            self._connection = connection
            return True

    async def wait(self, timeout: float) -> bool:
        """Return True when work was announced within ``timeout`` seconds (or may have been)."""
        try:
            if await self._listen():
                return True  # nothing was heard while nobody listened
        except BackendError as exc:
            log.warning("%s; polling instead", exc)
            await anyio.sleep(min(timeout, RECONNECT_SECONDS))
            return False
        seen = self._heard
        with anyio.move_on_after(timeout):
            while self._heard == seen and self._connection is not None:
                self._changed.clear()
                await self._changed.wait()
            return True
        return False

    async def close(self) -> None:
        """Stop listening."""
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            with anyio.CancelScope(shield=True):
                await connection.close(timeout=5)
