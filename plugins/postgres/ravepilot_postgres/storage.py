"""The ``postgresql://`` storage: RavePilot's SQL storage on Postgres.

Everything but the dialect lives in :class:`~ravepilot_core.sql.storage.SQLStorage`; here are the
parts a database with many concurrent writers needs: claims that take different rows in different
workers (``FOR UPDATE SKIP LOCKED``), rows checked under lock before results are written,
migrations serialised by an advisory lock, and ``LISTEN/NOTIFY`` wake-ups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ravepilot_core.errors import ConfigurationError
from ravepilot_core.sql.deliveries import CLAIM_COLUMNS
from ravepilot_core.sql.statements import Row
from ravepilot_core.sql.storage import SQLStorage
from ravepilot_postgres.engine import AsyncpgEngine
from ravepilot_postgres.notices import CHANNEL, WorkNotices

__all__ = ["PostgresStorage", "open_postgres_storage", "parse_postgres_url"]

# pg_advisory_xact_lock takes a bigint; any fixed number works as long as nothing else uses it.
_MIGRATION_LOCK_KEY = 0x5241_5645_5049_4C54 & 0x7FFF_FFFF_FFFF_FFFF  # "RAVEPILT"
_POOL_OPTIONS = {"pool_min": 1, "pool_max": 10}


class PostgresStorage(SQLStorage):
    """A :class:`~ravepilot_core.protocols.Storage` on PostgreSQL (asyncpg pool)."""

    claim_lock = " FOR UPDATE SKIP LOCKED"
    lock_rows = " FOR UPDATE"
    migration_lock = f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})"

    def __init__(self, engine: AsyncpgEngine) -> None:
        super().__init__(engine)
        self._notices = WorkNotices(engine.dsn)

    async def _announce_work(self) -> None:
        transaction = self.engine.current_transaction.get()
        if transaction is not None:
            if transaction.work_announced:
                return
            transaction.work_announced = True
        await self._all(f"SELECT pg_notify('{CHANNEL}', '')")

    async def _claim_rows(
        self,
        now_ms: int,
        worker_id: str,
        lease_ms: int,
        limit: int,
        per_endpoint: int | None,
        room: Mapping[str, int],
    ) -> Sequence[Row]:
        """Lease and read due deliveries in one statement.

        Per endpoint (a LATERAL seek of the pending index), up to its room and never more than
        ``limit``, rows other workers hold are skipped; of those the oldest ``limit`` are leased
        and returned with their event and endpoint. One round trip where the portable claim
        takes five. The per-endpoint bound matters: every row the seeks return stays locked
        until the statement ends, and a concurrent claim skips it, so reading a whole backlog
        would leave other workers with nothing to take.
        """
        return await self._all(
            "WITH room AS (SELECT * FROM unnest({}::text[], {}::int[]) AS r(endpoint_id, take)), "
            "picked AS (SELECT p.id, p.next_attempt_at FROM rp_webhook_endpoints w "
            "CROSS JOIN LATERAL (SELECT d.id, d.next_attempt_at FROM rp_deliveries d "
            "WHERE d.endpoint_id = w.id AND d.status = 'pending' AND d.next_attempt_at <= {} "
            "ORDER BY d.next_attempt_at "
            "LIMIT LEAST(COALESCE((SELECT take FROM room WHERE room.endpoint_id = w.id), "
            "{}::int, {}::int), {}::int) "
            "FOR UPDATE SKIP LOCKED) p ORDER BY p.next_attempt_at LIMIT {}), "
            "claimed AS (UPDATE rp_deliveries d "
            "SET lease_owner = {}, lease_until = {}, next_attempt_at = {} "
            "FROM picked WHERE d.id = picked.id "
            "RETURNING d.id, d.workspace_id, d.event_id, d.event_type, d.attempts, "
            "d.endpoint_id, picked.next_attempt_at AS due) "
            f"SELECT {CLAIM_COLUMNS} FROM claimed d "
            "JOIN rp_events e ON e.id = d.event_id "
            "JOIN rp_webhook_endpoints w ON w.id = d.endpoint_id ORDER BY d.due, d.id",
            list(room),
            [max(0, take) for take in room.values()],
            now_ms,
            per_endpoint,
            limit,
            limit,
            limit,
            worker_id,
            lease_ms,
            lease_ms,
        )

    async def _settle(
        self,
        attempted: Sequence[tuple[object, ...]],
        parked: Sequence[tuple[object, ...]],
        worker_id: str,
    ) -> set[str]:
        """Write a batch of outcomes in one UPDATE per kind, from arrays.

        One statement however large the batch (``executemany`` ran one UPDATE per delivery),
        and the lease check is its WHERE: Postgres re-checks it after locking each row, so a
        row another worker took over meanwhile is left alone.
        """
        held: set[str] = set()
        if attempted:
            found = await self._all(
                "UPDATE rp_deliveries AS d SET status = u.status, next_attempt_at = u.next_at, "
                "attempts = u.number, response_status = u.code, latency_ms = u.latency, "
                "error = u.error, last_attempt_at = u.at, lease_owner = NULL, lease_until = NULL "
                "FROM unnest({}::text[], {}::bigint[], {}::int[], {}::int[], {}::int[], "
                "{}::text[], {}::bigint[], {}::text[]) "
                "AS u(status, next_at, number, code, latency, error, at, id) "
                "WHERE d.id = u.id AND d.lease_owner = {} AND d.status = 'pending' "
                "RETURNING d.id",
                *(list(column) for column in zip(*attempted, strict=True)),
                worker_id,
            )
            held.update(row["id"] for row in found)
        if parked:
            found = await self._all(
                "UPDATE rp_deliveries AS d SET status = u.status, next_attempt_at = NULL, "
                "lease_owner = NULL, lease_until = NULL "
                "FROM unnest({}::text[], {}::text[]) AS u(status, id) "
                "WHERE d.id = u.id AND d.lease_owner = {} AND d.status = 'pending' "
                "RETURNING d.id",
                *(list(column) for column in zip(*parked, strict=True)),
                worker_id,
            )
            held.update(row["id"] for row in found)
        return held

    async def wait_for_changes(self, timeout: float) -> bool:
        """Return when another process announces work (NOTIFY), or after ``timeout``."""
        return await self._notices.wait(timeout)

    async def close(self) -> None:
        """Stop listening and close the pool."""
        await self._notices.close()
        await super().close()


def parse_postgres_url(url: str) -> tuple[str, int, int]:
    """Split RavePilot's pool options off a libpq URL: ``(dsn, pool_min, pool_max)``.

    Every other query parameter (``sslmode``, ``connect_timeout``, ...) is left for asyncpg,
    which passes unknown ones to the server as settings.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigurationError(f"not a postgresql:// URL: {url!r}")
    if not parts.hostname and not parts.path.strip("/"):
        raise ConfigurationError(
            "postgresql:// needs a server or a database, e.g. "
            "postgresql://ravepilot:secret@db.internal:5432/ravepilot"
        )
    options = dict(_POOL_OPTIONS)
    kept = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in options:
            kept.append((name, value))
            continue
        if not value.isdigit() or int(value) < 1:
            raise ConfigurationError(f"{name} in the database URL must be a whole number >= 1")
        options[name] = int(value)
    if options["pool_min"] > options["pool_max"]:
        raise ConfigurationError(
            f"pool_min ({options['pool_min']}) is larger than pool_max ({options['pool_max']})"
        )
    dsn = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(kept)))
    return dsn, options["pool_min"], options["pool_max"]


async def open_postgres_storage(url: str) -> PostgresStorage:
    """Connect to the database of ``url``; the schema comes from ``migrate()``."""
    dsn, pool_min, pool_max = parse_postgres_url(url)
    engine = AsyncpgEngine(dsn, min_size=pool_min, max_size=pool_max)
    await engine.open()
    return PostgresStorage(engine)
