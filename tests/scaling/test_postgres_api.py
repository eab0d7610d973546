"""``ravepilot serve --workers 2`` on one Postgres: two API processes, each with its own worker.

Invitations arrive concurrently on both processes, a fifth of them repeats: each customer gets
exactly one submission, and every webhook is delivered and recorded exactly once although both
processes' workers claim from the same queue.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from ravepilot_core import Settings
from tests.processes import free_port, ravepilot_env, receipt_count, running, sink, stopped
from tests.scaling.conftest import Database
from tests.server.test_cli import KEY_PATTERN

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CUSTOMERS = 200
REPEATS = 50  # invitations sent again for customers already invited


async def test_two_api_processes_share_requests_and_deliveries(
    tmp_path: Path, postgres: Database
) -> None:
    admin: Any = postgres.admin
    schema = postgres.schema
    port = free_port()
    env = ravepilot_env(
        Settings(
            data_dir=tmp_path / "data",
            database_url=postgres.url,
            secret_key="api-scaling-test-secret-key-0123456789abcdefghijklmnop",
            allow_private_webhooks=True,
        )
    )
    serve = [sys.executable, "-m", "ravepilot_server.cli", "serve", "--port", str(port)]
    serve += ["--workers", "2"]
    receipts = tmp_path / "receipts.log"
    receipts.touch()
    log = tmp_path / "serve.log"
    base = f"http://127.0.0.1:{port}"

    async with (
        sink(receipts, tmp_path / "sink.log") as sink_port,
        running(serve, env=env, stdout=subprocess.PIPE, log=log) as server,
    ):
        assert server.stdout is not None
        lines = BufferedByteReceiveStream(server.stdout)
        key = None
        with anyio.fail_after(60):
            while key is None:
                line = (await lines.receive_until(b"\n", 1000)).decode()
                if match := KEY_PATTERN.match(line):
                    key = match.group(1)
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
            with anyio.fail_after(60):
                while True:
                    try:
                        if (await client.get("/health")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await anyio.sleep(0.1)
            created = await client.post(
                "/v1/webhooks", json={"url": f"http://127.0.0.1:{sink_port}/hook"}
            )
            assert created.status_code == 201, created.text

            submissions: dict[str, set[str]] = {}
            limiter = anyio.CapacityLimiter(16)

            async def invite(number: int) -> None:
                email = f"customer{number % CUSTOMERS}@example.com"
                async with limiter:
                    response = await client.post("/v1/invitations", json={"customer_email": email})
                assert response.status_code in (200, 201), response.text
                submissions.setdefault(email, set()).add(response.json()["submission"]["id"])

            async with anyio.create_task_group() as group:
                for number in range(CUSTOMERS + REPEATS):
                    group.start_soon(invite, number)

        assert len(submissions) == CUSTOMERS
        assert all(len(ids) == 1 for ids in submissions.values()), "one submission per customer"

        async def delivered() -> int:
            return int(
                await admin.fetchval(
                    f"SELECT COUNT(*) FROM {schema}.rp_deliveries WHERE status = 'succeeded'"
                )
            )

        with anyio.fail_after(60):
            while await delivered() < CUSTOMERS:
                await anyio.sleep(0.1)
        assert await stopped(server, signal.SIGTERM, log) == 0, log.read_text()

    rows = await admin.fetch(f"SELECT id, status FROM {schema}.rp_deliveries")
    assert len(rows) == CUSTOMERS  # one invitation.created per customer, repeats emit nothing
    assert {row["status"] for row in rows} == {"succeeded"}
    received = receipts.read_text().split()
    assert sorted(received) == sorted(row["id"] for row in rows), "each delivered exactly once"
    assert receipt_count(receipts) == CUSTOMERS
