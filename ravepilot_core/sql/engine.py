"""A Piccolo SQLite engine that keeps one connection and runs statements on the event loop.

Piccolo's stock ``SQLiteEngine`` opens a new aiosqlite connection (and thread) for every query
outside a transaction and for every transaction, which caps the embedded default at a few hundred
transactions a second. SQLite statements on a WAL database with ``synchronous=NORMAL`` take
microseconds, which is less than handing them to a thread costs, so this engine runs them inline
on one long-lived connection:

- an anyio lock serialises the callers of this process (SQLite has one writer anyway);
- waiting for *another process's* write lock never blocks the event loop: the busy timeout is
  zero and ``BEGIN IMMEDIATE`` is retried with ``await anyio.sleep`` until a deadline;
- checkpoints run on a thread of their own (:mod:`ravepilot_core.sql.checkpointer`), not inside
  whichever commit happens to grow the WAL past SQLite's threshold;
- group commit: a transaction that finishes while others wait for the lock does not commit; it
  releases its savepoint and hands the open transaction on, and the last one in line commits for
  all (at most ``MAX_BATCH``). A commit writes the WAL and costs ~90-150 µs, everything else an
  invitation writes ~50 µs, so under concurrency this multiplies write throughput. Every caller
  still returns only after *its* changes are committed, and a failing caller rolls back to its
  own savepoint without touching the others'. A caller may read rows of earlier callers in its
  batch before they are committed; they commit together or not at all.

Statements are compiled by Piccolo, so the SQL storage is written once for SQLite and Postgres.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from types import TracebackType
from typing import Any

import anyio
from piccolo.engine.sqlite import SQLiteEngine
from piccolo.querystring import QueryString

from ravepilot_core.errors import BackendError, ConfigurationError
from ravepilot_core.sql.checkpointer import BACKSTOP_PAGES, Checkpointer
from ravepilot_core.sql.statements import is_read_only

__all__ = ["InlineSQLiteEngine"]

LOCK_WAIT_SECONDS = 10.0
MAX_BATCH = 64


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
        self._connection: sqlite3.Connection | None = None  # writes and transactions
        self._reader: sqlite3.Connection | None = None  # lone SELECTs: committed rows only
        self._checkpointer: Checkpointer | None = None  # runs while the writer is open
        self._lock: anyio.Lock | None = None
        self._batch: _Batch | None = None  # the open transaction, shared by queued callers
        self._waiting = 0  # callers queued for the lock
        self._data_version: int | None = None  # kept for this turn of the loop (data_version)
        # Our own transaction type (duck-compatible with Piccolo's, which nothing else sees).
        self.current_transaction: ContextVar[_Transaction | None] = ContextVar(  # type: ignore[assignment]
            f"ravepilot_sqlite_tx_{id(self)}", default=None
        )

    # -- connection ----------------------------------------------------------------------------
    def _open_connection(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path,
            isolation_level=None,
            timeout=0,
            check_same_thread=False,
        )
        # Rows are converted by ravepilot_core.sql.rows, so no declared-type converters, and
        # sqlite3.Row (C, read by column name) instead of Piccolo's Python dict factory.
        connection.row_factory = sqlite3.Row
        for pragma in (
            "journal_mode = WAL",
            "synchronous = NORMAL",
            "foreign_keys = ON",
            "busy_timeout = 0",
            # Each caller of a group commit writes inside its own savepoint, and SQLite keeps
            # the pages a savepoint may have to restore in a statement journal that spills to
            # a temporary file past 64 KiB: ~34 pwrite() calls an invitation. In memory, the
            # journal holds only the pre-transaction pages the batch changes.
            "temp_store = MEMORY",
            # Only a backstop: the checkpointer thread copies the WAL (the reader never commits,
            # so the setting matters for the writer alone).
            f"wal_autocheckpoint = {BACKSTOP_PAGES}",
        ):
            self._retry_busy_sync(connection, f"PRAGMA {pragma}")
        return connection

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            self._connection = self._open_connection()
            self._checkpointer = Checkpointer(self.path)
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

    @staticmethod
    async def _execute_when_free(
        connection: sqlite3.Connection, sql: str, args: Sequence[Any] = ()
    ) -> Any:
        """Run ``sql``, retrying without blocking the loop while another process holds a lock."""
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
        """Run a Piccolo query inside the current transaction, or in one of its own."""
        query, args = querystring.compile_string(engine_type=self.engine_type)
        if self.log_queries:
            self.print_query(query_id=self.get_query_id(), query=str(querystring))
        return await self._run(query, args)

    async def run_sql(self, template: str, args: Sequence[Any]) -> list[sqlite3.Row]:
        """Run ``template`` (``{}`` placeholders) with plain values: str, int, float, bytes, None.

        The fast path of :class:`~ravepilot_core.sql.storage.SQLStorage`: compiling a
        ``QueryString`` checks every argument for nested queries and special types, which
        cost ~100 µs an invitation; the template is compiled once and cached instead.
        """
        return await self._run(_qmark(template), args)  # type: ignore[no-any-return]

    async def run_many(self, template: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one ``{}``-placeholder statement for each row of values (no result rows).

        ``executemany`` prepares the statement once and runs the rows in C: a batch of delivery
        results costs a fraction of one ``execute`` per row.
        """
        query = _qmark(template)
        if self.current_transaction.get() is not None:
            self._connect().executemany(query, rows)
            return
        async with _Transaction(self):
            self._connect().executemany(query, rows)

    async def _run(self, query: str, args: Sequence[Any]) -> Any:
        if self.current_transaction.get() is not None:
            return self._connect().execute(query, args).fetchall()
        if is_read_only(query):
            # A lone read needs no lock: the reader connection sees only committed rows, and
            # an execute() runs to completion without yielding to other coroutines.
            return await self._read(query, args)
        async with _Transaction(self):
            return self._connect().execute(query, args).fetchall()

    async def _read(self, query: str, args: Sequence[Any]) -> Any:
        self._data_version = None  # this read may see commits the kept number predates
        if self._reader is None:
            self._reader = self._open_connection()
        # A WAL reader is only ever busy during rare recovery, but then it waits the same way.
        return await self._execute_when_free(self._reader, query, args)

    async def run_ddl(self, ddl: str, in_pool: bool = False) -> Any:
        """Run DDL the same way as a query."""
        if self.current_transaction.get() is not None:
            return self._connect().execute(ddl).fetchall()
        async with _Transaction(self):
            return self._connect().execute(ddl).fetchall()

    def transaction(self, *args: Any, **kwargs: Any) -> _Transaction:  # type: ignore[override]
        """Return a write transaction (nested use joins the outer one)."""
        return _Transaction(self)

    def in_transaction(self) -> bool:
        """Whether the calling task is inside a transaction of this engine."""
        return self.current_transaction.get() is not None

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the caller's transaction has committed (never if it is not).

        For state kept beside the database that must follow committed changes only (see
        :mod:`ravepilot_core.sql.stable`). Call it inside the transaction.
        """
        transaction = self.current_transaction.get()
        if transaction is None:
            raise RuntimeError("after_commit() needs an open transaction")
        transaction.after_commit.append(callback)

    def data_version(self) -> int:
        """A number that changes whenever another connection (another process) commits.

        Read on the writer connection, so this process's own commits do not change it. Outside a
        transaction the PRAGMA takes a WAL read lock (7-15 µs under load), and every API request
        asks twice (its key and its collector, :mod:`ravepilot_core.sql.stable`), so on asyncio
        the number is kept until the current turn of the event loop ends or this engine runs a
        statement that could see a later commit (a lone read, or ``BEGIN``). That is as fresh as
        reading it each time: a turn runs only callbacks that were ready when it began, so what
        it serves arrived before; another process's commit reaches this one through I/O (a new
        turn) or through this database (a statement, which forgets the number).
        """
        version = self._data_version
        if version is None:
            version = int(self._connect().execute("PRAGMA data_version").fetchone()[0])
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not on asyncio (trio, or no loop): read it every time
                return version
            self._data_version = version
            loop.call_soon(self._forget_data_version)  # runs in the next turn, not this one
        return version

    def _forget_data_version(self) -> None:
        self._data_version = None

    def _commit_orphaned_batch(self) -> None:
        """Commit a batch left open for a successor that was cancelled before joining it."""
        lock = self._lock_for_loop()
        if self._batch is None or lock.locked() or self._waiting:
            return  # no batch, or someone holds or will get the lock and finish it
        lock.acquire_nowait()
        _Transaction.commit_batch(self, self._batch)

    async def close(self) -> None:
        """Close the connection (the next statement reopens it)."""
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        for connection in (self._connection, self._reader):
            if connection is not None:
                connection.close()
        self._connection = self._reader = None


@functools.lru_cache(maxsize=1024)
def _qmark(template: str) -> str:
    """``... WHERE id = {}`` -> ``... WHERE id = ?`` (sqlite3's placeholder)."""
    return template.replace("{}", "?")


class _Batch:
    """One SQLite transaction shared by the callers that queued up while it was open."""

    def __init__(self) -> None:
        self.members = 0
        self.committed = anyio.Event()
        self.error: BaseException | None = None
        self.after_commit: list[Callable[[], None]] = []  # run once it committed


class _Transaction:
    """A caller's transaction: a savepoint inside the engine's open batch."""

    def __init__(self, engine: InlineSQLiteEngine) -> None:
        self._engine = engine
        self._outer = engine.current_transaction.get() is None
        self._token: Any = None
        self._batch: _Batch | None = None
        self.after_commit: list[Callable[[], None]] = []  # handed to the batch if we succeed

    async def __aenter__(self) -> _Transaction:
        if not self._outer:
            return self
        engine = self._engine
        engine._waiting += 1
        try:
            await engine._lock_for_loop().acquire()
        except BaseException:
            engine._waiting -= 1
            # The caller before us may have left its batch open for us to join; if we were
            # its last hope, nobody would ever commit it.
            engine._commit_orphaned_batch()
            raise
        engine._waiting -= 1
        try:
            if engine._batch is None:
                engine._data_version = None  # the transaction may see newer commits
                await engine._execute_when_free(engine._connect(), "BEGIN IMMEDIATE")
                engine._batch = _Batch()
            engine._connect().execute("SAVEPOINT rp_tx")
        except BaseException:
            engine._lock_for_loop().release()
            raise
        self._batch = engine._batch
        self._batch.members += 1
        self._token = engine.current_transaction.set(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._outer:
            return
        engine, batch = self._engine, self._batch
        assert batch is not None
        engine.current_transaction.reset(self._token)
        connection = engine._connect()
        if not connection.in_transaction:
            # SQLite rolled the whole transaction back itself (disk full, I/O error): every
            # member of the batch has lost its changes.
            self._finish_batch(RuntimeError("SQLite rolled the transaction back"))
            raise BackendError("the database rolled the transaction back; retry") from exc
        if exc_type is None:
            connection.execute("RELEASE rp_tx")
            batch.after_commit.extend(self.after_commit)
        else:
            connection.execute("ROLLBACK TO rp_tx")
            connection.execute("RELEASE rp_tx")
        if engine._waiting and batch.members < MAX_BATCH:
            engine._lock_for_loop().release()  # the next caller joins this batch
            if exc_type is not None:
                return  # our changes are gone; nothing of ours waits for the commit
            # Shielded: our changes will be committed by whoever comes next whether or not we
            # are cancelled, so we must learn the outcome (a cancelled claim would otherwise
            # leave rows leased to nobody). The wait is short: the next caller is running.
            with anyio.CancelScope(shield=True):
                await batch.committed.wait()
            if batch.error is not None:
                raise BackendError(f"the transaction was not committed: {batch.error}; retry")
            return
        self.commit_batch(engine, batch)

    @staticmethod
    def commit_batch(engine: InlineSQLiteEngine, batch: _Batch) -> None:
        """Commit the open batch (the caller holds the lock), then close it."""
        connection = engine._connect()
        try:
            connection.execute("COMMIT")
        except BaseException as commit_error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            _Transaction.close_batch(engine, batch, commit_error)
            raise
        _Transaction.close_batch(engine, batch, None)

    def _finish_batch(self, error: BaseException | None) -> None:
        assert self._batch is not None
        self.close_batch(self._engine, self._batch, error)

    @staticmethod
    def close_batch(engine: InlineSQLiteEngine, batch: _Batch, error: BaseException | None) -> None:
        """Tell the batch's members how it ended and let the next caller in."""
        batch.error = error
        batch.committed.set()
        engine._batch = None
        engine._lock_for_loop().release()
        if error is None:
            for callback in batch.after_commit:
                callback()
