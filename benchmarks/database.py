"""The database a benchmark runs on: SQLite in its temp data dir, or a fresh Postgres schema.

``--database sqlite`` (the default) is the embedded default: ``ravepilot.db`` in the run's data
dir, and no ``RAVEPILOT_DATABASE_URL``. ``--database postgres`` creates a schema
``rp_bench_<hex>`` on the ``--postgres-url`` server for the run, and everything the benchmark
starts gets ``RAVEPILOT_DATABASE_URL=<url>?search_path=<schema>&application_name=<schema>``
(asyncpg sends unknown URL parameters to the server as settings; the name tells the run's
backends apart from other clients of the same server when their CPU is measured). The schema is
dropped at exit unless ``--keep``.

:meth:`BenchDatabase.query` reads the run's tables behind RavePilot's back, whichever the
database: SQL with ``$1, $2, ...`` placeholders, rows as tuples.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import sqlite3
import threading
from pathlib import Path
from typing import Any

from common import BenchmarkAborted, process_cpu_seconds, process_name

__all__ = [
    "DEFAULT_POSTGRES_URL",
    "BenchDatabase",
    "add_database_arguments",
    "postgres_cpu_seconds",
    "postgres_cpu_since",
]

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def add_database_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="sqlite: the embedded default in the temp data dir; postgres: a fresh schema on "
        "--postgres-url, dropped at exit unless --keep (sqlite)",
    )
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_URL,
        help=f"the server for --database postgres ({DEFAULT_POSTGRES_URL})",
    )


class BenchDatabase:
    """The run's database: its URL for RavePilot, read access for the benchmark, clean-up."""

    def __init__(self, kind: str, data_dir: Path, postgres_url: str = DEFAULT_POSTGRES_URL):
        self.kind = kind
        self.sqlite_path = data_dir / "ravepilot.db"
        self.server_url = postgres_url
        self.schema = f"rp_bench_{secrets.token_hex(4)}" if kind == "postgres" else None
        self._sqlite: sqlite3.Connection | None = None
        self._sqlite_lock = threading.Lock()
        self._postgres: Any = None  # an asyncpg connection, opened by the first query
        self.backend_pid: int | None = None  # its backend: the benchmark's own reads

    @property
    def is_postgres(self) -> bool:
        return self.kind == "postgres"

    @property
    def url(self) -> str | None:
        """``RAVEPILOT_DATABASE_URL`` for the run; None means the embedded SQLite default."""
        if self.schema is None:
            return None
        separator = "&" if "?" in self.server_url else "?"
        return (
            f"{self.server_url}{separator}search_path={self.schema}&application_name={self.schema}"
        )

    def environment(self) -> dict[str, str]:
        """What a child process needs (merged over an environment without ``RAVEPILOT_*``)."""
        return {} if self.url is None else {"RAVEPILOT_DATABASE_URL": self.url}

    def describe(self) -> str:
        if self.schema is None:
            return f"SQLite {sqlite3.sqlite_version} in a temp dir"
        return f"PostgreSQL, schema {self.schema} on {self.server_url.split('@')[-1]}"

    # -- the schema's life (blocking: called outside the benchmark's event loop) ----------------
    def create(self) -> None:
        """Create the Postgres schema (nothing to do for SQLite: RavePilot creates the file)."""
        if self.schema is not None:
            asyncio.run(self._admin(f"CREATE SCHEMA {self.schema}"))

    def drop(self) -> None:
        if self.schema is not None:
            asyncio.run(self._admin(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE"))

    async def _admin(self, statement: str) -> None:
        import asyncpg

        try:
            connection = await asyncpg.connect(self.server_url, timeout=10)
        except (OSError, asyncpg.PostgresError) as exc:
            raise BenchmarkAborted(f"PostgreSQL at {self.server_url}: {exc}") from exc
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    # -- reading the run's tables ------------------------------------------------------------
    async def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Run one read-only statement on a connection of our own; ``$n`` placeholders.

        SQLite runs in a thread on a read-only connection (sqlite3 releases the GIL while a
        statement runs), so a count over the backlog costs an in-process worker's loop next to
        nothing; Postgres runs the statement in the server and the loop only awaits the answer.
        """
        if self.schema is None:
            import anyio

            sql = re.sub(r"\$(\d+)", r"?\1", sql)  # SQLite's numbered parameters
            return await anyio.to_thread.run_sync(self._sqlite_query, sql, args)
        if self._postgres is None:
            import asyncpg

            self._postgres = await asyncpg.connect(self.url, timeout=10)
            self.backend_pid = self._postgres.get_server_pid()
        return [tuple(row) for row in await self._postgres.fetch(sql, *args)]

    def _sqlite_query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._sqlite_lock:
            if self._sqlite is None:
                self._sqlite = sqlite3.connect(
                    f"file:{self.sqlite_path}?mode=ro",
                    uri=True,
                    check_same_thread=False,
                    timeout=10,
                )
            return self._sqlite.execute(sql, args).fetchall()

    def sqlite_write_locked(self) -> bool:
        """Whether another connection holds SQLite's write lock right now (never on Postgres)."""
        if self.schema is not None or not self.sqlite_path.exists():
            return False
        probe = sqlite3.connect(self.sqlite_path, timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
        except sqlite3.OperationalError:
            return True
        finally:
            probe.close()
        return False

    async def other_clients(self) -> set[int]:
        """The backends of the server's other clients: not this run's connections."""
        if self.schema is None:
            return set()
        found = await self.query(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND application_name IS DISTINCT FROM $1",
            self.schema,
        )
        return {pid for (pid,) in found}

    async def server_version(self) -> str:
        if self.schema is None:
            return sqlite3.sqlite_version
        return str((await self.query("SHOW server_version"))[0][0]).split()[0]

    async def close(self) -> None:
        """Close the benchmark's own connection (RavePilot's are its own business)."""
        if self._postgres is not None:
            await self._postgres.close()
            self._postgres = None
        with self._sqlite_lock:
            if self._sqlite is not None:
                self._sqlite.close()
                self._sqlite = None


def postgres_cpu_seconds() -> dict[int, float]:
    """User + system CPU seconds of every process named ``postgres``, by pid (from /proc).

    The server, its background processes and every backend, whoever its client: leave out
    :meth:`BenchDatabase.other_clients` (and the benchmark's own ``backend_pid``) to get what the
    run costs the database.
    """
    found: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or process_name(int(entry.name)) != "postgres":
            continue
        seconds = process_cpu_seconds(int(entry.name))
        if seconds is not None:  # None: gone meanwhile
            found[int(entry.name)] = seconds
    return found


def postgres_cpu_since(before: dict[int, float]) -> dict[int, float]:
    """CPU seconds each process named ``postgres`` used since ``before``, by pid (a backend that
    started meanwhile counts in full: opening a connection is part of the cost)."""
    return {pid: now - before.get(pid, 0.0) for pid, now in postgres_cpu_seconds().items()}
