"""Crash test: ``ravepilot worker`` killed with SIGKILL mid-delivery, again and again.

5,000 deliveries are queued, then the worker process is killed at random moments while hundreds
of requests are in flight, and restarted each time. Afterwards every delivery reached the
receiver at least once, each is recorded exactly once as succeeded, and the receiver saw no
more duplicates than there were deliveries in flight (leased, no result yet) at the kills.
One stop in the series is a graceful SIGTERM, which must leave nothing in flight.

The receiver is ``tests/webhook_sink.py`` in its own process, so the worker's death cannot
disturb what it logs.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
from collections import Counter
from contextlib import closing
from pathlib import Path

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
    until,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.sqlite]

SECRET_KEY = "crash-test-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
ENDPOINTS = 8  # several endpoints: the worker's per-endpoint cap (64) would otherwise throttle it
INVITATIONS = 625  # each invitation.created event fans out to every endpoint
DELIVERIES = ENDPOINTS * INVITATIONS  # 5,000
# How each worker run ends before the last one; the last one drains the queue.
STOPS = (signal.SIGKILL, signal.SIGKILL, signal.SIGTERM, signal.SIGKILL, signal.SIGKILL)
RECEIPTS_PER_RUN = (200, 700)  # a run is stopped after a random number of receipts in this range
LEASE_MS = round(LEASE.total_seconds() * 1000)


# -- state -------------------------------------------------------------------------------------
def query(db: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    # The worker may be writing: WAL lets this read the last commit without waiting for it.
    with closing(sqlite3.connect(db, timeout=10)) as connection, connection:
        return connection.execute(sql, args).fetchall()


def pending_count(db: Path) -> int:
    return int(query(db, "SELECT COUNT(*) FROM rp_deliveries WHERE status = 'pending'")[0][0])


def leased_by(db: Path, pid: int) -> set[str]:
    """Pending deliveries leased by the worker process ``pid``: claimed, no result written."""
    found = query(
        db,
        "SELECT id FROM rp_deliveries WHERE status = 'pending' AND lease_owner LIKE ?",
        f"{pid}-%",  # Dispatcher.worker_id is "<pid>-<random hex>"
    )
    return {str(row[0]) for row in found}


def expire_leases(db: Path, pid: int) -> None:
    """Make a dead worker's leases expire now instead of in 60 s.

    This stands in for the wait: a claim sets next_attempt_at to the lease's end, so moving it
    back by one LEASE makes the rows due as they would be 60 s later; the lease owner stays, as
    after a real expiry. Lease expiry itself is tested with an injected clock by the storage
    contract suite. No worker runs while this is done.
    """
    query(
        db,
        "UPDATE rp_deliveries SET next_attempt_at = next_attempt_at - ? "
        "WHERE status = 'pending' AND lease_owner LIKE ?",
        LEASE_MS,
        f"{pid}-%",
    )


async def queue_and_list_deliveries(settings: Settings, port: int) -> set[str]:
    """Queue the deliveries in-process; return their ids."""
    await queue_deliveries(settings, port, endpoints=ENDPOINTS, invitations=INVITATIONS)
    found = query(settings.data_dir / "ravepilot.db", "SELECT id, status FROM rp_deliveries")
    assert {status for _, status in found} == {"pending"}
    return {str(delivery_id) for delivery_id, _ in found}


# -- the test ----------------------------------------------------------------------------------
async def test_worker_killed_mid_delivery_loses_nothing_and_records_each_once(
    tmp_path: Path,
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    db = data_dir / "ravepilot.db"
    receipts = tmp_path / "receipts.log"
    receipts.touch()
    worker_log = tmp_path / "worker.log"
    settings = Settings(data_dir=data_dir, secret_key=SECRET_KEY, allow_private_webhooks=True)
    env = ravepilot_env(settings)
    in_flight: list[set[str]] = []  # per stop: what the stopped worker had leased and not recorded

    async with sink(receipts, tmp_path / "sink.log") as port:
        delivery_ids = await queue_and_list_deliveries(settings, port)
        assert len(delivery_ids) == DELIVERIES

        for stop in STOPS:
            async with running(WORKER, env=env, stdout=subprocess.DEVNULL, log=worker_log) as w:
                target = receipt_count(receipts) + rng.randint(*RECEIPTS_PER_RUN)
                await until(
                    lambda target=target: receipt_count(receipts) >= target,
                    timeout=30,
                    process=w,
                    what=f"{target} receipts",
                    log=worker_log,
                )
                code = await stopped(w, stop, worker_log)
            leased = leased_by(db, w.pid)
            if stop == signal.SIGKILL:
                assert code == -signal.SIGKILL
                assert leased, "the kill should have caught deliveries in flight"
                expire_leases(db, w.pid)
            else:
                # A graceful stop finishes and records every started delivery.
                assert code == 0, worker_log.read_text()
                assert not leased, f"{len(leased)} deliveries left leased by a graceful stop"
            assert pending_count(db) > 0, "the queue drained before the stop: nothing was tested"
            in_flight.append(leased)

        async with running(WORKER, env=env, stdout=subprocess.DEVNULL, log=worker_log) as w:
            await until(
                lambda: pending_count(db) == 0,
                timeout=60,
                process=w,
                what="empty queue",
                log=worker_log,
            )
            assert await stopped(w, signal.SIGTERM, worker_log) == 0, worker_log.read_text()
        assert worker_log.read_text().count("worker stopped") == 2  # the two SIGTERM stops

    received = Counter(receipts.read_text().split())
    duplicated = [sum(received[delivery_id] > 1 for delivery_id in ids) for ids in in_flight]
    summary = (
        f"seed {seed}; in flight at each stop {[len(ids) for ids in in_flight]}, "
        f"of which received twice or more {duplicated}; "
        f"{received.total()} receipts for {DELIVERIES} deliveries"
    )
    print(summary)

    # Every delivery reached the receiver, and nothing else did.
    assert set(received) == delivery_ids, summary

    # Each is recorded exactly once as succeeded: one attempt, a 2xx. A killed attempt left no
    # row (its result was never written), so the attempt log holds the one that counted.
    statuses = query(
        db, "SELECT status, response_status, COUNT(*) FROM rp_deliveries GROUP BY 1, 2"
    )
    assert statuses == [("succeeded", 200, DELIVERIES)], summary
    attempts = query(
        db,
        "SELECT delivery_id, COUNT(*), "
        "SUM(CASE WHEN status_code BETWEEN 200 AND 299 THEN 1 ELSE 0 END) "
        "FROM rp_delivery_attempts GROUP BY delivery_id",
    )
    assert len(attempts) == DELIVERIES, summary
    assert all(count == 1 and succeeded == 1 for _, count, succeeded in attempts), [
        row for row in attempts if row[1:] != (1, 1)
    ][:10]

    # Duplicates: only deliveries in flight at a kill, each at most once per kill that caught it.
    assert received.total() - DELIVERIES <= sum(len(ids) for ids in in_flight), summary
    for delivery_id, count in received.items():
        caught = sum(delivery_id in ids for ids in in_flight)
        assert count - 1 <= caught, f"{delivery_id} received {count} times, in flight {caught}"
