#!/usr/bin/env python
"""HTTP API throughput and latency of the reference server, as ratios against a no-op baseline.

Scenarios, run in this order against ONE server process in ONE run:

    noop         GET  /bench/noop        the baseline: same app instance, no auth, no storage
    invitations  POST /v1/invitations    a new customer email per request; send_email defaults
                                         to true, so an email job is queued and the in-process
                                         worker sends it (outbox mailer) while the load runs
    submissions  GET  /v1/submissions    the default page (50, newest first), after the
                                         invitations above exist
    noop_after   GET  /bench/noop        the baseline again: the ratios divide by the mean of
                                         the two no-op windows, which cancels a drift in the
                                         machine's speed during the run (as dispatch.py does)

The server is ``benchmarks/noop_app.py`` (``create_app(settings)`` plus the no-op route) in a
subprocess, served like ``ravepilot serve``: uvicorn, one process, its defaults (httptools and
uvloop when installed), worker on, SQLite and the outbox mailer in a fresh temporary data dir that
is initialised like the CLI does (``default`` workspace plus an all-scope key). With --database
postgres the storage is a fresh schema on a PostgreSQL server instead (see database.py), dropped
at exit. The load client is aiohttp in this process: one session, keep-alive, ``--concurrency``
connections.

Target (design: benchmarks report ratios and never gate): invitations >= 0.3x no-op req/s. The
exit code is 0 whether the target is met or missed; it is non-zero only when the measurement
itself is invalid (server did not start, more than 1% errors, ...).

    python benchmarks/api.py --duration 10
    python benchmarks/api.py --database postgres --duration 5
    python benchmarks/api.py --requests 5000 --json
    python benchmarks/api.py --profile 2000        # cProfile POST /v1/invitations in-process
    python benchmarks/api.py --profile 2000 --profiler pyinstrument   # sampling; needs pyinstrument
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    BenchmarkAborted,
    clean_environment,
    free_port,
    interrupt,
    log,
    log_tail,
    process_cpu_seconds,
)
from database import (
    DEFAULT_POSTGRES_URL,
    BenchDatabase,
    add_database_arguments,
    postgres_cpu_seconds,
    postgres_cpu_since,
)

HERE = Path(__file__).resolve().parent
TARGET_SCENARIO = "invitations"
TARGET_RATIO = 0.3
MAX_ERROR_RATE = 0.01
ERROR_SAMPLES = 5


# -- the data dir and the server ------------------------------------------------------------------


def initialise_data_dir(data_dir: Path, database_url: str | None = None) -> str:
    """Create the schema, the ``default`` workspace and an all-scope key, as ``ravepilot serve``."""
    import anyio

    from ravepilot_core import RavePilot, Settings
    from ravepilot_server.cli import initialise

    settings = Settings(data_dir=data_dir, database_url=database_url)

    async def run() -> str | None:
        async with await RavePilot.from_settings(settings) as ravepilot:
            return await initialise(ravepilot)

    key = anyio.run(run)
    if key is None:
        raise BenchmarkAborted(f"{data_dir} was already initialised; use an empty directory")
    return key


class Server:
    """``benchmarks/noop_app.py`` in a subprocess; stopped (SIGINT, then SIGKILL) on exit."""

    def __init__(
        self,
        data_dir: Path,
        *,
        access_log: bool,
        worker: bool = True,
        environment: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "server.log"
        self._log_file = open(self.log_path, "wb")
        command = [
            sys.executable,
            str(HERE / "noop_app.py"),
            "--data-dir",
            str(data_dir),
            "--port",
            str(self.port),
        ]
        if not worker:
            command.append("--no-worker")
        if not access_log:
            command.append("--no-access-log")
        self.process = subprocess.Popen(
            command,
            env=clean_environment(**(environment or {})),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Its own process group: Ctrl-C reaches only us, and we stop it in order.
            start_new_session=True,
        )

    async def wait_ready(self, session: Any, timeout: float = 60.0) -> None:
        import aiohttp

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchmarkAborted(
                    f"the server exited with {self.process.returncode}:\n{log_tail(self.log_path)}"
                )
            try:
                async with session.get(f"{self.base_url}/bench/noop") as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, OSError):
                pass
            await asyncio.sleep(0.1)
        raise BenchmarkAborted(
            f"the server did not answer within {timeout:.0f} s:\n{log_tail(self.log_path)}"
        )

    def stop(self) -> None:
        interrupt(self.process)
        self._log_file.close()


def server_versions() -> dict[str, str]:
    """What the server process will use (it runs with this interpreter)."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str] = {"python": platform.python_version()}
    for name in ("uvicorn", "litestar", "httptools", "uvloop", "aiohttp", "piccolo", "ravepilot"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "-"
    found["http"] = "httptools" if found["httptools"] != "-" else "h11"
    found["loop"] = "uvloop" if found["uvloop"] != "-" else "asyncio"
    return found


# -- the load client ------------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    label: str
    method: str
    path: str
    body: Callable[[int], bytes | None]  # request number -> body
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Result:
    scenario: str
    label: str
    requests: int
    errors: int
    seconds: float
    latencies: list[float] = field(repr=False)
    statuses: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    server_cpu: float | None = None  # % of one core over the measured window
    client_cpu: float | None = None
    postgres_cpu: float | None = None  # every process named postgres (--database postgres)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        """Nearest-rank percentile of the per-request latencies, in milliseconds."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
        return ordered[rank - 1] * 1000


async def run_phase(
    session: Any,
    base_url: str,
    scenario: Scenario,
    *,
    concurrency: int,
    duration: float | None,
    count: int | None,
    first_number: int,
) -> Result:
    """Keep ``concurrency`` requests in flight until ``duration`` elapses or ``count`` are sent."""
    import aiohttp

    url = base_url + scenario.path
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    samples: list[str] = []
    errors = 0
    next_number = first_number
    sent = 0
    perf = time.perf_counter
    start = perf()
    deadline = start + duration if duration is not None else None

    async def one_connection() -> None:
        nonlocal errors, next_number, sent
        while True:
            if count is not None:
                if sent >= count:
                    return
            elif perf() >= deadline:  # type: ignore[operator]
                return
            sent += 1
            number = next_number
            next_number += 1
            data = scenario.body(number)
            began = perf()
            try:
                async with session.request(
                    scenario.method, url, data=data, headers=scenario.headers
                ) as response:
                    payload = await response.read()
                    status = response.status
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                latencies.append(perf() - began)
                errors += 1
                statuses[type(exc).__name__] += 1
                if len(samples) < ERROR_SAMPLES:
                    samples.append(f"{type(exc).__name__}: {exc}")
                continue
            latencies.append(perf() - began)
            statuses[str(status)] += 1
            if not 200 <= status < 300:
                errors += 1
                if len(samples) < ERROR_SAMPLES:
                    samples.append(f"{status} {payload[:300].decode(errors='replace')}")

    await asyncio.gather(*(one_connection() for _ in range(concurrency)))
    seconds = perf() - start
    return Result(
        scenario=scenario.name,
        label=scenario.label,
        requests=len(latencies),
        errors=errors,
        seconds=seconds,
        latencies=latencies,
        statuses=statuses,
        error_samples=samples,
    )


PROBE_FILES = 200
SLOW_FILE_CREATION_US = 200  # above this, the disk rather than RavePilot paces the email worker


def file_creation_us(data_dir: Path) -> float:
    """CPU µs to write one small file as the outbox mailer does (the median of 5 tries of 40).

    The mailer's own file writing (create under a temporary name, write, rename) of a 3 KB
    message, :data:`PROBE_FILES` times in a directory beside the outbox. Why: on this project's
    VMs these system calls have cost from 20 to over 1,000 µs, depending on where the file
    system placed the directory, and the email worker writes one such file per invitation.
    """
    from ravepilot_core.outbox import OutboxMailer

    probe = data_dir / "disk-probe"
    mailer = OutboxMailer(probe)
    data = b"x" * 3000
    tries = []
    try:
        for attempt in range(5):
            before = time.thread_time()  # os.times() counts in 10 ms ticks: too coarse
            for n in range(PROBE_FILES // 5):
                mailer._write(f"{attempt}-{n}", data)  # what send() does, minus the MIME
            tries.append((time.thread_time() - before) / (PROBE_FILES // 5) * 1e6)
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    return statistics.median(tries)


def count_emails(outbox: Path) -> int:
    """Emails the worker has written so far (outbox mailer: one ``.eml`` per message)."""
    try:
        with os.scandir(outbox) as entries:
            return sum(1 for e in entries if e.name.endswith(".eml") and not e.name.startswith("."))
    except FileNotFoundError:
        return 0


async def wait_for_emails(
    outbox: Path, expected: int, timeout: float, interval: float = 0.05
) -> tuple[int, float]:
    """Wait until ``expected`` emails are written (the job backlog is drained)."""
    start = time.perf_counter()
    while True:
        sent = count_emails(outbox)
        waited = time.perf_counter() - start
        if sent >= expected or waited >= timeout:
            return sent, waited
        await asyncio.sleep(interval)


def check(result: Result) -> None:
    """Print the errors; abort when more than 1% of the requests failed."""
    if result.errors:
        log(
            f"  {result.errors} of {result.requests} requests failed; "
            f"statuses {dict(result.statuses)}"
        )
        for sample in result.error_samples:
            log(f"    {sample}")
    if result.requests == 0:
        raise BenchmarkAborted(f"{result.label}: no request completed")
    if result.errors / result.requests > MAX_ERROR_RATE:
        raise BenchmarkAborted(
            f"{result.label}: {result.errors / result.requests:.1%} of requests failed "
            f"(more than {MAX_ERROR_RATE:.0%}): the figures would be meaningless"
        )


async def benchmark(
    args: argparse.Namespace, data_dir: Path, key: str, server: Server, db: BenchDatabase
) -> dict[str, Any]:
    try:
        return await _benchmark(args, data_dir, key, server, db)
    finally:
        await db.close()


async def _benchmark(
    args: argparse.Namespace, data_dir: Path, key: str, server: Server, db: BenchDatabase
) -> dict[str, Any]:
    import aiohttp

    outbox = data_dir / "outbox"
    auth = {"Authorization": f"Bearer {key}"}
    run_id = os.urandom(3).hex()
    invitations = Scenario(
        name="invitations",
        label="POST /v1/invitations",
        method="POST",
        path="/v1/invitations",
        body=lambda n: b'{"customer_email":"bench-%s-%d@example.com"}' % (run_id.encode(), n),
        headers={**auth, "Content-Type": "application/json"},
    )
    scenarios = [
        Scenario("noop", "GET /bench/noop (baseline)", "GET", "/bench/noop", lambda n: None),
        invitations,
        Scenario(
            "submissions", "GET /v1/submissions", "GET", "/v1/submissions", lambda n: None, auth
        ),
        # Again at the end, so that a machine whose speed drifts during the run (this VM's
        # does, by up to a fifth) moves the baseline as much as the scenarios between.
        Scenario(
            "noop_after", "GET /bench/noop (baseline again)", "GET", "/bench/noop", lambda n: None
        ),
    ]

    await db.other_clients()  # opens the benchmark's own connection before any window
    connector = aiohttp.TCPConnector(limit=args.concurrency, limit_per_host=args.concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    results: list[Result] = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await server.wait_ready(session)
        number = 0  # request numbers run on across phases, so every invitation email is new
        for scenario in scenarios:
            if scenario.name == "submissions":
                # Sanity check once (not per request, to keep the client cheap): a full page.
                async with session.get(server.base_url + scenario.path, headers=auth) as response:
                    page = await response.json()
                if response.status != 200 or len(page.get("data", [])) != 50:
                    raise BenchmarkAborted(
                        f"GET /v1/submissions returned {response.status} with "
                        f"{len(page.get('data', []))} items; expected a full page of 50"
                    )
            log(f"{scenario.label}: warm-up {args.warmup:g} s ...")
            warm = await run_phase(
                session,
                server.base_url,
                scenario,
                concurrency=args.concurrency,
                duration=args.warmup,
                count=None,
                first_number=number,
            )
            number += warm.requests
            check(warm)
            emails_before = count_emails(outbox)
            postgres_before = postgres_cpu_seconds() if db.is_postgres else None
            server_cpu_before = process_cpu_seconds(server.process.pid)
            client_cpu_before = time.process_time()
            what = f"{args.requests} requests" if args.requests else f"{args.duration:g} s"
            log(f"{scenario.label}: measuring {what} with {args.concurrency} connections ...")
            result = await run_phase(
                session,
                server.base_url,
                scenario,
                concurrency=args.concurrency,
                duration=None if args.requests else args.duration,
                count=args.requests,
                first_number=number,
            )
            number += result.requests
            server_cpu_after = process_cpu_seconds(server.process.pid)
            result.client_cpu = 100 * (time.process_time() - client_cpu_before) / result.seconds
            if server_cpu_before is not None and server_cpu_after is not None:
                result.server_cpu = 100 * (server_cpu_after - server_cpu_before) / result.seconds
            if postgres_before is not None:
                used = postgres_cpu_since(postgres_before)
                postgres = sum(used[pid] for pid in used.keys() - await db.other_clients())
                result.postgres_cpu = 100 * postgres / result.seconds
            check(result)
            if scenario is invitations and not args.no_worker:
                created = warm.statuses["201"] + result.statuses["201"]
                emails_during = count_emails(outbox) - emails_before
                log(f"{scenario.label}: waiting for the worker to send all {created} emails ...")
                sent, waited = await wait_for_emails(outbox, created, args.drain_timeout)
                result.extra = {
                    "created": result.statuses["201"],
                    "emails_sent_during_window": emails_during,
                    "emails_per_second_during_window": emails_during / result.seconds,
                    "backlog_after_window": created - (emails_before + emails_during),
                    "drain_seconds": waited,
                    "emails_sent": sent,
                    "emails_expected": created,
                    # Invitations whose emails were also sent, per second of the whole phase
                    # (warm-up + window + drain): what the process sustains with the worker
                    # keeping up, instead of building a backlog.
                    "sustained_invitations_per_second": created
                    / (warm.seconds + result.seconds + waited),
                }
                if result.statuses["201"] != result.requests:
                    log(f"  warning: not every invitation was new: {dict(result.statuses)}")
                if sent < created:
                    log(
                        f"  warning: only {sent} of {created} emails were sent after "
                        f"{waited:.0f} s; see {server.log_path}"
                    )
            if result.seconds < 1.0:
                log(
                    f"  warning: the {scenario.label} window lasted {result.seconds:.2f} s; "
                    "under a second the figures (CPU above all) are noise: raise --requests"
                )
            results.append(result)
            log(
                f"{scenario.label}: {result.requests} requests, {result.rps:,.0f} req/s, "
                f"p50 {result.percentile_ms(50):.1f} ms, p99 {result.percentile_ms(99):.1f} ms"
            )

    # The baseline is the mean of the no-op windows before and after the scenarios.
    first_noop, last_noop = results[0].rps, results[-1].rps
    baseline = (first_noop + last_noop) / 2
    load_before = args.load_before
    target = next(r for r in results if r.scenario == TARGET_SCENARIO)
    target_ratio = target.rps / baseline if baseline else 0.0
    versions = server_versions()
    database: dict[str, Any] = {"database": db.kind}
    if db.is_postgres:
        database["schema"] = db.schema
        versions["postgres"] = await db.server_version()
    return {
        "settings": {
            **database,
            "concurrency": args.concurrency,
            "warmup_seconds": args.warmup,
            "duration_seconds": None if args.requests else args.duration,
            "requests_per_scenario": args.requests,
            "access_log": not args.no_access_log,
            "worker": not args.no_worker,
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "file_creation_us": args.file_creation_us,
            "server": versions,
            "client": f"aiohttp, {'uvloop' if _uvloop() else 'asyncio'} loop",
        },
        "scenarios": [
            {
                "scenario": r.scenario,
                "label": r.label,
                "requests": r.requests,
                "errors": r.errors,
                "seconds": round(r.seconds, 3),
                "rps": round(r.rps, 1),
                "p50_ms": round(r.percentile_ms(50), 3),
                "p99_ms": round(r.percentile_ms(99), 3),
                "ratio_to_noop": round(r.rps / baseline, 3) if baseline else None,
                "server_cpu_percent": None if r.server_cpu is None else round(r.server_cpu),
                "client_cpu_percent": round(r.client_cpu) if r.client_cpu is not None else None,
                **(
                    {"postgres_cpu_percent": round(r.postgres_cpu)}
                    if r.postgres_cpu is not None
                    else {}
                ),
                "statuses": dict(r.statuses),
                **(
                    {
                        "email": {
                            k: round(v, 2) if isinstance(v, float) else v
                            for k, v in r.extra.items()
                        }
                    }
                    if r.extra
                    else {}
                ),
            }
            for r in results
        ],
        "baseline": {
            "rps": round(baseline, 1),
            "noop_before_rps": round(first_noop, 1),
            "noop_after_rps": round(last_noop, 1),
            "drift": round(last_noop / first_noop - 1, 3) if first_noop else None,
        },
        "target": {
            "scenario": TARGET_SCENARIO,
            "min_ratio_to_noop": TARGET_RATIO,
            "ratio": round(target_ratio, 3),
            "ratio_to_first_noop": round(target.rps / first_noop, 3) if first_noop else None,
            "met": target_ratio >= TARGET_RATIO,
        },
    }


def render_table(report: dict[str, Any]) -> str:
    s = report["settings"]
    server = s["server"]
    measure = (
        f"{s['requests_per_scenario']} requests"
        if s["requests_per_scenario"]
        else f"{s['duration_seconds']:g} s"
    )
    postgres = s.get("database") == "postgres"
    if postgres:
        database = f"PostgreSQL {server['postgres']} (schema {s['schema']}) + outbox mailer"
    else:
        database = "SQLite + outbox mailer"
    lines = [
        "RavePilot API benchmark",
        f"  server: uvicorn {server['uvicorn']} ({server['http']}, {server['loop']}), 1 process, "
        f"litestar {server['litestar']}, python {server['python']}, "
        f"{'worker in-process' if s['worker'] else 'NO worker (emails stay queued)'}, "
        f"{database} in a temp dir, access log {'on' if s['access_log'] else 'off'}",
        f"  client: {s['client']}, {s['concurrency']} keep-alive connections, "
        f"{s['warmup_seconds']:g} s warm-up then {measure} per scenario; {s['cpus']} CPUs shared "
        "by client and server",
    ]
    load = s["load_average_before"]
    if load is not None:
        busy = load >= 0.5
        lines.append(
            f"  1-minute load average before the run: {load:.2f}"
            + (" (the machine was not idle: expect noisier figures)" if busy else "")
        )
    creation = s["file_creation_us"]
    lines.append(
        f"  disk: writing a small file as the outbox mailer does took {creation:,} µs of CPU "
        "in the data dir"
        + (
            " (slow: the email worker's share of the invitations window grows with it)"
            if creation > SLOW_FILE_CREATION_US
            else ""
        )
    )
    lines.append("")
    header = (
        "scenario",
        "requests",
        "req/s",
        "p50 ms",
        "p99 ms",
        "vs no-op",
        "server CPU",
        "client CPU",
        *(("pg CPU",) if postgres else ()),
    )

    def percent(value: int | None) -> str:
        return "-" if value is None else f"{value}%"

    rows = [
        (
            r["label"],
            f"{r['requests']:,}",
            f"{r['rps']:,.0f}",
            f"{r['p50_ms']:.1f}",
            f"{r['p99_ms']:.1f}",
            f"{r['ratio_to_noop']:.2f}x",
            percent(r["server_cpu_percent"]),
            percent(r["client_cpu_percent"]),
            *((percent(r.get("postgres_cpu_percent")),) if postgres else ()),
        )
        for r in report["scenarios"]
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
    for r in report["scenarios"]:
        if "email" in r:
            e = r["email"]
            lines.append("")
            lines.append(
                f"emails: {e['emails_sent_during_window']:,} sent by the worker during the "
                f"invitations window ({e['emails_per_second_during_window']:,.0f}/s), backlog "
                f"{e['backlog_after_window']:,} at its end, drained in {e['drain_seconds']:.1f} s "
                f"({e['emails_sent']:,}/{e['emails_expected']:,} sent)"
            )
            sustained = e["sustained_invitations_per_second"]
            lines.append(
                f"        invitations with their emails sent, over warm-up + window + drain: "
                f"{sustained:,.0f}/s = {sustained / report['baseline']['rps']:.2f}x no-op"
            )
    b = report["baseline"]
    lines += [
        "",
        f"baseline: the mean of the two no-op windows, {b['noop_before_rps']:,.0f} and "
        f"{b['noop_after_rps']:,.0f} req/s = {b['rps']:,.0f} req/s "
        f"(the machine's speed drifted {b['drift']:+.0%} between them)",
    ]
    t = report["target"]
    verdict = "PASS" if t["met"] else "MISS"
    lines += [
        f"target: POST /v1/invitations >= {t['min_ratio_to_noop']:.1f}x no-op req/s: "
        f"{verdict} ({t['ratio']:.2f}x; {t['ratio_to_first_noop']:.2f}x of the first no-op alone)",
        "(benchmarks do not gate: the exit code is 0 either way; CPU columns are % of one core"
        " over the measured window, server = all threads of the uvicorn process"
        + (", pg = every process named postgres)" if postgres else ")"),
    ]
    return "\n".join(lines)


def _uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def run_async(coro: Awaitable[Any]) -> Any:
    """Run with uvloop when installed: the client must cost as little CPU as possible.

    SIGTERM cancels the run the way Ctrl-C does (a handler raising inside the loop's callbacks
    would only break the request it lands in); either surfaces here as KeyboardInterrupt.
    """

    async def cancellable() -> Any:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await coro
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    factory = None
    if _uvloop():
        import uvloop

        factory = uvloop.new_event_loop
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(cancellable())
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- in-process profile of POST /v1/invitations ----------------------------------------------------


def profile_invitations(
    requests: int,
    concurrency: int,
    top: int,
    profiler_name: str,
    database: str = "sqlite",
    postgres_url: str | None = None,
) -> None:
    """Profile ``requests`` invitations through httpx's ASGI transport (worker on, same loop).

    ``cprofile`` (stdlib) counts calls exactly but inflates code made of many small Python calls
    (Piccolo's query building) relative to C calls (sqlite3); ``pyinstrument`` samples the stack
    every millisecond and is closer to where wall time goes.
    """
    import httpx

    sys.path.insert(0, str(HERE))
    from noop_app import build_app

    from ravepilot_core import Settings

    if profiler_name == "pyinstrument":
        import importlib

        try:  # optional: pip install pyinstrument
            profiler_class = importlib.import_module("pyinstrument").Profiler
        except ImportError:
            raise BenchmarkAborted(
                "--profiler pyinstrument needs: pip install pyinstrument"
            ) from None
        sampler = profiler_class(interval=0.001, async_mode="disabled")
        enable, disable = sampler.start, sampler.stop
    elif profiler_name == "none":  # calibration: the same run without a profiler
        enable = disable = lambda: None
    else:
        import cProfile

        tracer = cProfile.Profile()
        enable, disable = tracer.enable, tracer.disable

    data_dir = Path(tempfile.mkdtemp(prefix="ravepilot-profile-"))
    db = BenchDatabase(database, data_dir, postgres_url or DEFAULT_POSTGRES_URL)
    try:
        db.create()
        api_key = initialise_data_dir(data_dir, db.url)
        app = build_app(Settings(data_dir=data_dir, database_url=db.url))
        headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        outbox = data_dir / "outbox"

        async def run() -> float:
            async with app.lifespan():
                transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://bench"
                ) as client:

                    async def one(n: int) -> None:
                        body = b'{"customer_email":"profile-%d@example.com"}' % n
                        response = await client.post(
                            "/v1/invitations", content=body, headers=headers
                        )
                        if response.status_code != 201:
                            raise BenchmarkAborted(f"{response.status_code} {response.text[:300]}")

                    for n in range(50):  # warm-up, not profiled
                        await one(-n - 1)
                    await wait_for_emails(outbox, 50, 30)
                    queue = iter(range(requests))

                    async def lane() -> None:
                        for n in queue:
                            await one(n)

                    enable()
                    start = time.perf_counter()
                    await asyncio.gather(*(lane() for _ in range(concurrency)))
                    # The worker sends the emails these requests queued: that is their cost too.
                    await wait_for_emails(outbox, requests + 50, 120, interval=0.5)
                    elapsed = time.perf_counter() - start
                    disable()
                    return elapsed

        # The app logs each email at INFO (Litestar's logging config, as in the server): keep that
        # cost, but send it to a file instead of over this report.
        sys.stderr.flush()
        saved_stderr = os.dup(2)
        with open(data_dir / "app.log", "wb") as app_log:
            os.dup2(app_log.fileno(), 2)
            try:
                elapsed = run_async(run())
            finally:
                sys.stderr.flush()
                os.dup2(saved_stderr, 2)
                os.close(saved_stderr)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
        with contextlib.suppress(BenchmarkAborted):
            db.drop()

    if profiler_name == "none":
        print(
            f"{requests} POST /v1/invitations (+ their email jobs), {concurrency} in flight, "
            f"in-process via httpx.ASGITransport, no profiler: {elapsed:.2f} s wall, "
            f"{requests / elapsed:,.0f} req/s"
        )
        return

    # key (file, line, function) -> [calls or None, self seconds, cumulative seconds]
    rows: dict[tuple[str, int, str], list[Any]] = {}
    if profiler_name == "pyinstrument":
        root = sampler.last_session.root_frame(trim_stem=False) if sampler.last_session else None

        def walk(frame: Any, on_path: set[tuple[str, int, str]]) -> None:
            if frame.is_synthetic:
                return
            key = (frame.file_path or "~", frame.line_no or 0, frame.function)
            row = rows.setdefault(key, [None, 0.0, 0.0])
            row[1] += frame.total_self_time
            if key not in on_path:  # recursion: count a frame's time once per stack
                row[2] += frame.time
            for child in frame.children:
                walk(child, on_path | {key})

        if root is not None:
            walk(root, set())
        unit = "sampled wall time on the event-loop thread"
    else:
        import pstats

        raw = pstats.Stats(tracer).stats  # type: ignore[attr-defined]
        for entry, (_, ncalls, tottime, cumtime, _) in raw.items():
            rows[entry] = [ncalls, tottime, cumtime]
        unit = "profiled CPU on the event-loop thread"
    total = sum(row[1] for row in rows.values())
    print(
        f"{profiler_name} of {requests} POST /v1/invitations (+ their email jobs), {concurrency} in"
        f" flight, in-process via httpx.ASGITransport: {elapsed:.2f} s wall, "
        f"{requests / elapsed:,.0f} req/s under the profiler; {total:.2f} s {unit}"
    )

    def where(key: tuple[str, int, str]) -> str:
        filename, line, name = key
        if filename == "~":
            return name
        for marker in ("site-packages/", "/work/main/", "/lib/python3"):
            if marker in filename:
                filename = filename.split(marker, 1)[1]
                if marker == "/lib/python3":
                    filename = "stdlib/" + filename.split("/", 1)[1]
                break
        return f"{filename}:{line}({name})"

    def package(key: tuple[str, int, str]) -> str:
        filename, _, name = key
        if filename == "~":
            for known in ("sqlite3", "msgspec", "uvloop", "select", "_asyncio", "socket"):
                if known in name:
                    return f"{known} (C)"
            return "builtins (C)"
        if "site-packages/" in filename:
            return filename.split("site-packages/", 1)[1].split("/", 1)[0]
        if "/lib/python3" in filename:
            parts = filename.split("/lib/python3", 1)[1].split("/")
            return "stdlib/" + parts[1].removesuffix(".py")
        if f"{os.sep}ravepilot_" in filename or filename.startswith("ravepilot_"):
            tail = filename[filename.index("ravepilot_") :]
            return "/".join(tail.split("/")[:2])
        return filename

    def cumulative(suffix: str, name: str) -> float:
        return float(
            sum(row[2] for k, row in rows.items() if k[0].endswith(suffix) and k[2] == name)
        )

    request_part = cumulative("litestar/app.py", "__call__")
    jobs_part = cumulative("ravepilot_core/jobs.py", "_lane")
    compose_part = cumulative("ravepilot_core/mail.py", "compose_invitation")
    split = (
        f"split (cumulative): request handling (Litestar app) {request_part / total:.0%}, "
        f"email jobs (JobWorker._lane) {jobs_part / total:.0%}"
        f" [of which compose_invitation {compose_part / total:.0%}],"
        f" test client outside the app "
        f"{(cumulative('httpx/_client.py', 'send') - request_part) / total:.0%}"
    )
    if profiler_name == "cprofile":
        executes = sum(
            r[0] for k, r in rows.items() if k[0] == "~" and "'execute' of 'sqlite3" in k[2]
        )
        split += f"; {executes / requests:.1f} SQLite statements per invitation incl. its email job"
    print(split)

    def calls(row: list[Any]) -> str:
        return "-" if row[0] is None else str(row[0])

    glue = (
        "run_until_complete",
        "run_forever",
        "_run_once",
        "Runner.run",
        "(run)",
        "Handle._run",
        "_contextvars",
        "{method 'run' of",
        "<module>",
        "main",
        "run_async",
        "profile_invitations",
    )
    print(
        f"\ntop {top} by cumulative time (% of the total; "
        "with cProfile each coroutine resumption is a call):"
    )
    shown = 0
    for key, row in sorted(rows.items(), key=lambda kv: kv[1][2], reverse=True):
        name = where(key)
        if any(g in name for g in glue):
            continue
        print(f"  {row[2] / total:6.1%}  {row[2]:7.3f}s  {calls(row):>8}  {name}")
        shown += 1
        if shown >= top:
            break
    print(f"\ntop {top} RavePilot functions (ravepilot_core, ravepilot_server) by cumulative time:")
    ours = [
        (k, row)
        for k, row in rows.items()
        if "ravepilot_core" in k[0] or "ravepilot_server" in k[0]
    ]
    for key, row in sorted(ours, key=lambda kv: kv[1][2], reverse=True)[:top]:
        print(f"  {row[2] / total:6.1%}  {row[2]:7.3f}s  {calls(row):>8}  {where(key)}")
    print(f"\ntop {top} by self time:")
    for key, row in sorted(rows.items(), key=lambda kv: kv[1][1], reverse=True)[:top]:
        print(f"  {row[1] / total:6.1%}  {row[1]:7.3f}s  {calls(row):>8}  {where(key)}")
    by_package: Counter[str] = Counter()
    for key, row in rows.items():
        by_package[package(key)] += row[1]
    print("\nself time by package:")
    for name, seconds in by_package.most_common(15):
        print(f"  {seconds / total:6.1%}  {seconds:7.3f}s  {name}")


# -- command line ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="RavePilot API benchmark: invitations and submissions vs a no-op baseline.",
        epilog="See benchmarks/README.md.",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per scenario (10)")
    parser.add_argument(
        "--requests", type=int, default=None, help="a fixed number of requests per scenario instead"
    )
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="warm-up seconds per scenario (2)"
    )
    parser.add_argument("--concurrency", "-c", type=int, default=32, help="connections (32)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    parser.add_argument(
        "--no-access-log",
        action="store_true",
        help="turn uvicorn's access log off (ravepilot serve leaves it on)",
    )
    parser.add_argument(
        "--no-worker",
        action="store_true",
        help="serve without the in-process job worker: the request path alone (not production)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for the worker to send the queued emails before submissions (120)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temp data dir, the server log and the Postgres schema",
    )
    add_database_arguments(parser)
    parser.add_argument(
        "--profile",
        type=int,
        metavar="N",
        default=None,
        help="instead: profile N POST /v1/invitations in-process (see --profiler); print hotspots",
    )
    parser.add_argument(
        "--profiler",
        choices=("cprofile", "pyinstrument", "none"),
        default="cprofile",
        help="for --profile: cprofile (stdlib, exact call counts), pyinstrument (sampling) or"
        " none (the same run unprofiled, to see the profiler's overhead)",
    )
    parser.add_argument("--top", type=int, default=25, help="rows per --profile table (25)")
    args = parser.parse_args(argv)
    if args.concurrency < 1 or (args.requests is not None and args.requests < 1):
        parser.error("--concurrency and --requests must be positive")
    if args.duration <= 0 or args.warmup < 0:
        parser.error("--duration must be positive and --warmup not negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.profile:
        try:
            profile_invitations(
                args.profile,
                min(args.concurrency, args.profile),
                args.top,
                args.profiler,
                args.database,
                args.postgres_url,
            )
        except BenchmarkAborted as exc:
            log(f"profile aborted: {exc}")
            return 1
        return 0

    # SIGTERM gets the same clean-up as Ctrl-C (here outside the loop; run_async does it inside).
    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)

    data_dir = Path(tempfile.mkdtemp(prefix="ravepilot-bench-"))
    db = BenchDatabase(args.database, data_dir, args.postgres_url)
    server: Server | None = None
    try:
        args.load_before = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
        args.file_creation_us = round(file_creation_us(data_dir))
        log(f"data dir {data_dir}; initialising ...")
        db.create()
        if db.is_postgres:
            log(f"database: {db.url}")
        key = initialise_data_dir(data_dir, db.url)
        server = Server(
            data_dir,
            access_log=not args.no_access_log,
            worker=not args.no_worker,
            environment=db.environment(),
        )
        log(f"server pid {server.process.pid} on {server.base_url}")
        report = run_async(benchmark(args, data_dir, key, server, db))
    except BenchmarkAborted as exc:
        log(f"benchmark aborted: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            kept = f" and the schema {db.schema}" if db.is_postgres else ""
            log(f"kept {data_dir} (server log: {data_dir / 'server.log'}){kept}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
            with contextlib.suppress(BenchmarkAborted):
                db.drop()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
