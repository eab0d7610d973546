"""The Piccolo tables of the SQL storage, bound to an engine chosen at runtime.

Each storage instance gets its own table classes (``db=engine``), so several databases can live in
one process (tests, multi-tenant hosts) without rebinding globals. Times are Unix milliseconds in
BIGINT columns and structured values are JSON text: both read and sort the same on SQLite and
Postgres. Nullable columns say ``default=None``: Piccolo would otherwise fill an omitted column
with its type's default (0 or ''), turning "not yet" into a value. The schema itself is created
by the migrations in :mod:`ravepilot_core.sql.migrations`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from piccolo.columns import BigInt, Boolean, Integer, Text, Varchar
from piccolo.engine.base import Engine
from piccolo.table import Table

__all__ = ["Tables", "bind_tables"]


@dataclass(frozen=True)
class Tables:
    """The table classes of one database."""

    workspaces: Any
    api_keys: Any
    collectors: Any
    submissions: Any
    events: Any
    webhook_endpoints: Any
    deliveries: Any
    jobs: Any
    idempotency_keys: Any


def bind_tables(engine: Engine[Any]) -> Tables:
    """Return the table classes bound to ``engine``."""

    class Workspaces(Table, tablename="rp_workspaces", db=engine):
        id = Varchar(length=40, primary_key=True)
        slug = Varchar(length=63)
        name = Text()
        created_at = BigInt()

    class ApiKeys(Table, tablename="rp_api_keys", db=engine):
        id = Varchar(length=40, primary_key=True)
        workspace_id = Varchar(length=40)
        name = Text()
        prefix = Text()
        key_hash = Varchar(length=64)
        scopes = Text()
        created_at = BigInt()
        last_used_at = BigInt(null=True, default=None)
        revoked_at = BigInt(null=True, default=None)

    class Collectors(Table, tablename="rp_collectors", db=engine):
        id = Varchar(length=40, primary_key=True)
        workspace_id = Varchar(length=40)
        is_primary = Boolean()
        body = Text()
        created_at = BigInt()

    class Submissions(Table, tablename="rp_submissions", db=engine):
        id = Varchar(length=40, primary_key=True)
        workspace_id = Varchar(length=40)
        collector_id = Varchar(length=40)
        status = Varchar(length=20)
        customer_email = Text()
        customer_name = Text(null=True, default=None)
        customer_phone = Text(null=True, default=None)
        token_hash = Varchar(length=64)
        email_status = Varchar(length=20)
        email_sent_at = BigInt(null=True, default=None)
        email_error = Text(null=True, default=None)
        email_requested_at = BigInt(null=True, default=None)
        consent = Text(null=True, default=None)
        created_at = BigInt()
        updated_at = BigInt()

    class Events(Table, tablename="rp_events", db=engine):
        id = Varchar(length=40, primary_key=True)
        workspace_id = Varchar(length=40)
        type = Varchar(length=40)
        payload = Text()
        created_at = BigInt()

    class WebhookEndpoints(Table, tablename="rp_webhook_endpoints", db=engine):
        id = Varchar(length=40, primary_key=True)
        workspace_id = Varchar(length=40)
        url = Text()
        events = Text()
        description = Text(null=True, default=None)
        active = Boolean()
        disabled_reason = Varchar(length=20, null=True, default=None)
        failure_count = Integer()
        first_failure_at = BigInt(null=True, default=None)
        last_status_code = Integer(null=True, default=None)
        last_attempt_at = BigInt(null=True, default=None)
        auto_disabled_at = BigInt(null=True, default=None)
        secret_ciphertext = Text()
        previous_secret_ciphertext = Text(null=True, default=None)
        previous_secret_expires_at = BigInt(null=True, default=None)
        created_at = BigInt()

    class Deliveries(Table, tablename="rp_deliveries", db=engine):
        id = Varchar(length=40, primary_key=True)
        workspace_id = Varchar(length=40)
        event_id = Varchar(length=40)
        endpoint_id = Varchar(length=40)
        event_type = Varchar(length=40)
        status = Varchar(length=20)
        attempts = Integer()
        response_status = Integer(null=True, default=None)
        latency_ms = Integer(null=True, default=None)
        error = Text(null=True, default=None)
        last_attempt_at = BigInt(null=True, default=None)
        next_attempt_at = BigInt(null=True, default=None)
        lease_owner = Varchar(length=40, null=True, default=None)
        lease_until = BigInt(null=True, default=None)
        created_at = BigInt()

    class Jobs(Table, tablename="rp_jobs", db=engine):
        id = Varchar(length=40, primary_key=True)
        workspace_id = Varchar(length=40)
        kind = Varchar(length=40)
        subject_id = Varchar(length=40)
        payload = Text()
        status = Varchar(length=20)
        attempts = Integer()
        max_attempts = Integer()
        run_at = BigInt()
        lease_owner = Varchar(length=40, null=True, default=None)
        lease_until = BigInt(null=True, default=None)
        last_error = Text(null=True, default=None)
        created_at = BigInt()
        finished_at = BigInt(null=True, default=None)

    class IdempotencyKeys(Table, tablename="rp_idempotency_keys", db=engine):
        id = Text(primary_key=True)
        workspace_id = Varchar(length=40)
        key = Text()
        fingerprint = Varchar(length=64)
        response_status = Integer(null=True, default=None)
        response_body = Text(null=True, default=None)
        created_at = BigInt()
        expires_at = BigInt()

    return Tables(
        workspaces=Workspaces,
        api_keys=ApiKeys,
        collectors=Collectors,
        submissions=Submissions,
        events=Events,
        webhook_endpoints=WebhookEndpoints,
        deliveries=Deliveries,
        jobs=Jobs,
        idempotency_keys=IdempotencyKeys,
    )
