"""PostgreSQL storage for RavePilot: ``RAVEPILOT_DATABASE_URL=postgresql://user:pass@host/db``."""

from __future__ import annotations

from ravepilot_postgres.storage import PostgresStorage, open_postgres_storage, parse_postgres_url

__all__ = ["PostgresStorage", "open_postgres_storage", "parse_postgres_url"]
