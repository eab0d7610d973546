"""A Piccolo SQLite engine that keeps one connection and runs statements on the event loop.

Piccolo's stock ``SQLiteEngine`` opens a new aiosqlite connection (and thread) for every query
outside a transaction and for every transaction, which caps the embedded default at a few hundred
transactions a second. SQLite statements on a WAL database with ``synchronous=NORMAL`` take
microseconds, which is less than handing them to a thread costs, so this engine runs them inline
on one long-lived connection:

- an anyio lock serialises transactions and single statements of this process (SQLite has one
  writer anyway), so no coroutine ever sees another's uncommitted rows;
- waiting for *another process's* write lock never blocks the event loop: the busy timeout is
  zero and ``BEGIN IMMEDIATE`` is retried with ``await anyio.sleep`` until a deadline.

Queries are still built by Piccolo, so the SQL storage is written once for SQLite and Postgres.
"""

from __future__ import annotations

import sqlite3
import time
from contextvars import ContextVar
from types import TracebackType
from typing import Any

import anyio
from piccolo.engine.sqlite import SQLiteEngine, dict_factory
from piccolo.querystring import QueryString

from ravepilot_core.errors import BackendError, ConfigurationError

__all__ = ["InlineSQLiteEngine"]

LOCK_WAIT_SECONDS = 10.0


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message


class InlineSQLiteEngine(SQLiteEngine):
    """SQLite with WAL, one persistent connection and immediate write transactions."""

    def __init__(self, path: str) -> None:
        super().__init__(path=path)
        if sqlite3.sqlite_version_info < (3, 35, 0):
            raise ConfigurationError(
                f"SQLite {sqlite3.sqlite_version} is too old: RavePilot needs 3.35 or newer"
            )
        self._connection: sqlite3.Connection | None = None
        self._lock: anyio.Lock | None = None
        # Our own transaction type (duck-compatible with Piccolo's, which nothing else sees).
        self.current_transaction: ContextVar[_Transaction | None] = ContextVar(  # type: ignore[assignment]
            f"ravepilot_sqlite_tx_{id(self)}", default=None
        )

    # -- connection ----------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(
                self.path,
                isolation_level=None,
                timeout=0,
                check_same_thread=False,
                detect_types=sqlite3.PARSE_DECLTYPES | sqlite3.PARSE_COLNAMES,
            )
            connection.row_factory = dict_factory
            for pragma in (
                "journal_mode = WAL",
                "synchronous = NORMAL",
                "foreign_keys = ON",
                "busy_timeout = 0",
            ):
                self._retry_busy_sync(connection, f"PRAGMA {pragma}")
            self._connection = connection
        return self._connection

    @staticmethod
    def _retry_busy_sync(connection: sqlite3.Connection, sql: str) -> None:
        # Only at connect time (journal mode switch may need the lock briefly).
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                connection.execute(sql)
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _lock_for_loop(self) -> anyio.Lock:
        if self._lock is None:
            self._lock = anyio.Lock()
        return self._lock

    async def _execute_when_free(self, sql: str, args: list[Any] | tuple[Any, ...] = ()) -> Any:
        """Run ``sql``, retrying without blocking the loop while another process writes."""
        connection = self._connect()
        delay = 0.001
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                return connection.execute(sql, args).fetchall()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                if time.monotonic() > deadline:
                    raise BackendError(
                        "the SQLite database stayed locked by another process for "
                        f"{LOCK_WAIT_SECONDS:.0f}s; retry"
                    ) from exc
                await anyio.sleep(delay)
                delay = min(delay * 2, 0.05)

    # -- Piccolo's engine interface --------------------------------------------------------------
    async def run_querystring(self, querystring: QueryString, in_pool: bool = False) -> Any:
        """Run a Piccolo query: inside the current transaction, or alone under the lock."""
        query, args = querystring.compile_string(engine_type=self.engine_type)
        if self.log_queries:
            self.print_query(query_id=self.get_query_id(), query=str(querystring))
        if self.current_transaction.get() is not None:
            return self._connect().execute(query, args).fetchall()
        async with self._lock_for_loop():
            return await self._execute_when_free(query, args)

    async def run_ddl(self, ddl: str, in_pool: bool = False) -> Any:
        """Run DDL the same way as a query."""
        if self.current_transaction.get() is not None:
            return self._connect().execute(ddl).fetchall()
        async with self._lock_for_loop():
            return await self._execute_when_free(ddl)

    def transaction(self, *args: Any, **kwargs: Any) -> _Transaction:  # type: ignore[override]
        """Return an immediate write transaction (nested use joins the outer one)."""
        return _Transaction(self)

    async def close(self) -> None:
        """Close the connection (the next statement reopens it)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` under the engine's lock."""

    def __init__(self, engine: InlineSQLiteEngine) -> None:
        self._engine = engine
        self._outer = engine.current_transaction.get() is None
        self._token: Any = None

    async def __aenter__(self) -> _Transaction:
        if not self._outer:
            return self
        lock = self._engine._lock_for_loop()
        await lock.acquire()
        try:
            await self._engine._execute_when_free("BEGIN IMMEDIATE")
        except BaseException:
            lock.release()
            raise
        self._token = self._engine.current_transaction.set(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._outer:
            return
        connection = self._engine._connect()
        try:
            if exc_type is None:
                try:
                    connection.execute("COMMIT")
                except BaseException:
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                    raise
            elif connection.in_transaction:
                connection.execute("ROLLBACK")
        finally:
            self._engine.current_transaction.reset(self._token)
            self._engine._lock_for_loop().release()
