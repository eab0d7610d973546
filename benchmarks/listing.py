#!/usr/bin/env python
"""Listing submissions with 1,000,000 submissions in the workspace: p99 per page.

Seeds a fresh database (Postgres: a scratch schema; SQLite: a temp file) with the real schema
(``migrate()``), creates two workspaces through the storage API, bulk-loads 1,000,000
submissions into the first and 100,000 into the second (interleaved in time; COPY on Postgres,
``executemany`` on SQLite), runs ANALYZE, then times pages through ``RavePilot.submissions.list``,
the code path of ``GET /v1/submissions`` (cursor decoding and encoding included):

    first page          the default page: 50, newest first
    status=submitted    a filtered page
    cursor 10,000 deep  the page after following next_cursor 200 pages of 50 from the first page
    offset=10000        the same page by offset, for contrast (no target)

The baseline is ``storage.ping()`` (SELECT 1). Calls run one at a time, round-robin over the
baseline and the cases, so that machine noise falls on all of them alike. Target (the issue):
p99 <= 10 ms for each of the first three. Prints PASS/MISS and exits 0 either way; exits 1 only
when the measurement is invalid (a page came back wrong, Postgres is unreachable, ...).

    python benchmarks/listing.py                          # Postgres, then SQLite
    python benchmarks/listing.py --database postgres --explain
    python benchmarks/listing.py --iterations 500 --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import re
import secrets
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import BenchmarkAborted, log, machine_busy_seconds, process_cpu_seconds

from ravepilot_core.facade import RavePilot
from ravepilot_core.models import Page, Submission
from ravepilot_core.protocols import Storage
from ravepilot_core.sql.rows import submission_row
from ravepilot_core.submissions import decode_cursor
from ravepilot_core.testing.contract_data import make_submission, new_workspace
from ravepilot_core.testing.memory import MemoryMailer

TARGET_P99_MS = 10.0
PAGE_SIZE = 50  # the service's default limit
DEPTH = 10_000  # rows before the deep page
SPAN = timedelta(days=365)  # the submissions' creation times, spread evenly up to now
STATUS_MIX = {"invited": 70, "recording": 15, "submitted": 10, "withdrawn": 5}
CHUNK = 50_000  # rows per COPY / per SQLite transaction
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
Call = Callable[[], Awaitable[Any]]


# -- seed data -------------------------------------------------------------------------------------
class Seed:
    """Rows as ``submission_row(make_submission(...))`` makes them, and the pages to expect."""

    def __init__(self, main: tuple[str, str], other: tuple[str, str], rows: int, others: int):
        self.main, self.other, self.rows, self.others = main, other, rows, others
        self.newest: dict[str | None, str] = {}  # main workspace: newest id, overall and by status
        self.columns = list(submission_row(make_submission(*main)))

    def chunks(self) -> Iterator[list[tuple[Any, ...]]]:
        """Both workspaces, interleaved evenly in creation order, in lists of CHUNK rows."""
        rng = random.Random(1)
        total, start = self.rows + self.others, datetime.now(UTC) - SPAN
        statuses = rng.choices(list(STATUS_MIX), weights=list(STATUS_MIX.values()), k=total)
        counts = {self.main: 0, self.other: 0}
        chunk: list[tuple[Any, ...]] = []
        for i, status in enumerate(statuses):
            is_other = (i + 1) * self.others // total > i * self.others // total
            owner = self.other if is_other else self.main
            n = counts[owner] = counts[owner] + 1
            when = start + SPAN * (i / total)
            record = make_submission(
                *owner,
                email=f"customer{n:07d}@example.com",
                name=f"Customer {n}",
                status=status,  # type: ignore[arg-type]
                email_requested_at=when,
                when=when,
            )
            if not is_other:
                self.newest[None] = self.newest[status] = record.id
            chunk.append(tuple(submission_row(record).values()))
            if len(chunk) == CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    async def prefetched(self) -> AsyncIterator[list[tuple[Any, ...]]]:
        """The chunks, the next one built in a thread while the caller loads the current one."""
        chunks = self.chunks()
        following = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
        while (chunk := await following) is not None:
            following = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
            yield chunk


# -- the two databases -----------------------------------------------------------------------------
class PostgresTarget:
    """A scratch schema ``rp_bench_<hex>``; the storage's search_path is that schema alone."""

    name = "postgres"

    def __init__(self, url: str) -> None:
        self.url, self.schema = url, f"rp_bench_{secrets.token_hex(4)}"
        self.conn: Any = None
        self.version = "?"

    async def start(self) -> None:
        try:
            import asyncpg

            import ravepilot_postgres  # noqa: F401
        except ImportError as exc:
            raise BenchmarkAborted(f"{exc}: pip install -e plugins/postgres") from None
        try:
            self.conn = await asyncpg.connect(self.url, timeout=10)
        except (OSError, asyncpg.PostgresError) as exc:
            raise BenchmarkAborted(f"cannot connect to {self.url}: {exc}") from None
        self.version = await self.conn.fetchval("SHOW server_version")
        await self.conn.execute(f"CREATE SCHEMA {self.schema}; SET search_path TO {self.schema}")
        log(f"postgres {self.version}: scratch schema {self.schema}")

    async def open_storage(self) -> Storage:
        from ravepilot_postgres import open_postgres_storage

        sep = "&" if "?" in self.url else "?"
        query = f"search_path={self.schema}&application_name={self.schema}"
        return await open_postgres_storage(f"{self.url}{sep}{query}")

    async def server_pids(self) -> list[int]:
        """The storage's backends, whose CPU is accounted apart from other processes'."""
        found = await self.conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1", self.schema
        )
        return [row["pid"] for row in found]

    async def load(self, seed: Seed) -> None:
        async for chunk in seed.prefetched():
            await self.conn.copy_records_to_table(
                "rp_submissions", records=chunk, columns=seed.columns, schema_name=self.schema
            )
        await self.conn.execute("VACUUM (ANALYZE) rp_submissions")

    async def explain(self, sql: str, args: list[Any]) -> list[str]:
        counter = iter(range(1, 100))
        numbered = re.sub(r"\{\}", lambda _: f"${next(counter)}", sql)
        values = ", ".join(
            str(a) if isinstance(a, int) else "'" + a.replace("'", "''") + "'" for a in args
        )
        await self.conn.execute(f"PREPARE rp_bench_q AS {numbered}")
        out = [numbered]
        try:
            # asyncpg prepares each statement once per connection, and Postgres may switch a
            # prepared statement to its generic plan after five runs: show both plans.
            for mode in ("force_custom_plan", "force_generic_plan"):
                await self.conn.execute(f"SET plan_cache_mode = {mode}")
                plan = await self.conn.fetch(
                    f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE rp_bench_q({values})"
                )
                out += [f"-- {mode}", *(row[0] for row in plan)]
        finally:
            await self.conn.execute("DEALLOCATE rp_bench_q; RESET plan_cache_mode")
        return out

    async def stop(self, keep: bool) -> None:
        if self.conn is not None:
            if keep:
                log(f"kept schema {self.schema}")
            else:
                await self.conn.execute(f"DROP SCHEMA {self.schema} CASCADE")
            await self.conn.close()


class SQLiteTarget:
    """A database file in a temporary dir, loaded over a plain sqlite3 connection."""

    name = "sqlite"

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ravepilot-listing-"))
        self.path = self.dir / "ravepilot.db"
        self.version = sqlite3.sqlite_version

    async def start(self) -> None:
        log(f"sqlite {self.version}: {self.path}")

    async def open_storage(self) -> Storage:
        from ravepilot_core.sql.sqlite import open_sqlite_storage

        return open_sqlite_storage(f"sqlite:///{self.path}")

    async def server_pids(self) -> list[int]:
        return []

    async def load(self, seed: Seed) -> None:
        columns = ", ".join(seed.columns)
        insert = (
            f"INSERT INTO rp_submissions ({columns}) VALUES ({', '.join('?' * len(seed.columns))})"
        )
        with contextlib.closing(sqlite3.connect(self.path, isolation_level=None)) as conn:
            conn.execute("PRAGMA synchronous = OFF")  # this loading connection only
            conn.execute("PRAGMA cache_size = -262144")
            async for chunk in seed.prefetched():
                conn.execute("BEGIN")
                conn.executemany(insert, chunk)
                conn.execute("COMMIT")
            conn.execute("ANALYZE")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def explain(self, sql: str, args: list[Any]) -> list[str]:
        qmark = sql.replace("{}", "?")
        with contextlib.closing(sqlite3.connect(self.path)) as conn:
            plan = conn.execute(f"EXPLAIN QUERY PLAN {qmark}", args).fetchall()
        return [qmark, *(f"  {row[3]}" for row in plan)]

    async def stop(self, keep: bool) -> None:
        if keep:
            log(f"kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


# -- measuring -------------------------------------------------------------------------------------
def summary(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)

    def rank(q: float) -> float:
        return samples[max(0, math.ceil(q * len(samples)) - 1)]

    mean = sum(samples) / len(samples)
    return {"p50_ms": rank(0.5), "p99_ms": rank(0.99), "max_ms": samples[-1], "mean_ms": mean}


async def round_robin(calls: dict[str, Call], iterations: int, warmup: int) -> dict[str, Any]:
    """Time each call ``iterations`` times, one at a time, in turns: wall and own CPU in ms."""
    wall: dict[str, list[float]] = {label: [] for label in calls}
    cpu: dict[str, list[float]] = {label: [] for label in calls}
    for turn in range(warmup + iterations):
        for label, call in calls.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            await call()
            if turn >= warmup:
                wall[label].append((time.perf_counter() - started) * 1000)
                cpu[label].append((time.process_time() - started_cpu) * 1000)
    return {
        label: {**summary(wall[label]), "cpu_p99_ms": summary(cpu[label])["p99_ms"]}
        for label in calls
    }


def check(label: str, page: Page[Submission], collector_id: str, **expect: Any) -> list[str]:
    """Abort unless the page is full, newest first, of the workspace (and status, and bound)."""
    ids = [s.id for s in page.data]
    problems = []
    if len(ids) != PAGE_SIZE or not page.has_more or page.next_cursor is None:
        problems.append(f"{len(ids)} rows, has_more={page.has_more}")
    if ids != sorted(set(ids), reverse=True):
        problems.append("not strictly newest first")
    if any(s.collector_id != collector_id for s in page.data):
        problems.append("rows of another workspace")
    if expect.get("status") and any(s.status != expect["status"] for s in page.data):
        problems.append(f"rows not {expect['status']}")
    if expect.get("first") and ids[:1] != [expect["first"]]:
        problems.append(f"first id {ids[:1]} is not the newest, {expect['first']}")
    if expect.get("below") and not ids[0] < expect["below"]:
        problems.append(f"first id {ids[0]} is not below the cursor's {expect['below']}")
    if "same_as" in expect and ids != expect["same_as"]:
        problems.append("not the page at offset 10000")
    if problems:
        raise BenchmarkAborted(f"{label}: wrong page: {'; '.join(problems)}")
    return ids


async def listing_sql(storage: Any, call: Call) -> tuple[str, list[Any]]:
    """The statement on rp_submissions that ``call`` runs, as the storage sends it."""
    seen: list[tuple[str, list[Any]]] = []
    original = storage._run_sql

    async def recording(sql: str, args: Any) -> Any:
        seen.append((sql, list(args)))
        return await original(sql, args)

    storage._run_sql = recording
    try:
        await call()
    finally:
        storage._run_sql = original
    return next(s for s in seen if "FROM rp_submissions" in s[0])


async def measure(target: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Seed the database, check the pages, time them and the baseline round-robin."""
    started = time.perf_counter()
    storage = await target.open_storage()
    try:
        await storage.migrate()
        ws, main_col = await new_workspace(storage, "bench-listing")
        other, other_col = await new_workspace(storage, "bench-other")
    finally:
        await storage.close()
    seed = Seed((ws.id, main_col.id), (other.id, other_col.id), args.rows, args.other_rows)
    log(f"{target.name}: loading {args.rows:,} + {args.other_rows:,} submissions")
    await target.load(seed)
    seed_seconds = time.perf_counter() - started
    log(f"{target.name}: seeded in {seed_seconds:.1f} s; checking pages, following the cursor")

    rp = RavePilot(storage=await target.open_storage(), mailer=MemoryMailer(), secret_key="b" * 48)
    try:
        pages, collector = rp.submissions, main_col.id
        page = await pages.list(ws.id)
        check("first page", page, collector, first=seed.newest[None])
        for number in range(2, DEPTH // PAGE_SIZE + 1):  # follow the cursor to page 200
            below = page.data[-1].id
            page = await pages.list(ws.id, cursor=page.next_cursor)
            check(f"cursor page {number}", page, collector, below=below)
        deep = page.next_cursor  # continues after row 10,000
        by_offset = check("offset", await pages.list(ws.id, offset=DEPTH), collector)
        deep_page = await pages.list(ws.id, cursor=deep)
        below = decode_cursor(str(deep), "sub")
        check("cursor 10,000 deep", deep_page, collector, below=below, same_as=by_offset)
        filtered = await pages.list(ws.id, status="submitted")
        newest = seed.newest["submitted"]
        check("status=submitted", filtered, collector, status="submitted", first=newest)

        calls: dict[str, Call] = {
            "ping (SELECT 1)": rp.storage.ping,
            "first page": lambda: pages.list(ws.id),
            "status=submitted": lambda: pages.list(ws.id, status="submitted"),
            "cursor 10,000 deep": lambda: pages.list(ws.id, cursor=deep),
            "offset=10000 (contrast)": lambda: pages.list(ws.id, offset=DEPTH),
        }
        log(f"{target.name}: {len(calls)} x ({args.warmup} warm-up + {args.iterations}) calls")
        pids = await target.server_pids()
        before = (time.perf_counter(), time.process_time(), machine_busy_seconds())
        server_before = sum(process_cpu_seconds(pid) or 0 for pid in pids)
        figures = await round_robin(calls, args.iterations, args.warmup)
        wall = time.perf_counter() - before[0]
        own = time.process_time() - before[1]
        server = sum(process_cpu_seconds(pid) or 0 for pid in pids) - server_before
        busy_after = machine_busy_seconds()
        others = (
            None
            if busy_after is None or before[2] is None
            else busy_after - before[2] - own - server
        )
        explain = {}
        if args.explain:
            for label, call in list(calls.items())[1:]:
                explain[label] = await target.explain(*await listing_sql(rp.storage, call))
    finally:
        await rp.close()
    ping_p99 = figures["ping (SELECT 1)"]["p99_ms"]
    cases = []
    for index, (label, result) in enumerate(figures.items()):
        result["vs_ping_p99"] = result["p99_ms"] / ping_p99
        if 1 <= index <= 3:
            result["verdict"] = "PASS" if result["p99_ms"] <= TARGET_P99_MS else "MISS"
        cases.append({"case": label, **result})
    return {
        "database": target.name,
        "version": target.version,
        "rows": args.rows,
        "other_rows": args.other_rows,
        "seed_seconds": seed_seconds,
        "cpu_percent": {
            "this process": 100 * own / wall,
            "its postgres backends": 100 * server / wall if pids else None,
            "other processes": None if others is None else 100 * max(others, 0) / wall,
        },
        "cases": cases,
        "explain": explain,
    }


# -- report ----------------------------------------------------------------------------------------
def render_table(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        "RavePilot listing benchmark: RavePilot.submissions.list, one call at a time, round-robin",
        f"  python {s['python']} on {s['loop']}, {s['cpus']} CPUs, 1-minute load average before "
        f"{s['load_average_before']}; {s['warmup']} warm-up + {s['iterations']} timed calls each",
        f"  target: p99 <= {TARGET_P99_MS:g} ms for each of the first three cases",
    ]

    def ms(value: float) -> str:
        return f"{value:.3f}" if value < 0.1 else f"{value:.2f}"

    for db in report["databases"]:
        cpu = ", ".join(f"{k} {v:.0f}%" for k, v in db["cpu_percent"].items() if v is not None)
        lines += [
            "",
            f"{db['database']} {db['version']}: {db['rows']:,} submissions in the workspace "
            f"(+{db['other_rows']:,} in another), seeded in {db['seed_seconds']:.1f} s",
            f"  CPU while measuring, % of one core: {cpu}",
        ]
        heads = ("p50 ms", "p99 ms", "max ms", "mean ms", "CPU p99", "vs ping", "target")
        lines.append(f"  {'case':<24}" + "".join(f"{head:>9}" for head in heads))
        for c in db["cases"]:
            cells = [ms(c[k]) for k in ("p50_ms", "p99_ms", "max_ms", "mean_ms", "cpu_p99_ms")]
            cells += [f"{c['vs_ping_p99']:.1f}x", c.get("verdict", "-")]
            lines.append(f"  {c['case']:<24}" + "".join(f"{cell:>9}" for cell in cells))
        for label, plan in db["explain"].items():
            lines += ["", f"  EXPLAIN, {label}:", *(f"    {line}" for line in plan)]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--postgres-url", default=DEFAULT_URL, help="default: %(default)s")
    parser.add_argument("--rows", type=int, default=1_000_000, help="in the measured workspace")
    parser.add_argument("--other-rows", type=int, default=100_000, help="in a second workspace")
    parser.add_argument("--iterations", type=int, default=2000, help="timed calls of each case")
    parser.add_argument("--warmup", type=int, default=200, help="untimed calls of each case first")
    parser.add_argument("--explain", action="store_true", help="print each case's query plan")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the schema / the SQLite file")
    args = parser.parse_args(argv)
    if args.rows < DEPTH + 2 * PAGE_SIZE or args.other_rows < 1 or args.iterations < 100:
        parser.error(
            f"need --rows >= {DEPTH + 2 * PAGE_SIZE}, --other-rows >= 1, --iterations >= 100"
        )
    return args


async def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    names = ("postgres", "sqlite") if args.database == "both" else (args.database,)
    databases = []
    for name in names:
        target = PostgresTarget(args.postgres_url) if name == "postgres" else SQLiteTarget()
        try:
            await target.start()
            databases.append(await measure(target, args))
        finally:
            await target.stop(args.keep)  # drop the schema / remove the file, unless --keep
    return {
        "settings": {
            "python": platform.python_version(),
            "loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
            "cpus": os.cpu_count(),
            "load_average_before": args.load_before,
            "iterations": args.iterations,
            "warmup": args.warmup,
            "target_p99_ms": TARGET_P99_MS,
        },
        "databases": databases,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.load_before = round(os.getloadavg()[0], 2)

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        import uvloop  # what `ravepilot serve` (uvicorn) runs on when it is installed

        runner: Callable[..., Any] = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        report = runner(benchmark(args))
    except BenchmarkAborted as exc:
        log(f"benchmark aborted: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    print(json.dumps(report, indent=2) if args.json else render_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
