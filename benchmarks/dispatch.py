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
                (event created -> receiver answered 200 -> result recorded)
    ceiling     the same window again; the ratio is against the mean of the two, and their
                spread says how steady the machine was
    latency     with the worker running, create --rate invitations a second (open loop, paced
                by the clock) for --latency-seconds; event-to-receipt latency is the receiver's
                receipt time minus the event's created_at (same machine clock)

The receiver is ``benchmarks/receiver.py`` in a subprocess (its own core): a bare asyncio
Protocol with httptools on uvloop that answers ``200 OK`` and records (delivery id, receipt
time). The core runs on SQLite (the embedded default) in a fresh temporary data dir.

Targets (from the issue, on this 2-core machine with SQLite): >= 5,000 deliveries/s sustained,
>= 0.5x the raw ceiling, p99 <= 50 ms at 1,000 events/s. The script prints PASS/MISS and exits 0
either way; it exits non-zero only when the measurement is invalid (the receiver did not start,
deliveries failed or went missing, the backlog did not drain in time, ...).

    python benchmarks/dispatch.py
    python benchmarks/dispatch.py --backlog 60000 --json
    python benchmarks/dispatch.py --profile py-spy      # where the worker's CPU goes
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

from common import BenchmarkAborted, log, process_cpu_seconds

HERE = Path(__file__).resolve().parent
TARGET_DELIVERIES_PER_SECOND = 5000
TARGET_RATIO = 0.5
TARGET_P99_MS = 50.0
MAX_ERROR_RATE = 0.01
POLL_SECONDS = 0.1  # how often the throughput phase counts what is still pending


def machine_busy_seconds() -> float | None:
    """CPU seconds all CPUs have spent busy since boot (everything but idle and iowait)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    busy = sum(fields[:8]) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used between start() and stop(), as % of one core: this process (the worker or the
    raw client), the receiver, and everything else on the machine (other processes share these
    two cores and move the figures; a large "others" figure flags a noisy window)."""

    def __init__(self, receiver_pid: int) -> None:
        self._pid = receiver_pid
        self._wall = 0.0
        self._own = 0.0
        self._receiver: float | None = None
        self._machine: float | None = None

    def start(self) -> None:
        self._wall = time.perf_counter()
        self._own = time.process_time()
        self._receiver = process_cpu_seconds(self._pid)
        self._machine = machine_busy_seconds()

    def stop(self) -> dict[str, float | None]:
        wall = time.perf_counter() - self._wall
        own = 100 * (time.process_time() - self._own) / wall
        receiver = machine = None
        receiver_now, machine_now = process_cpu_seconds(self._pid), machine_busy_seconds()
        if receiver_now is not None and self._receiver is not None:
            receiver = 100 * (receiver_now - self._receiver) / wall
        if machine_now is not None and self._machine is not None:
            machine = 100 * (machine_now - self._machine) / wall
        others = None if machine is None or receiver is None else max(0, machine - own - receiver)
        return {
            "bench_cpu_seconds": round(own * wall / 100, 3),
            "bench_cpu": round(own),
            "receiver_cpu": _round(receiver, 0),
            "others_cpu": _round(others, 0),
        }


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
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                self.process.wait()
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
    """Profiles this process during one phase: py-spy (sampling) or cProfile."""

    def __init__(self, kind: str, phase: str, data_dir: Path, top: int) -> None:
        self.kind = kind
        self.phase = phase
        self.top = top
        self._output = data_dir / "py-spy.txt"
        self._process: subprocess.Popen[bytes] | None = None
        self._tracer: Any = None

    def start(self, phase: str) -> None:
        if phase != self.phase:
            return
        if self.kind == "py-spy":
            spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            if not Path(spy).exists():
                raise BenchmarkAborted("--profile py-spy needs: pip install py-spy")
            # --nonblocking: do not pause the worker to sample it, so it runs at full speed;
            # raw output is one collapsed stack per line with its sample count.
            self._process = subprocess.Popen(
                [
                    spy,
                    "record",
                    "--pid",
                    str(os.getpid()),
                    "--rate",
                    "250",
                    "--nonblocking",
                    "--format",
                    "raw",
                    "--output",
                    str(self._output),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            time.sleep(0.5)  # let it attach before the phase starts
            if self._process.poll() is not None:
                assert self._process.stderr is not None
                raise BenchmarkAborted(
                    f"py-spy could not attach: {self._process.stderr.read().decode()[-500:]}"
                )
        elif self.kind == "cprofile":
            import cProfile

            self._tracer = cProfile.Profile()
            self._tracer.enable()

    def stop(self) -> None:
        """Stop profiling (nothing happens unless start() began it)."""
        if self._process is not None and self._process.returncode is None:
            self._process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._tracer is not None:
            self._tracer.disable()

    def report(self) -> str:
        if self.kind == "py-spy":
            return self._report_py_spy()
        if self.kind == "cprofile":
            return self._report_cprofile()
        return ""

    def _report_py_spy(self) -> str:
        try:
            lines = self._output.read_text().splitlines()
        except OSError:
            return "py-spy wrote no output"
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
        out = [
            f"py-spy: {samples} samples of the event-loop thread during the {self.phase} phase"
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
    """Frames every sample passes through: the loop, anyio's task wrapper, this script."""
    path = _frame_file(frame)
    return (
        path in ("dispatch.py", "threading.py")
        or path.startswith(("asyncio/", "uvloop/", "anyio/_core/_tasks.py"))
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


def sample_delivery(db_path: Path) -> tuple[str, bytes]:
    """One pending delivery's id and its event's payload: the raw ceiling sends the same."""
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        row = db.execute(
            "SELECT d.id, e.payload FROM rp_deliveries d JOIN rp_events e ON e.id = d.event_id "
            "LIMIT 1"
        ).fetchone()
    if row is None:
        raise BenchmarkAborted("the backlog is empty")
    payload = row[1]
    return row[0], payload.encode() if isinstance(payload, str) else bytes(payload)


def status_counts(db_path: Path, since_ms: int = 0) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        return dict(
            db.execute(
                "SELECT status, COUNT(*) FROM rp_deliveries WHERE created_at >= ? GROUP BY status",
                (since_ms,),
            ).fetchall()
        )


def delivery_created_ms(db_path: Path, since_ms: int) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        return dict(
            db.execute(
                "SELECT id, created_at FROM rp_deliveries WHERE created_at >= ?", (since_ms,)
            ).fetchall()
        )


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


class PendingCounter:
    """Counts pending deliveries on its own read-only connection, in a thread.

    Not through ``rp.storage``: that would run the COUNT (about 2 ms over a 30,000-row backlog)
    on the worker's event loop, ten times a second. sqlite3 releases the GIL while a statement
    runs, so from a thread the count costs the worker next to nothing.
    """

    def __init__(self, db_path: Path) -> None:
        self._db = sqlite3.connect(
            f"file:{db_path}?mode=ro", uri=True, check_same_thread=False, timeout=10
        )

    def _count(self) -> int:
        return int(
            self._db.execute(
                "SELECT COUNT(*) FROM rp_deliveries WHERE status = 'pending'"
            ).fetchone()[0]
        )

    async def pending(self) -> int:
        import anyio

        return await anyio.to_thread.run_sync(self._count)

    def close(self) -> None:
        self._db.close()


async def throughput(
    counter: PendingCounter, backlog: int, timeout: float
) -> tuple[dict[str, Any], list[tuple[float, int]]]:
    """With the worker just started: poll until the backlog is recorded; the rate series."""
    perf = time.perf_counter
    started = perf()
    series: list[tuple[float, int]] = [(0.0, 0)]
    while True:
        await asyncio.sleep(POLL_SECONDS)
        pending = await counter.pending()
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


def start_worker_process(data_dir: Path) -> subprocess.Popen[str]:
    """Start `ravepilot worker` on the benchmark's data dir; return once it is waiting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAVEPILOT_")}
    env.update(RAVEPILOT_DATA_DIR=str(data_dir), RAVEPILOT_ALLOW_PRIVATE_WEBHOOKS="true")
    process = subprocess.Popen(
        [sys.executable, "-m", "ravepilot_server.cli", "worker"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        if "worker started" in line:
            return process
    raise BenchmarkAborted(f"`ravepilot worker` did not start (exit code {process.wait()})")


def stop_worker_process(process: subprocess.Popen[str]) -> float | None:
    """Stop the worker with SIGTERM (it finishes what it started); return its CPU seconds."""
    cpu = process_cpu_seconds(process.pid)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    if process.stderr is not None:
        process.stderr.close()
    return cpu


async def wait_drained(counter: PendingCounter, timeout: float) -> float:
    started = time.perf_counter()
    while await counter.pending():
        if time.perf_counter() - started > timeout:
            raise BenchmarkAborted(f"deliveries were still pending {timeout:.0f} s after the load")
        await asyncio.sleep(0.05)
    return time.perf_counter() - started


async def benchmark(args: argparse.Namespace, data_dir: Path, receiver: Receiver) -> dict[str, Any]:
    import aiohttp
    import anyio

    from ravepilot_core import NewWebhookEndpoint, RavePilot, Settings
    from ravepilot_core.signing import Signer

    # SIGTERM cancels the run, as Ctrl-C does. A handler that raised inside the loop would land
    # in whatever callback was running (an aiohttp transport's, say) and break only that.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    meter = CpuMeter(receiver.process.pid)
    db_path = data_dir / "ravepilot.db"
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
        }
    }
    settings = Settings(data_dir=data_dir, allow_private_webhooks=True)
    # The core logs a warning for allow_private_webhooks; that is expected here.
    async with (
        await RavePilot.from_settings(settings) as rp,
        aiohttp.ClientSession() as control_session,
    ):
        if not db_path.exists():
            raise BenchmarkAborted(f"expected the SQLite database at {db_path}")
        workspace = await rp.workspaces.create("bench")
        secret = ""
        for number in range(args.endpoints):
            _, secret = await rp.webhooks.create(
                workspace.id,
                NewWebhookEndpoint(url=f"{receiver.base_url}/hook/{number}", events=["*"]),
            )

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
        delivery_id, payload = sample_delivery(db_path)
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
            window.update(meter.stop())
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
        profiler = Profiler(args.profile, args.profile_phase, data_dir, args.top)
        counter = PendingCounter(db_path)
        worker = rp.worker(
            webhook_concurrency=args.concurrency, webhook_per_endpoint=args.per_endpoint
        )
        log(f"throughput: the worker drains {backlog:,} deliveries ...")
        in_process_worker = anyio.CancelScope()

        async def run_worker() -> None:
            with in_process_worker:
                await worker.run()

        async with anyio.create_task_group() as group:
            profiler.start("throughput")
            meter.start()
            group.start_soon(run_worker)  # after the meter: the phase starts with the worker
            result, series = await throughput(counter, backlog, args.timeout)
            result.update(meter.stop())
            result["cpu_us_each"] = 1e6 * result["bench_cpu_seconds"] / backlog
            profiler.stop()
            steady, low, high = middle_rate(series, backlog)
            fifths = rates_by_fifth(series, backlog)
            stats = await control(control_session, receiver, "/_stats")
            dump = await control(control_session, receiver, "/_receipts")
            ids = [r[0] for r in dump["receipts"]]
            statuses = status_counts(db_path)
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
            separate = None
            if args.worker_process:
                # As `ravepilot serve --no-worker` beside `ravepilot worker`: the producer (an
                # API process) and the worker each get a core; the worker hears the producer's
                # commits through SQLite's data_version.
                in_process_worker.cancel()
                separate = start_worker_process(data_dir)
            profiler.start("latency")
            meter.start()
            offered = await offered_load(rp, workspace.id, args.rate, args.latency_seconds)
            offered.update(meter.stop())
            profiler.stop()
            # What the worker had not recorded yet when the load stopped: 0 to a few dozen
            # when it keeps up, a growing queue when it does not.
            offered["pending_at_end_of_load"] = await counter.pending()
            drain = await wait_drained(counter, args.timeout)
            dump = await control(control_session, receiver, "/_receipts")
            group.cancel_scope.cancel()  # stop the worker (it records what it started first)
            if separate is not None:
                offered["worker_process_cpu_seconds"] = stop_worker_process(separate)
        counter.close()
        if args.profile != "none":
            report["profile"] = profiler.report()

        created = delivery_created_ms(db_path, since_ms)
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

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}%"

    lines = [
        "RavePilot webhook dispatch benchmark",
        f"  worker: rp.worker().run() in this process on {s['loop']}, SQLite {v['sqlite']} in a "
        f"temp dir, webhook_concurrency {s['webhook_concurrency']}, webhook_per_endpoint "
        f"{s['webhook_per_endpoint']}; {s['endpoints']} endpoint(s) on one receiver, so up to "
        f"{s['in_flight']} requests in flight",
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
    header = (
        "measurement",
        "count",
        "seconds",
        "per second",
        "vs ceiling",
        "bench CPU",
        "rcv CPU",
        "others",
        "CPU µs each",
    )

    def ceiling_row(which: str) -> tuple[str, ...]:
        w = c[which]
        return (
            f"raw ceiling {which}: bare aiohttp, {s['in_flight']} in flight",
            f"{w['requests']:,}",
            f"{w['seconds']:.1f}",
            f"{w['rps']:,.0f}",
            f"{w['rps'] / c['rps']:.2f}x",
            pct(w["bench_cpu"]),
            pct(w["receiver_cpu"]),
            pct(w["others_cpu"]),
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
            pct(t["bench_cpu"]),
            pct(t["receiver_cpu"]),
            pct(t["others_cpu"]),
            f"{t['cpu_us_each']:.0f}",
        ),
        (
            "  steady state (20% -> 80% done)",
            f"{int(0.6 * t['deliveries']):,}",
            f"{t['steady_window'][1] - t['steady_window'][0]:.1f}",
            f"{t['steady_rate']:,.0f}",
            f"{t['steady_ratio_to_ceiling']:.2f}x",
            "",
            "",
            "",
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
        f"  CPU per request of the bare client / CPU per delivery of the worker: "
        f"{t['cpu_ratio_to_ceiling']:.2f}x (the ratio if each had a core of its own)",
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
        f"{pct(lat['bench_cpu'])}, receiver {pct(lat['receiver_cpu'])}, others "
        f"{pct(lat['others_cpu'])}",
        "",
    ]
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
    lines.append(
        "(benchmarks do not gate: the exit code is 0 either way; CPU columns are % of one core "
        "over the window: bench = this process, i.e. the worker or the raw client; others = the"
        " rest of the machine, which shares the 2 cores and moves the figures)"
    )
    if report.get("profile"):
        lines += ["", report["profile"]]
    return "\n".join(lines)


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
        "--worker-process",
        action="store_true",
        help="latency phase with `ravepilot worker` in its own process (as serve --no-worker "
        "plus a worker), instead of the worker in the producer's process",
    )
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
        help="the worker's event loop: uvloop, as under `ravepilot serve` (uvicorn), or asyncio,"
        " as under `ravepilot worker` (default uvloop when installed)",
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
    receiver: Receiver | None = None
    try:
        args.load_before = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
        receiver = Receiver(data_dir)
        receiver.wait_ready()
        log(f"data dir {data_dir}; receiver pid {receiver.process.pid} on {receiver.base_url}")
        try:
            report = anyio.run(
                benchmark,
                args,
                data_dir,
                receiver,
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
            log(f"kept {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
