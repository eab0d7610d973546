"""The delivery engine: the attempt log, and where operator notices go."""

ID = "0002_delivery_engine"

STATEMENTS = (
    # One row per HTTP attempt. (delivery_id, number) is the key: a worker whose lease expired
    # mid-attempt may race another for the same number, and only the lease holder's row counts.
    """CREATE TABLE rp_delivery_attempts (
        delivery_id VARCHAR(40) NOT NULL REFERENCES rp_deliveries (id),
        number INTEGER NOT NULL,
        at BIGINT NOT NULL,
        target_ip TEXT,
        status_code INTEGER,
        latency_ms INTEGER,
        error TEXT,
        response_body TEXT,
        PRIMARY KEY (delivery_id, number))""",
    "ALTER TABLE rp_workspaces ADD COLUMN notify_email TEXT",
    # Claims go endpoint by endpoint (each up to its room), so one endpoint's backlog is never
    # scanned to find another's work; recover uses it too.
    "CREATE INDEX rp_deliveries_endpoint_due "
    "ON rp_deliveries (endpoint_id, status, next_attempt_at)",
    # The queue gauges (how many pending, the oldest) read only pending rows. A partial index
    # on created_at serves both and, unlike (status, next_attempt_at), is not rewritten when a
    # claim moves next_attempt_at: every index a claim touches costs throughput.
    "DROP INDEX rp_deliveries_due",
    "CREATE INDEX rp_deliveries_pending ON rp_deliveries (created_at) WHERE status = 'pending'",
)
