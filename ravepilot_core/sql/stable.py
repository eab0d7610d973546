"""Rows that rarely change (API keys, collectors), remembered while nothing can have changed them.

Every API request looks up its key, and every invitation its collector. On SQLite each look-up
is a read on the reader connection, whose page cache SQLite empties whenever another connection
has written, which under load is always: ~27 µs of an invitation's ~300. The rows themselves
change a few times a day.

A remembered row is used only while

- no other process has committed: the engine's ``data_version`` (SQLite's counter of other
  connections' commits, read on the writer) is the one seen when it was remembered; and
- this process has not committed a change to such rows: each write registers
  :meth:`StableRows.forget_on_commit`, which forgets everything once the change is committed.

A look-up that was under way while a change committed is not remembered, so a stale row can
never outlive the commit that replaced it. Engines without ``data_version`` (Postgres) remember
nothing. Misses are not remembered: a key that does not exist yet costs a read each time.
The SQLite engine keeps the ``data_version`` it read for the rest of a turn of the event loop,
until it runs a statement that could see later commits (see ``InlineSQLiteEngine.data_version``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Protocol, TypeVar

__all__ = ["StableRows"]

T = TypeVar("T")


class _Engine(Protocol):
    def data_version(self) -> int: ...

    def in_transaction(self) -> bool: ...

    def after_commit(self, callback: Callable[[], None]) -> None: ...


_ENGINE_METHODS = ("data_version", "in_transaction", "after_commit")  # what _Engine names


class StableRows:
    """Remembered rows of one storage, keyed by what they were looked up by."""

    def __init__(self, engine: object) -> None:
        self._engine: _Engine | None = (
            engine  # type: ignore[assignment]
            if all(hasattr(engine, name) for name in _ENGINE_METHODS)
            else None
        )
        self._rows: dict[Hashable, Any] = {}
        self._version: int | None = None
        self._generation = 0  # bumped by every committed change

    async def get(self, key: Hashable, load: Callable[[], Awaitable[T | None]]) -> T | None:
        """The row remembered under ``key``, or what ``load()`` reads (remembered if found)."""
        engine = self._engine
        if engine is None or engine.in_transaction():
            # Inside a transaction a caller must see its batch's uncommitted changes.
            return await load()
        version = engine.data_version()
        if version != self._version:
            self._rows.clear()
            self._version = version
        elif key in self._rows:
            row: T = self._rows[key]
            return row
        generation = self._generation
        found = await load()
        if found is not None and generation == self._generation and version == self._version:
            self._rows[key] = found
        return found

    def forget_on_commit(self) -> None:
        """Forget every row once the caller's current transaction commits (call inside it)."""
        if self._engine is not None:
            self._engine.after_commit(self._forget)

    def _forget(self) -> None:
        self._generation += 1
        self._rows.clear()
