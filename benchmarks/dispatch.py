#!/usr/bin/env python
"""Webhook delivery throughput and latency, against the raw ceiling of the same receiver.

Phases, in this order, in ONE run against ONE receiver process:

    backlog     create --backlog deliveries (invitation.created events, one delivery per event
                per endpoint) with the worker stopped
    ceiling     the raw ceiling: a bare aiohttp loop in this process (one session, keep-alive)
                POSTs the same body and headers as a delivery to the receiver, with as many
                requests in flight as the worker can have, for --duration seconds
    throughput  start the worker (``rp.worker().run()``, in this process) and time until every
                delivery of the backlog is recorded succeeded: deliveries/s end to end
                (event created -> receiver answered 200 -> result recorded); with
                --worker-processes N, N ``ravepilot worker`` processes started before the
                backlog and stopped (SIGSTOP) until now are continued (SIGCONT) instead
    ceiling     the same window again; the ratio is against the mean of the two, and their
                spread says how steady the machine was
    latency     with the worker running, create --rate invitations a second (open loop, paced
                by the clock) for --latency-seconds; event-to-receipt latency is the receiver's
                receipt time minus the event's created_at (same machine clock)

The receiver is ``benchmarks/receiver.py`` in a subprocess (its own core): a bare asyncio
Protocol with httptools on uvloop that answers ``200 OK`` and records (delivery id, receipt
time). The core runs on SQLite (the embedded default) in a fresh temporary data dir, or with
--database postgres in a fresh schema on a PostgreSQL server (see database.py), dropped at exit.

Targets (from the issue, on this 2-core machine with SQLite): >= 5,000 deliveries/s sustained,
>= 0.5x the raw ceiling, p99 <= 50 ms at 1,000 events/s. The script prints PASS/MISS and exits 0
either way; it exits non-zero only when the measurement is invalid (the receiver did not start,
deliveries failed or went missing, the backlog did not drain in time, ...).

    python benchmarks/dispatch.py
    python benchmarks/dispatch.py --backlog 60000 --json
    python benchmarks/dispatch.py --profile py-spy      # where the worker's CPU goes
    python benchmarks/dispatch.py --database postgres --worker-processes 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from common import (
    BenchmarkAborted,
    clean_environment,
    interrupt,
    log,
    machine_busy_seconds,
    process_cpu_seconds,
)
from database import BenchDatabase, add_database_arguments, postgres_cpu_seconds, postgres_cpu_since

from ravepilot_server.process import tune_for_serving

HERE = Path(__file__).resolve().parent
TARGET_DELIVERIES_PER_SECOND = 5000
TARGET_RATIO = 0.5
TARGET_P99_MS = 50.0
MAX_ERROR_RATE = 0.01
POLL_SECONDS = 0.1  # how often the throughput phase counts what is still pending


class CpuMeter:
    """CPU used between start() and stop(), as % of one core: this process (the worker or the
    raw client), the receiver, and everything else on the machine (other processes share these
    two cores and move the figures; a large "others" figure flags a noisy window).

    With worker processes and on Postgres it also measures those: each worker process, and every
    process named ``postgres`` except other clients' backends (that is the server, its background
    processes and this run's backends).
    """

    def __init__(self, receiver_pid: int, db: BenchDatabase) -> None:
        self._pid = receiver_pid
        self._db = db
        self.worker_pids: list[int] = []  # `ravepilot worker` processes, once they run
        self._wall = 0.0
        self._own = 0.0
        self._receiver: float | None = None
        self._machine: float | None = None
        self._workers: list[float | None] = []
        self._postgres: dict[int, float] = {}

    def start(self) -> None:
        self._wall = time.perf_counter()
        self._own = time.process_time()
        self._receiver = process_cpu_seconds(self._pid)
        self._machine = machine_busy_seconds()
        self._workers = [process_cpu_seconds(pid) for pid in self.worker_pids]
        if self._db.is_postgres:
            self._postgres = postgres_cpu_seconds()

    async def stop(self) -> dict[str, Any]:
        other_clients = await self._db.other_clients()  # a query: before the clock stops
        wall = time.perf_counter() - self._wall
        own = 100 * (time.process_time() - self._own) / wall
        receiver = machine = None
        receiver_now, machine_now = process_cpu_seconds(self._pid), machine_busy_seconds()
        if receiver_now is not None and self._receiver is not None:
            receiver = 100 * (receiver_now - self._receiver) / wall
        if machine_now is not None and self._machine is not None:
            machine = 100 * (machine_now - self._machine) / wall
        measured: dict[str, Any] = {}
        accounted = own + (receiver or 0.0)
        if self.worker_pids:
            seconds = [
                _cpu_since(pid, before)
                for pid, before in zip(self.worker_pids, self._workers, strict=True)
            ]
            total = sum(s or 0.0 for s in seconds)
            measured["workers_cpu_seconds"] = [_round(s, 3) for s in seconds]
            measured["workers_cpu"] = round(100 * total / wall)
            accounted += 100 * total / wall
        if self._db.is_postgres:
            used = postgres_cpu_since(self._postgres)
            # The benchmark's own reads (the pending count, ten times a second) apart: they are
            # the measurement's cost, not the worker's.
            counting = used.pop(self._db.backend_pid or -1, 0.0)
            postgres = sum(used[pid] for pid in used.keys() - other_clients)
            measured["postgres_cpu_seconds"] = round(postgres, 3)
            measured["postgres_cpu"] = round(100 * postgres / wall)
            measured["counting_postgres_cpu_seconds"] = round(counting, 3)
            accounted += 100 * (postgres + counting) / wall
        if measured and receiver_now is not None and self._receiver is not None:
            measured["receiver_cpu_seconds"] = round(receiver_now - self._receiver, 3)
        others = None if machine is None or receiver is None else max(0, machine - accounted)
        if measured and others is not None:
            measured["others_cpu_seconds"] = round(others * wall / 100, 3)
        return {
            "bench_cpu_seconds": round(own * wall / 100, 3),
            "bench_cpu": round(own),
            "receiver_cpu": _round(receiver, 0),
            "others_cpu": _round(others, 0),
            **measured,
        }


def _cpu_since(pid: int, before: float | None) -> float | None:
    now = process_cpu_seconds(pid)
    return None if now is None or before is None else now - before


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (already sorted)."""
    if not values:
        return float("nan")
    rank = max(1, min(len(values), math.ceil(q / 100 * len(values))))
    return values[rank - 1]


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str] = {"python": platform.python_version()}
    for name in ("ravepilot", "aiohttp", "anyio", "httptools", "uvloop"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "-"
    found["sqlite"] = sqlite3.sqlite_version
    return found


# -- the receiver ----------------------------------------------------------------------------------


class Receiver:
    """``benchmarks/receiver.py`` in a subprocess; stopped (SIGINT, then SIGKILL) on exit."""

    def __init__(self, data_dir: Path) -> None:
        self.log_path = data_dir / "receiver.log"
        self._log_file = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "receiver.py"), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            stdin=subprocess.DEVNULL,
            # Its own process group: Ctrl-C reaches only us, and we stop it in order.
            start_new_session=True,
        )
        self.port = 0

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Read ``READY <port>`` from its stdout."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        os.set_blocking(self.process.stdout.fileno(), False)
        buffer = b""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchmarkAborted(
                    f"the receiver exited with {self.process.returncode}: "
                    f"{self.log_path.read_text(errors='replace')[-2000:]}"
                )
            chunk = self.process.stdout.read()
            if chunk:
                buffer += chunk
            if b"\n" in buffer:
                line = buffer.split(b"\n", 1)[0].decode()
                if not line.startswith("READY "):
                    raise BenchmarkAborted(f"unexpected receiver output: {line!r}")
                self.port = int(line.split()[1])
                return
            time.sleep(0.02)
        raise BenchmarkAborted(f"the receiver did not start within {timeout:.0f} s")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        interrupt(self.process)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log_file.close()


async def control(session: Any, receiver: Receiver, path: str) -> dict[str, Any]:
    async with session.get(receiver.base_url + path) as response:
        if response.status != 200:
            raise BenchmarkAborted(f"receiver {path}: HTTP {response.status}")
        result: dict[str, Any] = await response.json()
        return result


# -- profiling the worker --------------------------------------------------------------------------


class Profiler:
    """Profiles the worker during one phase: py-spy (sampling) or cProfile.

    The worker is this process, or the ``ravepilot worker`` processes in ``pids`` (py-spy
    only: one sampler each, and the report adds their samples up).
    """

    def __init__(self, kind: str, phase: str, data_dir: Path, top: int) -> None:
        self.kind = kind
        self.phase = phase
        self.top = top
        self._data_dir = data_dir
        self._outputs: list[Path] = []
        self._processes: list[subprocess.Popen[bytes]] = []
        self._tracer: Any = None
        self.pids: list[int] = []  # worker processes; empty: this process

    def start(self, phase: str) -> None:
        if phase != self.phase:
            return
        if self.kind == "py-spy":
            spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            if not Path(spy).exists():
                raise BenchmarkAborted("--profile py-spy needs: pip install py-spy")
            for pid in self.pids or [os.getpid()]:
                output = self._data_dir / f"py-spy-{pid}.txt"
                # --nonblocking: do not pause the worker to sample it, so it runs at full
                # speed; raw output is one collapsed stack per line with its sample count.
                process = subprocess.Popen(
                    [
                        spy,
                        "record",
                        "--pid",
                        str(pid),
                        "--rate",
                        "250",
                        "--nonblocking",
                        "--format",
                        "raw",
                        "--output",
                        str(output),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                )
                self._processes.append(process)
                self._outputs.append(output)
            time.sleep(0.5)  # let them attach before the phase starts
            for process in self._processes:
                if process.poll() is not None:
                    assert process.stderr is not None
                    raise BenchmarkAborted(
                        f"py-spy could not attach: {process.stderr.read().decode()[-500:]}"
                    )
        elif self.kind == "cprofile":
            import cProfile

            self._tracer = cProfile.Profile()
            self._tracer.enable()

    def stop(self) -> None:
        """Stop profiling (nothing happens unless start() began it)."""
        for process in self._processes:
            if process.returncode is None:
                process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for process in self._processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stderr is not None:
                process.stderr.close()
        if self._tracer is not None:
            self._tracer.disable()

    def report(self) -> str:
        if self.kind == "py-spy":
            return self._report_py_spy()
        if self.kind == "cprofile":
            return self._report_cprofile()
        return ""

    def _report_py_spy(self) -> str:
        lines = []
        for output in self._outputs:
            try:
                lines += output.read_text().splitlines()
            except OSError:
                return f"py-spy wrote no output to {output}"
        self_samples: Counter[str] = Counter()
        total_samples: Counter[str] = Counter()
        packages: Counter[str] = Counter()
        samples = 0
        other_threads = 0
        for line in lines:
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = stack.split(";")
            if _frame_file(frames[0]) == "threading.py":
                # Not the main thread (the event loop): the pending-count thread and friends.
                other_threads += count
                continue
            samples += count
            self_samples[frames[-1]] += count
            packages[_package(frames[-1])] += count
            # Inclusive by function, not by line: a coroutine shows on a different line at
            # each await it is suspended at.
            for function in {_function(frame) for frame in frames}:
                total_samples[function] += count
        if not samples:
            return "py-spy took no samples"
        whose = (
            f"of the {len(self.pids)} worker processes' event-loop threads"
            if self.pids
            else "of the event-loop thread"
        )
        out = [
            f"py-spy: {samples} samples {whose} during the {self.phase} phase"
            f" ({other_threads} of other threads left out). Shares are of the loop's busy"
            " samples: idle time in epoll is not sampled, py-spy shares the CPUs and takes fewer"
            " than the 250/s asked, and uvloop's C code (socket I/O) shows as Runner.run.",
            f"top {self.top} by self samples:",
        ]
        for frame, count in self_samples.most_common(self.top):
            out.append(f"  {count / samples:6.1%}  {frame}")
        out.append(f"top {self.top} by inclusive samples (event-loop glue left out):")
        shown = 0
        for frame, count in total_samples.most_common():
            if _is_glue(frame):
                continue
            out.append(f"  {count / samples:6.1%}  {frame}")
            shown += 1
            if shown >= self.top:
                break
        out.append("self samples by package:")
        for name, count in packages.most_common(12):
            out.append(f"  {count / samples:6.1%}  {name}")
        return "\n".join(out)

    def _report_cprofile(self) -> str:
        import io
        import pstats

        stream = io.StringIO()
        stats = pstats.Stats(self._tracer, stream=stream)
        stats.strip_dirs()
        stream.write(f"cProfile of the {self.phase} phase (adds ~2x overhead), by self time:\n")
        stats.sort_stats("tottime").print_stats(self.top)
        stream.write("by cumulative time:\n")
        stats.sort_stats("cumulative").print_stats(self.top)
        return stream.getvalue()


def _frame_file(frame: str) -> str:
    """``Class.func (aiohttp/client.py:558)`` -> ``aiohttp/client.py``.

    py-spy prints paths relative to the sys.path entry they were found under, so the first
    component is the package (or the stdlib module) and ``dispatch.py`` alone is this script.
    """
    inside = frame.rpartition(" (")[2].rstrip(")")
    return inside.rsplit(":", 1)[0]


def _function(frame: str) -> str:
    """``Class.func (aiohttp/client.py:558)`` -> ``Class.func (aiohttp/client.py)``."""
    return f"{frame.rpartition(' (')[0]} ({_frame_file(frame)})"


def _package(frame: str) -> str:
    path = _frame_file(frame)
    if path.startswith("ravepilot_core/"):
        return path.removesuffix(".py")
    head = path.split("/", 1)[0]
    return head.removesuffix(".py") if "/" not in path else head


def _is_glue(frame: str) -> bool:
    """Frames every sample passes through: the loop, anyio's task wrapper, this script (or the
    ``ravepilot worker`` command line)."""
    path = _frame_file(frame)
    return (
        path in ("dispatch.py", "threading.py", "ravepilot_server/cli.py", "<frozen runpy>")
        or path.startswith(("asyncio/", "uvloop/", "anyio/_core/_tasks.py", "click/"))
        or frame.startswith(("run (", "main (", "AsyncIOBackend.run ("))
    )


# -- the benchmark ---------------------------------------------------------------------------------


async def build_backlog(rp: Any, workspace_id: str, events: int, producers: int) -> float:
    """Create ``events`` invitations (each fans out to every endpoint); return the seconds taken.

    Several producers at once, as concurrent API requests would: the engine's group commit then
    writes many events per SQLite commit.
    """
    import anyio

    from ravepilot_core import LinkRequest

    numbers = iter(range(events))

    async def producer() -> None:
        for number in numbers:
            await rp.invitations.create(
                workspace_id, LinkRequest(customer_email=f"backlog-{number}@example.com")
            )

    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for _ in range(producers):
            group.start_soon(producer)
    return time.perf_counter() - started


async def sample_delivery(db: BenchDatabase) -> tuple[str, bytes]:
    """One pending delivery's id and its event's payload: the raw ceiling sends the same."""
    found = await db.query(
        "SELECT d.id, e.payload FROM rp_deliveries d JOIN rp_events e ON e.id = d.event_id LIMIT 1"
    )
    if not found:
        raise BenchmarkAborted("the backlog is empty")
    delivery_id, payload = found[0]
    return delivery_id, payload.encode() if isinstance(payload, str) else bytes(payload)


async def status_counts(db: BenchDatabase, since_ms: int = 0) -> dict[str, int]:
    found = await db.query(
        "SELECT status, COUNT(*) FROM rp_deliveries WHERE created_at >= $1 GROUP BY status",
        since_ms,
    )
    return {status: int(count) for status, count in found}


async def delivery_created_ms(db: BenchDatabase, since_ms: int) -> dict[str, int]:
    found = await db.query(
        "SELECT id, created_at FROM rp_deliveries WHERE created_at >= $1", since_ms
    )
    return {delivery_id: int(created) for delivery_id, created in found}


async def count_pending(db: BenchDatabase) -> int:
    """Pending deliveries, counted on the benchmark's own connection.

    Not through ``rp.storage``: on SQLite that would run the COUNT (about 2 ms over a
    30,000-row backlog) on the worker's event loop, ten times a second. See BenchDatabase.query.
    """
    found = await db.query("SELECT COUNT(*) FROM rp_deliveries WHERE status = 'pending'")
    return int(found[0][0])


async def raw_ceiling(
    url: str, body: bytes, headers: dict[str, str], concurrency: int, seconds: float
) -> dict[str, Any]:
    """Keep ``concurrency`` POSTs in flight with a bare aiohttp session for ``seconds``."""
    import aiohttp

    done = 0
    errors: Counter[str] = Counter()
    perf = time.perf_counter
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=10)
    ) as session:

        async def lane(deadline: float, count: bool) -> None:
            nonlocal done
            while perf() < deadline:
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        ok = 200 <= response.status < 300
                        if not ok:
                            errors[str(response.status)] += 1
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    errors[type(exc).__name__] += 1
                    continue
                if count and ok:
                    done += 1

        # One second of warm-up, not counted: every connection is open before the window.
        warm_until = perf() + 1.0
        await asyncio.gather(*(lane(warm_until, False) for _ in range(concurrency)))
        started = perf()
        cpu = time.process_time()
        await asyncio.gather(*(lane(started + seconds, True) for _ in range(concurrency)))
        elapsed = perf() - started
        cpu = time.process_time() - cpu
    return {
        "requests": done,
        "seconds": elapsed,
        "rps": done / elapsed,
        "errors": dict(errors),
        # CPU of the measured window alone (the meter around this call includes the warm-up).
        "cpu_us_each": 1e6 * cpu / max(1, done),
    }


async def throughput(
    db: BenchDatabase, backlog: int, timeout: float
) -> tuple[dict[str, Any], list[tuple[float, int]]]:
    """With the worker just started (or resumed): poll until the backlog is recorded; the rate
    series."""
    perf = time.perf_counter
    started = perf()
    series: list[tuple[float, int]] = [(0.0, 0)]
    while True:
        await asyncio.sleep(POLL_SECONDS)
        pending = await count_pending(db)
        now = perf() - started
        series.append((now, backlog - pending))
        if pending == 0:
            break
        if now > timeout:
            raise BenchmarkAborted(
                f"the backlog did not drain within {timeout:.0f} s ({pending} still pending)"
            )
    elapsed = series[-1][0]
    return {"deliveries": backlog, "seconds": elapsed, "rate": backlog / elapsed}, series


def _when(series: list[tuple[float, int]], target: float) -> float:
    """The instant ``target`` deliveries were done, interpolated between two polls."""
    for (t0, d0), (t1, d1) in itertools.pairwise(series):
        if d1 >= target:
            return t0 if d1 == d0 else t0 + (t1 - t0) * (target - d0) / (d1 - d0)
    return series[-1][0]


def rates_by_fifth(series: list[tuple[float, int]], total: int) -> list[float]:
    """Deliveries/s over each fifth of the backlog: flat unless a claim costs more when the
    queue is longer (the first fifth also includes the worker's start)."""
    marks = [_when(series, total * k / 5) for k in range(6)]
    return [
        total / 5 / (end - start) if end > start else float("nan")
        for start, end in itertools.pairwise(marks)
    ]


def middle_rate(series: list[tuple[float, int]], total: int) -> tuple[float, float, float]:
    """Deliveries/s between 20% and 80% done, interpolated; plus those two instants."""
    low, high = _when(series, 0.2 * total), _when(series, 0.8 * total)
    return (0.6 * total / (high - low) if high > low else float("nan")), low, high


async def offered_load(rp: Any, workspace_id: str, rate: float, seconds: float) -> dict[str, Any]:
    """Create ``rate`` invitations a second for ``seconds``, open loop: each on its own task.

    Open loop matters: a producer that waited for each create would slow down whenever the
    worker holds the loop, and quietly offer less than asked (coordinated omission). Instead
    the k-th event is started at ``start + k / rate`` whatever happened before; how late it
    started is reported as the producer lag.
    """
    import anyio

    from ravepilot_core import LinkRequest

    perf = time.perf_counter
    count = int(rate * seconds)
    lags: list[float] = []
    finished = 0.0

    async def one(number: int, due: float) -> None:
        nonlocal finished
        lags.append(perf() - due)
        await rp.invitations.create(
            workspace_id, LinkRequest(customer_email=f"latency-{number}@example.com")
        )
        finished = max(finished, perf())

    start = perf() + 0.01
    async with anyio.create_task_group() as group:
        for number in range(count):
            due = start + number / rate
            wait = due - perf()
            if wait > 0:
                await anyio.sleep(wait)
            group.start_soon(one, number, due)
    lags.sort()
    window = finished - start
    return {
        "events": count,
        "seconds": window,
        "offered_rate": count / window,
        "producer_lag_p50_ms": percentile(lags, 50) * 1000,
        "producer_lag_p99_ms": percentile(lags, 99) * 1000,
    }


class WorkerProcesses:
    """N ``ravepilot worker`` processes on the run's database, as beside ``serve --no-worker``.

    They start before the backlog is built and settle on the empty queue, then wait stopped
    (SIGSTOP) while the backlog and the first ceiling window run: the throughput phase begins
    when they are continued (SIGCONT), warm, all at once, as the in-process worker begins when
    it is started. Each logs to ``worker-<n>.log`` in the data dir.
    """

    def __init__(
        self, count: int, data_dir: Path, db: BenchDatabase, args: argparse.Namespace
    ) -> None:
        self._db = db
        env = clean_environment(
            RAVEPILOT_DATA_DIR=str(data_dir),  # the secret key that decrypts endpoint secrets
            RAVEPILOT_ALLOW_PRIVATE_WEBHOOKS="true",
            RAVEPILOT_WEBHOOK_CONCURRENCY=str(args.concurrency),
            RAVEPILOT_WEBHOOK_PER_ENDPOINT=str(args.per_endpoint),
            **db.environment(),
        )
        self.logs = [data_dir / f"worker-{number}.log" for number in range(1, count + 1)]
        self.processes: list[subprocess.Popen[bytes]] = []
        for path in self.logs:
            with open(path, "wb") as log_file:
                self.processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "ravepilot_server.cli", "worker"],
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=log_file,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # Ctrl-C reaches only us; we stop them in order
                    )
                )

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def wait_started(self, timeout: float = 60.0) -> None:
        """Return once every worker has logged that it started, and has settled."""
        deadline = time.monotonic() + timeout
        for process, path in zip(self.processes, self.logs, strict=True):
            while "worker started" not in path.read_text(errors="replace"):
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = path.read_text(errors="replace")[-2000:]
                    raise BenchmarkAborted(f"`ravepilot worker` did not start:\n{tail}")
                time.sleep(0.05)
        time.sleep(0.5)  # its first looks for work, on the empty queue

    def pause(self) -> None:
        """SIGSTOP them all, between two looks for work.

        On SQLite a worker stopped inside a write transaction (its job worker opens one at each
        wake-up, for ~0.1 ms) would hold the lock and stall the backlog; continue and retry then.
        """
        for _ in range(20):
            self._signal(signal.SIGSTOP)
            if not self._db.sqlite_write_locked():
                return
            self._signal(signal.SIGCONT)
            time.sleep(0.05)
        raise BenchmarkAborted("could not stop the workers outside a write transaction")

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        for process in self.processes:
            if process.poll() is not None:
                raise BenchmarkAborted(
                    f"`ravepilot worker` {process.pid} exited with {process.returncode}; "
                    f"see {self.logs[self.processes.index(process)]}"
                )
            process.send_signal(signum)

    def stop(self) -> list[float | None]:
        """Stop them with SIGTERM (each finishes what it started); return their CPU seconds."""
        cpu = [process_cpu_seconds(process.pid) for process in self.processes]
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGCONT)  # a stopped process ignores SIGTERM
                    process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return cpu


async def wait_drained(db: BenchDatabase, timeout: float) -> float:
    started = time.perf_counter()
    while await count_pending(db):
        if time.perf_counter() - started > timeout:
            raise BenchmarkAborted(f"deliveries were still pending {timeout:.0f} s after the load")
        await asyncio.sleep(0.05)
    return time.perf_counter() - started


async def benchmark(
    args: argparse.Namespace, data_dir: Path, receiver: Receiver, db: BenchDatabase
) -> dict[str, Any]:
    # The worker processes (and the benchmark's own database connection) end with the run,
    # whatever happens: the schema is dropped after this returns.
    workers: list[WorkerProcesses] = []
    try:
        return await _benchmark(args, data_dir, receiver, db, workers)
    finally:
        for started in workers:
            started.stop()
        await db.close()


async def _benchmark(
    args: argparse.Namespace,
    data_dir: Path,
    receiver: Receiver,
    db: BenchDatabase,
    started_workers: list[WorkerProcesses],
) -> dict[str, Any]:
    from importlib.metadata import version

    import aiohttp
    import anyio

    from ravepilot_core import NewWebhookEndpoint, RavePilot, Settings
    from ravepilot_core.signing import Signer

    # SIGTERM cancels the run, as Ctrl-C does. A handler that raised inside the loop would land
    # in whatever callback was running (an aiohttp transport's, say) and break only that.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    meter = CpuMeter(receiver.process.pid, db)
    profiler = Profiler(args.profile, args.profile_phase, data_dir, args.top)
    in_flight = min(args.concurrency, args.per_endpoint * args.endpoints)
    events = math.ceil(args.backlog / args.endpoints)
    backlog = events * args.endpoints
    report: dict[str, Any] = {
        "settings": {
            "backlog": backlog,
            "events": events,
            "endpoints": args.endpoints,
            "webhook_concurrency": args.concurrency,
            "webhook_per_endpoint": args.per_endpoint,
            "in_flight": in_flight,
            "ceiling_seconds": args.duration,
            "rate": args.rate,
            "latency_seconds": args.latency_seconds,
            "loop": args.loop,
            "cpus": os.cpu_count(),
            "load_average_before": args.load_before,
            "versions": versions(),
            "profile": args.profile,
            "database": db.kind,
            # 0: the worker runs in this process; N: `ravepilot worker` x N, this process
            # only produces events and counts.
            "worker_processes": args.worker_processes,
        }
    }
    if db.is_postgres:
        report["settings"]["schema"] = db.schema
        report["settings"]["versions"]["postgres"] = await db.server_version()
        report["settings"]["versions"]["asyncpg"] = version("asyncpg")
    settings = Settings(data_dir=data_dir, database_url=db.url, allow_private_webhooks=True)
    # The core logs a warning for allow_private_webhooks; that is expected here.
    async with (
        await RavePilot.from_settings(settings) as rp,
        aiohttp.ClientSession() as control_session,
    ):
        if not db.is_postgres and not db.sqlite_path.exists():
            raise BenchmarkAborted(f"expected the SQLite database at {db.sqlite_path}")
        workspace = await rp.workspaces.create("bench")
        secret = ""
        for number in range(args.endpoints):
            _, secret = await rp.webhooks.create(
                workspace.id,
                NewWebhookEndpoint(url=f"{receiver.base_url}/hook/{number}", events=["*"]),
            )
        workers: WorkerProcesses | None = None
        if args.worker_processes:
            log(f"starting {args.worker_processes} `ravepilot worker` process(es) ...")
            workers = WorkerProcesses(args.worker_processes, data_dir, db, args)
            started_workers.append(workers)
            workers.wait_started()
            workers.pause()  # until the throughput phase
            meter.worker_pids = profiler.pids = workers.pids
            log(f"  pids {', '.join(map(str, workers.pids))}, stopped until the drain")

        # -- backlog ---------------------------------------------------------------------------
        log(f"backlog: {events:,} events x {args.endpoints} endpoint(s) = {backlog:,} deliveries")
        build_seconds = await build_backlog(rp, workspace.id, events, args.producers)
        pending = (await rp.storage.delivery_queue_stats()).pending
        if pending != backlog:
            raise BenchmarkAborted(f"expected {backlog} pending deliveries, found {pending}")
        report["backlog"] = {
            "seconds": round(build_seconds, 2),
            "events_per_second": round(events / build_seconds),
            "deliveries_per_second": round(backlog / build_seconds),
        }
        log(f"  built in {build_seconds:.1f} s ({events / build_seconds:,.0f} events/s)")

        # -- raw ceiling -----------------------------------------------------------------------
        delivery_id, payload = await sample_delivery(db)
        # The same header set as a real delivery, signed once up front (the ceiling pays no
        # signing, no database and no bookkeeping: that is the point of it).
        headers = Signer([secret]).headers(
            delivery_id=delivery_id,
            event_type="invitation.created",
            body=payload,
            timestamp=int(time.time()),
        )
        headers["Content-Type"] = "application/json"
        headers["User-Agent"] = "RavePilot-Webhooks/bench"
        url = f"{receiver.base_url}/hook/0"

        async def ceiling_window(which: str) -> dict[str, Any]:
            log(
                f"ceiling ({which}): bare aiohttp, {in_flight} in flight, {len(payload)}-byte "
                f"body, {args.duration:g} s ..."
            )
            before = (await control(control_session, receiver, "/_stats"))["requests"]
            meter.start()
            window = await raw_ceiling(url, payload, headers, in_flight, args.duration)
            window.update(await meter.stop())
            window["receiver_saw"] = (await control(control_session, receiver, "/_stats"))[
                "requests"
            ] - before
            await control(control_session, receiver, "/_clear")
            failed = sum(window["errors"].values())
            if failed > MAX_ERROR_RATE * max(1, window["requests"]):
                raise BenchmarkAborted(f"raw ceiling: {failed} requests failed: {window['errors']}")
            log(f"  {window['rps']:,.0f} req/s")
            return {k: _round(v) if isinstance(v, float) else v for k, v in window.items()}

        ceilings = {"before": await ceiling_window("before")}

        # -- throughput --------------------------------------------------------------------------
        worker = rp.worker(
            webhook_concurrency=args.concurrency, webhook_per_endpoint=args.per_endpoint
        )
        who = "the worker drains" if workers is None else f"{len(workers.pids)} worker(s) drain"
        log(f"throughput: {who} {backlog:,} deliveries ...")

        async with anyio.create_task_group() as group:
            profiler.start("throughput")
            meter.start()
            # After the meter: the phase starts with the worker (or the workers continuing).
            if workers is None:
                group.start_soon(worker.run)
            else:
                workers.resume()
            result, series = await throughput(db, backlog, args.timeout)
            result.update(await meter.stop())
            profiler.stop()
            worker_cpu = (
                result["bench_cpu_seconds"]
                if workers is None
                else sum(seconds or 0.0 for seconds in result["workers_cpu_seconds"])
            )
            result["cpu_us_each"] = 1e6 * worker_cpu / backlog
            steady, low, high = middle_rate(series, backlog)
            fifths = rates_by_fifth(series, backlog)
            stats = await control(control_session, receiver, "/_stats")
            dump = await control(control_session, receiver, "/_receipts")
            ids = [r[0] for r in dump["receipts"]]
            statuses = await status_counts(db)
            if statuses.get("succeeded", 0) != backlog:
                raise BenchmarkAborted(f"not every delivery succeeded: {statuses}")
            # The ceiling again, right after (the worker idles meanwhile): the two windows bracket
            # the throughput phase, and how far apart they are shows how steady the machine was.
            ceilings["after"] = await ceiling_window("after")
            ceiling_rps = (ceilings["before"]["rps"] + ceilings["after"]["rps"]) / 2
            ceiling_us = (ceilings["before"]["cpu_us_each"] + ceilings["after"]["cpu_us_each"]) / 2
            report["ceiling"] = {
                **ceilings,
                "rps": round(ceiling_rps, 1),
                "cpu_us_each": round(ceiling_us, 1),
                "spread": round(
                    abs(ceilings["before"]["rps"] - ceilings["after"]["rps"]) / ceiling_rps, 3
                ),
            }
            result.update(
                {
                    "steady_rate": steady,
                    "steady_window": [round(low, 2), round(high, 2)],
                    "rates_by_fifth": [round(rate) for rate in fifths],
                    "ratio_to_ceiling": result["rate"] / ceiling_rps,
                    "steady_ratio_to_ceiling": steady / ceiling_rps,
                    # CPU per request of the bare client / CPU per delivery of the worker: what
                    # the ratio would be if both had a core to themselves. Other jobs on the
                    # machine move it much less than they move the rates.
                    "cpu_ratio_to_ceiling": ceiling_us / result["cpu_us_each"],
                    "receiver_requests": len(ids),
                    "duplicates": len(ids) - len(set(ids)),
                    "poll_seconds": POLL_SECONDS,
                }
            )
            if len(set(ids)) != backlog:
                raise BenchmarkAborted(
                    f"the receiver saw {len(set(ids))} distinct deliveries, expected {backlog}"
                )
            report["throughput"] = {
                k: _round(v, 3 if "ratio" in k else 1) if isinstance(v, float) else v
                for k, v in result.items()
            }
            log(
                f"  {result['rate']:,.0f} deliveries/s end to end, {steady:,.0f}/s steady "
                f"({stats['requests']:,} requests seen by the receiver in all)"
            )

            # -- latency at a fixed offered rate ------------------------------------------------
            since_ms = int(time.time() * 1000)
            await control(control_session, receiver, "/_clear")
            log(
                f"latency: {args.rate:g} events/s offered for {args.latency_seconds:g} s "
                f"({args.rate * args.endpoints:g} deliveries/s) ..."
            )
            profiler.start("latency")
            meter.start()
            offered = await offered_load(rp, workspace.id, args.rate, args.latency_seconds)
            offered.update(await meter.stop())
            profiler.stop()
            # What the worker had not recorded yet when the load stopped: 0 to a few dozen
            # when it keeps up, a growing queue when it does not.
            offered["pending_at_end_of_load"] = await count_pending(db)
            drain = await wait_drained(db, args.timeout)
            dump = await control(control_session, receiver, "/_receipts")
            group.cancel_scope.cancel()  # stop the worker (it records what it started first)
        if args.profile != "none":
            report["profile"] = profiler.report()

        created = await delivery_created_ms(db, since_ms)
        first_receipt: dict[str, float] = {}
        for delivery, at in dump["receipts"]:
            first_receipt.setdefault(delivery, at)
        latencies = sorted(
            at - created[delivery] / 1000
            for delivery, at in first_receipt.items()
            if delivery in created
        )
        missing = len(created) - len(latencies)
        expected = offered["events"] * args.endpoints
        if len(created) != expected:
            raise BenchmarkAborted(
                f"expected {expected} deliveries, the database has {len(created)}"
            )
        if missing > MAX_ERROR_RATE * expected:
            raise BenchmarkAborted(f"{missing} of {expected} deliveries never reached the receiver")
        offered.update(
            {
                "deliveries": len(latencies),
                "missing": missing,
                "drain_after_load_seconds": drain,
                "p50_ms": percentile(latencies, 50) * 1000,
                "p90_ms": percentile(latencies, 90) * 1000,
                "p99_ms": percentile(latencies, 99) * 1000,
                "max_ms": latencies[-1] * 1000,
            }
        )
        report["latency"] = {
            k: _round(v, 2) if isinstance(v, float) else v for k, v in offered.items()
        }
        log(
            f"  p50 {offered['p50_ms']:.1f} ms, p99 {offered['p99_ms']:.1f} ms, "
            f"max {offered['max_ms']:.1f} ms"
        )

    t, lat = report["throughput"], report["latency"]
    report["targets"] = {
        "deliveries_per_second": {
            "min": TARGET_DELIVERIES_PER_SECOND,
            "value": t["rate"],
            "met": t["rate"] >= TARGET_DELIVERIES_PER_SECOND,
        },
        "ratio_to_ceiling": {
            "min": TARGET_RATIO,
            "value": t["ratio_to_ceiling"],
            "met": t["ratio_to_ceiling"] >= TARGET_RATIO,
        },
        "p99_ms_at_rate": {
            "max": TARGET_P99_MS,
            "value": lat["p99_ms"],
            "met": lat["p99_ms"] <= TARGET_P99_MS,
        },
    }
    return report


# -- the report ------------------------------------------------------------------------------------


def render_table(report: dict[str, Any]) -> str:
    s, v = report["settings"], report["settings"]["versions"]
    c, t, lat, b = report["ceiling"], report["throughput"], report["latency"], report["backlog"]
    processes = s.get("worker_processes", 0)
    postgres = s.get("database") == "postgres"

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}%"

    if postgres:
        database = f"PostgreSQL {v['postgres']} (schema {s['schema']})"
    else:
        database = f"SQLite {v['sqlite']} in a temp dir"
    settings = (
        f"webhook_concurrency {s['webhook_concurrency']}, webhook_per_endpoint "
        f"{s['webhook_per_endpoint']}; {s['endpoints']} endpoint(s) on one receiver, so up to "
    )
    if processes:
        worker = (
            f"  worker: {processes} `ravepilot worker` process(es) on uvloop, {database}, "
            f"{settings}{processes * s['in_flight']} requests in flight in all; this process "
            f"({s['loop']}) only creates the events, counts and runs the ceiling"
        )
    else:
        worker = (
            f"  worker: rp.worker().run() in this process on {s['loop']}, {database}, "
            f"{settings}{s['in_flight']} requests in flight; the process's garbage collector "
            "set as `ravepilot worker` sets it (tune_for_serving)"
        )
    lines = [
        "RavePilot webhook dispatch benchmark",
        worker,
        "  receiver: benchmarks/receiver.py in its own process (asyncio Protocol + httptools"
        f"{' on uvloop' if v['uvloop'] != '-' else ''}), 200 OK with an empty body",
        f"  python {v['python']}, aiohttp {v['aiohttp']}, anyio {v['anyio']}; {s['cpus']} CPUs "
        "shared by everything",
    ]
    load = s["load_average_before"]
    if load is not None:
        lines.append(
            f"  1-minute load average before the run: {load:.2f}"
            + (" (the machine was not idle: expect noisier figures)" if load >= 0.5 else "")
        )
    lines += [
        f"  backlog: {s['events']:,} events x {s['endpoints']} endpoint(s) = {s['backlog']:,} "
        f"deliveries, created in {b['seconds']:.1f} s ({b['events_per_second']:,} events/s)",
        "",
    ]
    # The CPU columns: this process and the receiver always; the worker processes and Postgres
    # when they run.
    cpu_columns = [("bench CPU", "bench_cpu"), ("rcv CPU", "receiver_cpu")]
    if processes:
        cpu_columns.append(("workers CPU", "workers_cpu"))
    if postgres:
        cpu_columns.append(("pg CPU", "postgres_cpu"))
    cpu_columns.append(("others", "others_cpu"))
    header = (
        "measurement",
        "count",
        "seconds",
        "per second",
        "vs ceiling",
        *(title for title, _ in cpu_columns),
        "CPU µs each",
    )

    def cpu_cells(window: dict[str, Any]) -> list[str]:
        return [pct(window.get(key)) for _, key in cpu_columns]

    def ceiling_row(which: str) -> tuple[str, ...]:
        w = c[which]
        return (
            f"raw ceiling {which}: bare aiohttp, {s['in_flight']} in flight",
            f"{w['requests']:,}",
            f"{w['seconds']:.1f}",
            f"{w['rps']:,.0f}",
            f"{w['rps'] / c['rps']:.2f}x",
            *cpu_cells(w),
            f"{w['cpu_us_each']:.0f}",
        )

    rows = [
        ceiling_row("before"),
        (
            "end to end: backlog drained and recorded",
            f"{t['deliveries']:,}",
            f"{t['seconds']:.1f}",
            f"{t['rate']:,.0f}",
            f"{t['ratio_to_ceiling']:.2f}x",
            *cpu_cells(t),
            f"{t['cpu_us_each']:.0f}",
        ),
        (
            "  steady state (20% -> 80% done)",
            f"{int(0.6 * t['deliveries']):,}",
            f"{t['steady_window'][1] - t['steady_window'][0]:.1f}",
            f"{t['steady_rate']:,.0f}",
            f"{t['steady_ratio_to_ceiling']:.2f}x",
            *([""] * len(cpu_columns)),
            "",
        ),
        ceiling_row("after"),
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    spread = c["spread"]
    lines += [
        f"  the ceiling is the mean of the two windows, {c['rps']:,.0f} req/s; they differ by "
        f"{spread:.0%}"
        + (
            ": the machine's load changed during the run, so the ratios are noisy"
            if spread > 0.15
            else ""
        ),
        f"  CPU per request of the bare client / CPU per delivery of the worker"
        f"{'s' if processes > 1 else ''}: {t['cpu_ratio_to_ceiling']:.2f}x (the ratio if each "
        "had a core of its own)",
    ]
    if processes or postgres:
        lines.append("  " + cpu_breakdown(t))
    lines += [
        "  deliveries/s by fifth of the backlog, first to last: "
        + ", ".join(f"{rate:,}" for rate in t["rates_by_fifth"]),
        f"  (receiver saw {t['receiver_requests']:,} requests, {t['duplicates']} duplicates; "
        f"end of the run found by polling every {t['poll_seconds']:g} s)",
        "",
        f"latency at {s['rate']:g} events/s offered ({s['rate'] * s['endpoints']:g} deliveries/s)"
        f" for {s['latency_seconds']:g} s, worker running: achieved {lat['offered_rate']:,.0f} "
        f"events/s ({lat['events']:,} events); producer lag p99 "
        f"{lat['producer_lag_p99_ms']:.1f} ms",
        f"  event created_at -> receipt at the receiver: p50 {lat['p50_ms']:.1f} ms, "
        f"p90 {lat['p90_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, max {lat['max_ms']:.1f} ms "
        f"({lat['deliveries']:,} deliveries, {lat['missing']} missing)",
        f"  {lat['pending_at_end_of_load']:,} deliveries still pending when the load stopped, "
        f"drained {lat['drain_after_load_seconds']:.1f} s later; CPU: bench "
        f"{pct(lat['bench_cpu'])}, receiver {pct(lat['receiver_cpu'])}, "
        + "".join(
            f"{title.removesuffix(' CPU')} {pct(lat.get(key))}, "
            for title, key in cpu_columns[2:-1]
        )
        + f"others {pct(lat['others_cpu'])}",
    ]
    if lat["offered_rate"] < 0.9 * s["rate"]:
        lines.append(
            "  the producer fell behind the offered rate: events waited in this process before "
            "they were committed, so the latency above is mostly the producer's queue, not the "
            "worker's"
        )
    lines.append("")
    for name, target in report["targets"].items():
        verdict = "PASS" if target["met"] else "MISS"
        if name == "deliveries_per_second":
            text = (
                f"end-to-end deliveries/s >= {target['min']:,}: {verdict} ({target['value']:,.0f})"
            )
        elif name == "ratio_to_ceiling":
            text = (
                f"end to end >= {target['min']}x the raw ceiling: {verdict} "
                f"({target['value']:.2f}x)"
            )
        else:
            text = (
                f"p99 event-to-receipt <= {target['max']:g} ms at {s['rate']:g} events/s: "
                f"{verdict} ({target['value']:.1f} ms)"
            )
        lines.append("target: " + text)
    if processes:
        lines.append(
            "(benchmarks do not gate: the exit code is 0 either way; CPU columns are % of one core"
            " over the window: bench = this process, i.e. the counter or the raw client; workers ="
            " the worker processes together; pg = every process named postgres; others = the "
            "rest of the machine, which shares the 2 cores and moves the figures)"
        )
    else:
        lines.append(
            "(benchmarks do not gate: the exit code is 0 either way; CPU columns are % of one core"
            " over the window: bench = this process, i.e. the worker or the raw client; "
            + ("pg = every process named postgres; " if postgres else "")
            + "others = the rest of the machine, which shares the 2 cores and moves the figures)"
        )
    if report.get("profile"):
        lines += ["", report["profile"]]
    return "\n".join(lines)


def cpu_breakdown(t: dict[str, Any]) -> str:
    """Where the CPU of a drained delivery went, by process, and what that allows per core."""
    backlog = t["deliveries"]
    parts: list[tuple[str, float]] = []
    if "workers_cpu_seconds" in t:
        for number, seconds in enumerate(t["workers_cpu_seconds"], start=1):
            parts.append((f"worker {number}", seconds or 0.0))
        parts.append(("this process (counting)", t["bench_cpu_seconds"]))
    else:
        parts.append(("this process (the worker)", t["bench_cpu_seconds"]))
    if "postgres_cpu_seconds" in t:
        parts.append(("postgres", t["postgres_cpu_seconds"]))
        parts.append(("postgres counting", t["counting_postgres_cpu_seconds"]))
    parts.append(("receiver", t.get("receiver_cpu_seconds") or 0.0))
    parts.append(("others", t.get("others_cpu_seconds") or 0.0))
    total = sum(seconds for _, seconds in parts)
    each = ", ".join(f"{name} {1e6 * seconds / backlog:.0f}" for name, seconds in parts)
    return (
        f"CPU µs per delivery, end to end: {each}; all {1e6 * total / backlog:.0f} µs, "
        f"so at most {backlog / total:,.0f} deliveries/s per core of the machine"
    )


# -- command line ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="RavePilot webhook dispatch: end-to-end deliveries/s vs a raw aiohttp ceiling,"
        " and event-to-receipt latency at a fixed offered rate.",
        epilog="See benchmarks/README.md.",
    )
    parser.add_argument("--backlog", type=int, default=30_000, help="deliveries to drain (30000)")
    parser.add_argument(
        "--duration",
        type=float,
        default=5.0,
        help="seconds of each raw-ceiling window, one before and one after the drain (5)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=256, help="the worker's webhook_concurrency (256)"
    )
    parser.add_argument(
        "--per-endpoint", type=int, default=64, help="the worker's webhook_per_endpoint (64)"
    )
    parser.add_argument(
        "--endpoints",
        type=int,
        default=1,
        help="endpoints on the one receiver; each event fans out to one delivery per endpoint (1)",
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s offered (1000)")
    parser.add_argument(
        "--worker-processes",
        type=int,
        default=0,
        metavar="N",
        help="run the worker as N `ravepilot worker` processes sharing the queue (as serve "
        "--no-worker plus workers), for the throughput and latency phases; 0: the worker runs "
        "in this process, beside the event producer (0)",
    )
    parser.add_argument(
        "--worker-process",
        dest="worker_processes",
        action="store_const",
        const=1,
        help="the same as --worker-processes 1",
    )
    add_database_arguments(parser)
    parser.add_argument(
        "--latency-seconds", type=float, default=10.0, help="seconds of offered load (10)"
    )
    parser.add_argument(
        "--producers", type=int, default=16, help="concurrent creators for the backlog (16)"
    )
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="this process's event loop (the in-process worker's): uvloop, as `ravepilot serve` and"
        " `ravepilot worker` run, or the stock asyncio loop they fall back to (default uvloop)",
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for a drain (300)"
    )
    parser.add_argument(
        "--profile",
        choices=("none", "py-spy", "cprofile"),
        default="none",
        help="profile this process during one phase (py-spy: pip install py-spy)",
    )
    parser.add_argument(
        "--profile-phase",
        choices=("throughput", "latency"),
        default="throughput",
        help="the phase --profile covers (throughput)",
    )
    parser.add_argument("--top", type=int, default=15, help="rows per profile table (15)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    parser.add_argument("--keep", action="store_true", help="keep the temp data dir and logs")
    args = parser.parse_args(argv)
    if min(args.backlog, args.concurrency, args.per_endpoint, args.endpoints, args.producers) < 1:
        parser.error(
            "--backlog, --concurrency, --per-endpoint, --endpoints, --producers must be >= 1"
        )
    if args.duration <= 0 or args.rate <= 0 or args.latency_seconds <= 0:
        parser.error("--duration, --rate and --latency-seconds must be positive")
    if args.worker_processes < 0:
        parser.error("--worker-processes must be >= 0")
    if args.worker_processes and args.profile == "cprofile":
        parser.error("--profile cprofile profiles this process: use py-spy for worker processes")
    if args.loop == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            args.loop = "asyncio"
    return args


def _first(group: BaseExceptionGroup[Any]) -> BaseException:
    found: BaseException = group
    while isinstance(found, BaseExceptionGroup):
        found = found.exceptions[0]
    return found


def main(argv: list[str] | None = None) -> int:
    import anyio

    args = parse_args(argv)

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    data_dir = Path(tempfile.mkdtemp(prefix="ravepilot-dispatch-"))
    db = BenchDatabase(args.database, data_dir, args.postgres_url)
    receiver: Receiver | None = None
    try:
        args.load_before = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
        db.create()
        receiver = Receiver(data_dir)
        receiver.wait_ready()
        log(f"data dir {data_dir}; receiver pid {receiver.process.pid} on {receiver.base_url}")
        if db.is_postgres:
            log(f"database: {db.url}")
        # As `ravepilot worker` and `serve` set their processes up. The ceiling's bare client
        # runs in this process too, so it gets the same collector settings as the worker.
        tune_for_serving()
        try:
            report = anyio.run(
                benchmark,
                args,
                data_dir,
                receiver,
                db,
                backend="asyncio",
                backend_options={"use_uvloop": args.loop == "uvloop"},
            )
        except BaseExceptionGroup as group:
            # Raised inside the worker's task group, an abort arrives wrapped in a group.
            aborted = group.subgroup(BenchmarkAborted)
            if aborted is None:
                raise
            raise _first(aborted) from group
    except BenchmarkAborted as exc:
        log(f"benchmark aborted: {exc}")
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        log("interrupted")
        return 130
    finally:
        if receiver is not None:
            receiver.stop()
        if args.keep:
            log(f"kept {data_dir}" + (f" and the schema {db.schema}" if db.is_postgres else ""))
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
