"""The ``sqlite://`` storage: the embedded default."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from ravepilot_core.errors import ConfigurationError
from ravepilot_core.sql.engine import InlineSQLiteEngine
from ravepilot_core.sql.storage import SQLStorage

__all__ = ["open_sqlite_storage", "sqlite_path"]


def sqlite_path(url: str) -> Path:
    """Return the database file of ``sqlite:///absolute/path`` or ``sqlite://relative/path``."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise ConfigurationError(f"not a sqlite:// URL: {url!r}")
    raw = unquote(parts.netloc + parts.path)
    if not raw or raw in (":memory:", "/:memory:"):
        raise ConfigurationError(
            "sqlite:// needs a file path such as sqlite:///var/lib/ravepilot/ravepilot.db "
            "(in-memory SQLite cannot be shared; use memory:// for tests)"
        )
    return Path(raw)


def open_sqlite_storage(url: str) -> SQLStorage:
    """Create the SQLite storage (the directory is created; the schema by ``migrate()``)."""
    path = sqlite_path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    return SQLStorage(InlineSQLiteEngine(str(path)))
