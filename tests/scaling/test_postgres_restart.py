"""A real PostgreSQL restart under a running ``ravepilot worker``: nothing is lost.

The machine's own cluster is restarted (``pg_ctlcluster ... restart``) while the worker is
delivering. The worker's pooled connections and its LISTEN connection die, claims and result
writes fail for a moment; afterwards every delivery is recorded succeeded exactly once and only
deliveries in flight during the restart may reach the receiver twice.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest

from ravepilot_core.testing.components import require_component
from tests.processes import WORKER, queue_deliveries, ravepilot_env, receipt_count, running, sink
from tests.scaling.conftest import SERVER_URL, Database
from tests.scaling.test_postgres_workers import ENDPOINTS, INVITATIONS, worker_settings

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

DELIVERIES = ENDPOINTS * INVITATIONS


def local_cluster() -> tuple[str, str] | None:
    """(version, name) of the local cluster serving SERVER_URL, if this machine runs it."""
    if urlsplit(SERVER_URL).hostname not in ("127.0.0.1", "localhost"):
        return None
    if shutil.which("pg_lsclusters") is None or shutil.which("pg_ctlcluster") is None:
        return None
    port = str(urlsplit(SERVER_URL).port or 5432)
    for line in subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True
    ).stdout.splitlines():
        version, name, cluster_port, status = line.split()[:4]
        if cluster_port == port and status == "online":
            return version, name
    return None


async def fresh_count(schema: str, status: str) -> int:
    import asyncpg

    connection = await asyncpg.connect(SERVER_URL, timeout=30)
    try:
        return int(
            await connection.fetchval(
                f"SELECT COUNT(*) FROM {schema}.rp_deliveries WHERE status = $1", status
            )
        )
    finally:
        await connection.close()


async def test_a_restarted_server_is_survived_and_nothing_is_lost(
    tmp_path: Path, postgres: Database
) -> None:
    cluster = local_cluster()
    require_component(
        cluster is not None,
        f"restarting PostgreSQL needs its local cluster for {SERVER_URL} and pg_ctlcluster",
    )
    assert cluster is not None
    schema = postgres.schema
    data_dir = tmp_path / "data"
    receipts = tmp_path / "receipts.log"
    receipts.touch()
    log = tmp_path / "worker.log"

    async with sink(receipts, tmp_path / "sink.log") as port:
        settings = worker_settings(data_dir, postgres.url)
        await queue_deliveries(settings, port, endpoints=ENDPOINTS, invitations=INVITATIONS)
        env = ravepilot_env(settings)
        async with running(WORKER, env=env, stdout=subprocess.DEVNULL, log=log) as worker:
            # Early in the backlog: stopping PostgreSQL takes about as long as a worker needs
            # for thousands of deliveries, and the restart must find work still pending.
            with anyio.fail_after(60):
                while receipt_count(receipts) < 200:
                    await anyio.sleep(0.02)
            restart = await anyio.run_process(
                ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, "restart"], check=False
            )
            assert restart.returncode == 0, restart.stderr.decode()
            assert await fresh_count(schema, "pending") > 0, "drained before the restart"
            with anyio.fail_after(120):
                while await fresh_count(schema, "pending") > 0:
                    assert worker.returncode is None, log.read_text()
                    await anyio.sleep(0.2)
            worker.terminate()
            assert await worker.wait() == 0, log.read_text()

    import asyncpg

    check: Any = await asyncpg.connect(SERVER_URL, timeout=30)
    try:
        rows = await check.fetch(f"SELECT id, status FROM {schema}.rp_deliveries")
        attempts = await check.fetch(
            f"SELECT delivery_id, COUNT(*) AS n FROM {schema}.rp_delivery_attempts GROUP BY 1"
        )
    finally:
        await check.close()
    received = Counter(receipts.read_text().split())
    summary = f"{received.total()} receipts for {DELIVERIES} deliveries"
    assert len(rows) == DELIVERIES
    assert {row["status"] for row in rows} == {"succeeded"}, summary
    assert set(received) == {row["id"] for row in rows}, summary
    assert len(attempts) == DELIVERIES and {row["n"] for row in attempts} == {1}, summary
    # Only what was in flight while the server was down may have gone out twice.
    assert received.total() - DELIVERIES <= 256, summary
    assert "could not" in log.read_text(), "the restart should have been noticed"
