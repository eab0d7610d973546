"""Running portable SQL on a Piccolo engine: the base every part of the SQL storage builds on.

Statements are written once with ``{}`` placeholders. Piccolo's ``QueryString`` binds them in
each engine's own style (``?`` or ``$1``); an engine may also offer ``run_sql`` (a cached-compile
fast path) and ``run_many`` (``executemany``), as the inline SQLite engine does. The outbox
writes (events with their deliveries, jobs) live here too: every part of the storage makes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from piccolo.engine.base import Engine
from piccolo.querystring import QueryString

from ravepilot_core.ids import new_id
from ravepilot_core.models import EventRecord, Job
from ravepilot_core.sql import rows

__all__ = ["Row", "SQLStatements", "chunks", "is_read_only", "placeholders"]

Row = Mapping[str, Any]  # sqlite3.Row on SQLite, asyncpg.Record on Postgres
# Bound parameters one statement may have: SQLite allows 32,766, Postgres 32,767.
MAX_PARAMETERS = 32_766


def is_read_only(query: str) -> bool:
    """Whether ``query`` is a lone SELECT.

    It changes nothing, so an engine may run it outside a write transaction (SQLite) or run it
    again on another connection when the first was found dead (Postgres).
    """
    return query.lstrip()[:6].upper() == "SELECT"


def placeholders(count: int) -> str:
    """``{}, {}, ...``: ``count`` placeholders for an ``IN (...)`` or a ``VALUES (...)``."""
    return ", ".join(["{}"] * count)


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """``items`` in slices of at most ``size`` (statements have a bound-parameter limit)."""
    return [items[start : start + size] for start in range(0, len(items), size)]


def insert_statement(table: str, records: Sequence[Row], suffix: str = "") -> tuple[str, list[Any]]:
    """``INSERT INTO table (columns) VALUES (...), (...)`` for rows with the same columns."""
    columns = list(records[0])
    values = ", ".join(f"({placeholders(len(columns))})" for _ in records)
    args = [record[column] for record in records for column in columns]
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values}{suffix}", args


class SQLStatements:
    """Runs statements on one engine, through its fast paths where it has them.

    Two dialect hooks, empty for SQLite, whose one write transaction at a time already excludes
    every other writer; an engine with row locks (the Postgres plugin) fills them in.
    """

    #: Appended to a SELECT that picks rows a claim is about to lease: with row locks,
    #: " FOR UPDATE SKIP LOCKED" lets concurrent workers pick different rows instead of queueing.
    claim_lock = ""
    #: Appended to a SELECT that checks rows before they are updated (" FOR UPDATE").
    lock_rows = ""

    def __init__(self, engine: Engine[Any]) -> None:
        self.engine = engine
        self._run_sql = getattr(engine, "run_sql", None)
        self._run_many = getattr(engine, "run_many", None)

    def _in_transaction(self) -> bool:
        """Whether the calling task is inside a transaction of the engine (Piccolo's context)."""
        current = getattr(self.engine, "current_transaction", None)
        return current is not None and current.get() is not None

    async def _all(self, sql: str, *args: Any) -> list[Row]:
        if self._run_sql is not None:
            found: list[Row] = await self._run_sql(sql, args)
        else:
            found = await self.engine.run_querystring(QueryString(sql, *args))
        return found

    async def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run ``sql`` once per row of values (batched where the engine can)."""
        if self._run_many is not None:
            await self._run_many(sql, rows)
            return
        for values in rows:
            await self.engine.run_querystring(QueryString(sql, *values))

    async def _one(self, sql: str, *args: Any) -> Row | None:
        found = await self._all(sql, *args)
        return found[0] if found else None

    async def _insert(self, table: str, records: Sequence[Row], suffix: str = "") -> list[Row]:
        """Insert rows, as many statements as the bound-parameter limit makes necessary."""
        if not records:
            return []
        found: list[Row] = []
        for chunk in chunks(records, MAX_PARAMETERS // len(records[0])):
            sql, args = insert_statement(table, chunk, suffix)
            found.extend(await self._all(sql, *args))
        return found

    async def _write_events(self, events: Sequence[EventRecord]) -> None:
        """Insert events and their deliveries; must run inside the caller's transaction."""
        if not events:
            return
        await self._insert("rp_events", [rows.event_row(e) for e in events])
        workspace_ids = sorted({e.workspace_id for e in events})
        endpoints = [
            rows.endpoint_from_row(row)
            for row in await self._all(
                f"SELECT * FROM rp_webhook_endpoints "
                f"WHERE workspace_id IN ({placeholders(len(workspace_ids))})",
                *workspace_ids,
            )
        ]
        deliveries = []
        for event in events:
            for record in endpoints:
                status = record.new_delivery_status(event.workspace_id, event.type)
                if status is None:
                    continue
                deliveries.append(
                    {
                        "id": new_id("dlv", event.created_at),
                        "workspace_id": event.workspace_id,
                        "event_id": event.id,
                        "endpoint_id": record.endpoint.id,
                        "event_type": event.type,
                        "status": status,
                        "attempts": 0,
                        "next_attempt_at": rows.ms(event.created_at)
                        if status == "pending"
                        else None,
                        "created_at": rows.ms(event.created_at),
                    }
                )
        if deliveries:
            await self._insert("rp_deliveries", deliveries)
            await self._announce_work()

    async def _write_jobs(self, jobs: Sequence[Job]) -> None:
        """Insert jobs; inside the caller's transaction, with the change that queues them."""
        if jobs:
            await self._insert("rp_jobs", [rows.job_row(j) for j in jobs])
            await self._announce_work()

    async def _announce_work(self) -> None:
        """Tell workers in other processes that work became due (sent when the caller commits).

        Nothing to do on SQLite: a sleeping worker watches its ``data_version``. The Postgres
        plugin sends a NOTIFY here.
        """
