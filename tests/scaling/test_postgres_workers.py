"""Scaling out on one Postgres: three ``ravepilot worker`` processes share 10,000 deliveries.

Midway one worker is killed with SIGKILL and every database connection is cut (what a Postgres
restart does to its clients). Afterwards every delivery reached the receiver, each is recorded
succeeded exactly once, and the only duplicates are deliveries the killed worker had in flight.
"""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from ravepilot_core import Settings
from ravepilot_core.dispatch import LEASE
from tests.processes import (
    WORKER,
    queue_deliveries,
    ravepilot_env,
    receipt_count,
    running,
    sink,
    stopped,
)
from tests.scaling.conftest import Database

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SECRET_KEY = "scaling-test-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
ENDPOINTS = 10
INVITATIONS = 1_000
DELIVERIES = ENDPOINTS * INVITATIONS  # 10,000
WORKERS = 3
LEASE_MS = round(LEASE.total_seconds() * 1000)


def worker_settings(data_dir: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        secret_key=SECRET_KEY,
        allow_private_webhooks=True,
    )


async def until(condition: Any, *, timeout: float, what: str, logs: list[Path]) -> None:
    try:
        with anyio.fail_after(timeout):
            while not await condition():
                await anyio.sleep(0.05)
    except TimeoutError:
        pytest.fail(
            f"no {what} within {timeout:g} s; logs:\n" + "\n".join(p.read_text() for p in logs)
        )


async def test_three_workers_share_the_queue_and_a_killed_one_loses_nothing(
    tmp_path: Path, postgres: Database
) -> None:
    admin: Any = postgres.admin
    schema = postgres.schema
    data_dir = tmp_path / "data"
    receipts = tmp_path / "receipts.log"
    receipts.touch()
    logs = [tmp_path / f"worker{n}.log" for n in range(WORKERS)]
    settings = worker_settings(data_dir, postgres.url)
    env = ravepilot_env(settings)

    async def count(status: str) -> int:
        return int(
            await admin.fetchval(
                f"SELECT COUNT(*) FROM {schema}.rp_deliveries WHERE status = $1", status
            )
        )

    lease_holders: set[int] = set()

    async def watch_lease_holders() -> None:
        while True:
            for row in await admin.fetch(
                f"SELECT DISTINCT split_part(lease_owner, '-', 1) AS pid "
                f"FROM {schema}.rp_deliveries WHERE status = 'pending' AND lease_owner IS NOT NULL"
            ):
                lease_holders.add(int(row["pid"]))
            await anyio.sleep(0.05)

    async with sink(receipts, tmp_path / "sink.log") as port:
        await queue_deliveries(settings, port, endpoints=ENDPOINTS, invitations=INVITATIONS)
        assert await count("pending") == DELIVERIES

        async with (
            running(WORKER, env=env, stdout=subprocess.DEVNULL, log=logs[0]) as victim,
            running(WORKER, env=env, stdout=subprocess.DEVNULL, log=logs[1]) as second,
            running(WORKER, env=env, stdout=subprocess.DEVNULL, log=logs[2]) as third,
            anyio.create_task_group() as watchers,
        ):
            watchers.start_soon(watch_lease_holders)

            async def received(target: int) -> bool:
                return receipt_count(receipts) >= target

            await until(lambda: received(3_000), timeout=60, what="3,000 receipts", logs=logs)
            victim.send_signal(signal.SIGKILL)
            assert await victim.wait() == -signal.SIGKILL
            in_flight = {
                row["id"]
                for row in await admin.fetch(
                    f"SELECT id FROM {schema}.rp_deliveries "
                    "WHERE status = 'pending' AND lease_owner LIKE $1",
                    f"{victim.pid}-%",
                )
            }
            assert in_flight, "the kill should have caught deliveries in flight"
            # The dead worker's leases would expire in 60 s; make them expire now, exactly as
            # the wait would (a claim sets next_attempt_at to the lease's end).
            await admin.execute(
                f"UPDATE {schema}.rp_deliveries SET next_attempt_at = next_attempt_at - $1 "
                "WHERE status = 'pending' AND lease_owner LIKE $2",
                LEASE_MS,
                f"{victim.pid}-%",
            )

            await until(lambda: received(6_000), timeout=60, what="6,000 receipts", logs=logs)
            # A Postgres restart, as its clients see it: every connection is cut at once.
            cut = await admin.fetchval(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = $1",
                schema,
            )
            assert cut >= 2  # at least each survivor's listening connection
            assert await count("pending") > 0, "the queue drained before the cut: nothing tested"

            async def drained() -> bool:
                return await count("pending") == 0

            await until(drained, timeout=120, what="empty queue", logs=logs)
            for survivor, log in ((second, logs[1]), (third, logs[2])):
                assert await stopped(survivor, signal.SIGTERM, log) == 0, log.read_text()
            watchers.cancel_scope.cancel()

    received_ids = Counter(receipts.read_text().split())
    summary = (
        f"{len(in_flight)} in flight at the kill; "
        f"{received_ids.total()} receipts for {DELIVERIES} deliveries"
    )
    print(summary)
    rows = await admin.fetch(f"SELECT id, status, response_status FROM {schema}.rp_deliveries")
    assert len(rows) == DELIVERIES
    assert {(row["status"], row["response_status"]) for row in rows} == {("succeeded", 200)}
    # Every delivery reached the receiver, and nothing else did.
    assert set(received_ids) == {row["id"] for row in rows}, summary
    # Each is recorded exactly once as succeeded: one attempt row, a 2xx.
    attempts = await admin.fetch(
        f"SELECT delivery_id, COUNT(*) AS n FROM {schema}.rp_delivery_attempts GROUP BY 1"
    )
    assert len(attempts) == DELIVERIES and {row["n"] for row in attempts} == {1}, summary
    # All three took part: each was seen holding leases.
    assert lease_holders == {victim.pid, second.pid, third.pid}, lease_holders
    # Duplicates: only deliveries the killed worker had in flight, each sent at most twice.
    # (Results whose write the cut connections broke are written again, not sent again.)
    duplicated = {d for d, n in received_ids.items() if n > 1}
    assert duplicated <= in_flight, summary
    assert max(received_ids.values()) <= 2, summary
