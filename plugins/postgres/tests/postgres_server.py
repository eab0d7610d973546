"""Where the test PostgreSQL is, and how to start it when it is not running."""

from __future__ import annotations

import os

SERVER_URL = os.environ.get(
    "RAVEPILOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
START_HINT = (
    f"PostgreSQL is not reachable at {SERVER_URL} (set RAVEPILOT_TEST_POSTGRES_URL, or start it: "
    "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start)"
)
