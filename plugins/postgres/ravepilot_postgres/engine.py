"""Piccolo's Postgres engine with RavePilot's fast path, cancel-safe transactions and clear errors.

:class:`~ravepilot_core.sql.storage.SQLStorage` writes statements once with ``{}`` placeholders.
Compiling each through Piccolo's ``QueryString`` costs more than running it on a pooled
connection, so ``run_sql`` turns a template into ``$1, $2, ...`` once (cached) and hands it to
asyncpg, whose per-connection statement cache then prepares it once per connection.

Transactions are Piccolo-compatible (the current one is in ``current_transaction`` and has a
``connection``), and their end is shielded from cancellation: a cancelled caller still rolls back
and returns its connection to the pool, where Piccolo's own would leave both behind.

After a database restart every pooled connection is dead, and asyncpg only finds out when one is
used. A lone SELECT and the start of a transaction have changed nothing yet, so they are retried
on another connection (the pool replaces each dead one as it comes back); anything that may have
been applied is not. What still fails (a statement in flight, a server that is down, a deadlock
victim) surfaces as :class:`~ravepilot_core.errors.BackendError`: "unavailable, retry" to an API
client (503) and a retried iteration to the worker.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import asyncpg
from asyncpg.pool import PoolConnectionProxy
from piccolo.engine.postgres import PostgresEngine
from piccolo.querystring import QueryString

from ravepilot_core.errors import BackendError, ConfigurationError
from ravepilot_core.sql.statements import is_read_only

__all__ = ["MIN_SERVER_VERSION", "AsyncpgEngine", "translate_errors"]

# Every feature used (SKIP LOCKED, ON CONFLICT, partial indexes) is in 9.5, but majors before 13
# are out of upstream support and untested here.
MIN_SERVER_VERSION = 130000

# Errors after which the same statement may well succeed on a fresh connection or a retry.
_TRANSIENT = (
    OSError,  # refused, reset, unreachable
    TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InterfaceError,  # "connection is closed", released mid-query
    asyncpg.exceptions.InternalClientError,  # a terminated connection's protocol state
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)


# The connection was found dead: nothing sent on it took effect, another one may work.
_DEAD_CONNECTION = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    # What asyncpg raises when the server's "terminating connection" notice arrived on an idle
    # connection before the next statement was prepared.
    asyncpg.exceptions.InternalClientError,
    ConnectionResetError,
    BrokenPipeError,
)


@contextmanager
def translate_errors(action: str) -> Iterator[None]:
    """Turn connection-level failures into :class:`BackendError` naming ``action``."""
    try:
        yield
    except _TRANSIENT as exc:
        raise BackendError(
            f"PostgreSQL could not {action}: {exc or type(exc).__name__}; retry"
        ) from exc


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Skip asyncpg's session reset when a connection goes back to the pool.

    The default sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` on
    every release: a round trip per statement that doubled the server's work for a lone SELECT.
    RavePilot leaves nothing in a session to reset (no SET, no session locks, no cursors; LISTEN
    is on a connection of its own), and asyncpg still rolls back a transaction left open.
    """


@functools.lru_cache(maxsize=1024)
def _numbered(template: str) -> str:
    """``... id = {} AND x = {}`` -> ``... id = $1 AND x = $2`` (asyncpg's placeholders)."""
    counter = iter(range(1, 32768))
    return re.sub(r"\{\}", lambda _: f"${next(counter)}", template)


class AsyncpgEngine(PostgresEngine):
    """A Piccolo :class:`PostgresEngine` over one asyncpg pool, opened by :meth:`open`."""

    def __init__(self, dsn: str, *, min_size: int, max_size: int) -> None:
        config: dict[str, Any] = {
            "dsn": dsn,
            "min_size": min_size,
            "max_size": max_size,
            "reset": _keep_session,
        }
        if "application_name" not in parse_qs(urlsplit(dsn).query):
            # How operators tell RavePilot's connections apart in pg_stat_activity.
            config["server_settings"] = {"application_name": "ravepilot"}
        super().__init__(config=config)
        self.dsn = dsn
        self.current_transaction: ContextVar[_Transaction | None] = ContextVar(  # type: ignore[assignment]
            f"ravepilot_pg_tx_{id(self)}", default=None
        )

    async def check_version(self) -> None:
        """Checked by :meth:`open` instead: Piccolo calls this from ``__init__``, blocking."""

    async def prep_database(self) -> None:
        """Nothing to prepare (Piccolo would create extensions, blocking, from ``__init__``)."""

    async def open(self) -> None:
        """Create the connection pool (connects ``min_size`` connections now)."""
        try:
            with translate_errors("be reached to open the connection pool"):
                await self.start_connection_pool()
        except asyncpg.PostgresError as exc:
            # A wrong database name, user or password: retrying will not help, the URL must change.
            raise ConfigurationError(
                f"PostgreSQL refused the connection: {exc}; check RAVEPILOT_DATABASE_URL"
            ) from None
        found = await self.run_sql("SELECT current_setting('server_version_num')::int AS v", ())
        version = found[0]["v"]
        if version < MIN_SERVER_VERSION:
            await self.close()
            raise ConfigurationError(
                f"PostgreSQL {version // 10000} is too old: RavePilot needs "
                f"{MIN_SERVER_VERSION // 10000} or newer"
            )

    def _pool(self) -> asyncpg.Pool:
        if self.pool is None:
            raise BackendError("the PostgreSQL storage is closed")
        return self.pool

    # -- statements ------------------------------------------------------------------------------
    async def run_sql(self, template: str, args: Sequence[Any]) -> list[asyncpg.Record]:
        """Run a ``{}``-placeholder statement in the current transaction or on the pool."""
        return await self._fetch(_numbered(template), args)

    async def _fetch(self, query: str, args: Sequence[Any]) -> list[asyncpg.Record]:
        transaction = self.current_transaction.get()
        with translate_errors("run a statement"):
            if transaction is not None:
                return await transaction.connection.fetch(query, *args)
            pool = self._pool()
            if not is_read_only(query):
                return await pool.fetch(query, *args)
            for _ in range(pool.get_max_size()):
                try:
                    return await pool.fetch(query, *args)
                except _DEAD_CONNECTION:
                    continue  # a read changed nothing: try the next connection
            return await pool.fetch(query, *args)

    async def run_many(self, template: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each row of values (asyncpg pipelines them)."""
        query = _numbered(template)
        with translate_errors("run a batch of statements"):
            transaction = self.current_transaction.get()
            if transaction is not None:
                await transaction.connection.executemany(query, rows)
            else:
                await self._pool().executemany(query, rows)

    async def run_querystring(self, querystring: QueryString, in_pool: bool = True) -> Any:
        """Run a Piccolo query (migrations and Piccolo's own callers use this)."""
        query, args = querystring.compile_string(engine_type=self.engine_type)
        return await self._fetch(query, args)

    async def run_ddl(self, ddl: str, in_pool: bool = True) -> Any:
        """Run DDL the same way as a query."""
        return await self.run_querystring(QueryString(ddl))

    def transaction(self, allow_nested: bool = True) -> _Transaction:  # type: ignore[override]
        """Return a transaction; nested use joins the outer one."""
        return _Transaction(self)

    async def close(self) -> None:
        """Close the pool, waiting for connections in use to come back."""
        if self.pool is not None:
            pool, self.pool = self.pool, None
            await pool.close()


class _Transaction:
    """One transaction on a connection of the pool; the connection goes back whatever happens."""

    def __init__(self, engine: AsyncpgEngine) -> None:
        self._engine = engine
        self._outer = engine.current_transaction.get() is None
        self.connection: PoolConnectionProxy = None  # type: ignore[assignment]
        self._transaction: Any = None
        self._token: Any = None
        #: Set once this transaction has queued its NOTIFY: Postgres sends one per channel at
        #: commit anyway, so a second would only cost a round trip.
        self.work_announced = False

    async def __aenter__(self) -> _Transaction:
        if not self._outer:
            return self
        pool = self._engine._pool()
        last = pool.get_max_size()
        with translate_errors("start a transaction"):
            for attempt in range(last + 1):
                connection = await pool.acquire()
                transaction = connection.transaction()
                try:
                    await transaction.start()
                except BaseException as exc:
                    with anyio.CancelScope(shield=True):
                        await pool.release(connection)
                    if isinstance(exc, _DEAD_CONNECTION) and attempt < last:
                        continue  # BEGIN changed nothing: try the next connection
                    raise
                self.connection, self._transaction = connection, transaction
                break
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
        self._engine.current_transaction.reset(self._token)
        pool = self._engine.pool
        # Shielded: a cancelled caller must still end its transaction and free the connection.
        with anyio.CancelScope(shield=True):
            try:
                if exc_type is None:
                    with translate_errors("commit (the outcome is unknown)"):
                        await self._transaction.commit()
                elif not self.connection.is_closed():
                    try:
                        await self._transaction.rollback()
                    except _TRANSIENT:
                        pass  # the server rolls back a transaction whose connection died
            finally:
                if pool is not None:
                    await pool.release(self.connection)
