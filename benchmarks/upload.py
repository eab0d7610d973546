#!/usr/bin/env python
"""tus upload throughput on loopback, and the server's memory while it receives a big clip.

Everything is measured in ONE run, against ONE ``ravepilot serve`` process (SQLite and the
``file://`` media store in a fresh temporary data dir, ``--no-worker``, loopback, uvicorn's
defaults). The client is aiohttp in this process; every body is streamed from a generator that
repeats one 1 MiB random block (its first bytes the webm magic the server sniffs), so neither
side ever holds the clip. Per repeat, in this order, so machine noise falls on all alike:

    file       baseline: this process writes the same bytes to a file in the same data dir and
               fsyncs it, as the file store does: what the disk takes on this machine
    discard    baseline: the same aiohttp PATCH, whole clip in one body, to a bare ASGI app on
               the same uvicorn (httptools, uvloop) that reads the body and drops it: loopback
    single     tus: POST (creation), then the whole clip in ONE PATCH
    chunked    tus: POST, then PATCHes of --chunk-mb each (each fsynced by the server)

The server's memory is read from /proc/<pid>/status: VmRSS every ~20 ms by a sampling thread,
and VmHWM (the kernel's own peak) after resetting it with ``echo 5 > /proc/<pid>/clear_refs``
at the start of each upload, so a spike between two samples is not missed. "growth" is that
peak minus the RSS after the warm-up (two small uploads before anything is measured).

After each tus upload the script checks that the session shows the clip with the right size
and that the stored file's SHA-256 equals the payload's (outside the timed window).

Targets: each tus scenario >= 100 MB/s, and the server's RSS grows by < 50 MB. MB = 10^6
bytes throughout. Prints PASS/MISS and exits 0 either way; exits 1 only when the measurement is
invalid (the server did not start, an upload failed, the stored clip is wrong).

    python benchmarks/upload.py                       # 500 MB, twice; about 1 minute
    python benchmarks/upload.py --repeat 3 --chunk-mb 16
    python benchmarks/upload.py --size-mb 100 --json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from common import (
    BenchmarkAborted,
    clean_environment,
    free_port,
    interrupt,
    log,
    log_tail,
    machine_busy_seconds,
    process_cpu_seconds,
)

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "ravepilot_server.cli"]
MB = 1_000_000
BLOCK = 1024 * 1024  # the payload repeats one random block of this size
WEBM_MAGIC = b"\x1a\x45\xdf\xa3"
SAMPLE_SECONDS = 0.02
TARGET_MB_S = 100.0
TARGET_GROWTH_MB = 50.0
WARMUP_BYTES = 8 * MB
TUS = {"Tus-Resumable": "1.0.0"}
SCENARIOS = ("file", "discard", "single", "chunked")
BASELINES = ("file", "discard")


# -- the payload ----------------------------------------------------------------------------------


class Payload:
    """``size`` bytes: one random 1 MiB block over and over, starting with the webm magic."""

    def __init__(self, size: int) -> None:
        block = bytearray(os.urandom(BLOCK))
        block[: len(WEBM_MAGIC)] = WEBM_MAGIC
        self.size = size
        self._block = memoryview(bytes(block))

    def pieces(self, start: int, stop: int) -> Iterator[memoryview]:
        """Bytes ``start`` to ``stop`` of the payload, at most one block at a time (no copies)."""
        position = start
        while position < stop:
            at = position % BLOCK
            piece = self._block[at : min(BLOCK, at + stop - position)]
            yield piece
            position += len(piece)

    async def stream(self, start: int, stop: int) -> AsyncIterator[memoryview]:
        """:meth:`pieces` as aiohttp's streaming request body."""
        for piece in self.pieces(start, stop):
            yield piece

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for piece in self.pieces(0, self.size):
            digest.update(piece)
        return digest.hexdigest()


# -- processes: the server, the discard server, their memory --------------------------------------


class Process:
    """A subprocess in its own session, logging to a file; stopped with SIGINT, then SIGKILL."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches only us, and we stop it in order
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def check_running(self) -> None:
        if self.popen.poll() is not None:
            raise BenchmarkAborted(
                f"{self.log_path.stem} exited with {self.popen.returncode}:\n"
                + log_tail(self.log_path)
            )

    def stop(self) -> None:
        interrupt(self.popen, timeout=15)
        self._log.close()


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in kB (the kernel's kB are KiB)."""
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0])
    return found


def reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (Linux >= 4.0); False when not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as clear:
            clear.write("5")
        return True
    except OSError:
        return False


class RssSampler:
    """A thread reading VmRSS every :data:`SAMPLE_SECONDS`; :attr:`peak_kb` is the highest."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, KeyError):
                self.peak_kb = max(self.peak_kb, memory_kb(self.pid)["VmRSS"])
                self.samples += 1
            self._stop.wait(SAMPLE_SECONDS)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def cli(args: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(
        CLI + args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        raise BenchmarkAborted(f"ravepilot {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout.strip()


# -- the discard server ---------------------------------------------------------------------------


async def discard_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI: read the whole request body, keep none of it, answer 204 with its length."""
    if scope["type"] != "http":
        return
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        received += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    headers = [(b"upload-offset", str(received).encode())]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def serve_discard(port: int) -> None:
    """Serve :func:`discard_app` like ``ravepilot serve`` serves RavePilot (uvicorn defaults)."""
    import uvicorn

    uvicorn.run(discard_app, host="127.0.0.1", port=port, lifespan="off")


# -- the measurements -----------------------------------------------------------------------------


@dataclass
class Run:
    scenario: str
    repeat: int
    seconds: float
    mb_s: float
    patches: int = 0
    rss_before_mb: float | None = None
    rss_peak_mb: float | None = None
    rss_after_mb: float | None = None
    growth_mb: float | None = None  # peak minus the RSS after the warm-up
    server_cpu_s: float | None = None
    machine_busy_cores: float | None = None


class Bench:
    """The server, the discard server, the client session and the invitation, for one run."""

    def __init__(self, args: argparse.Namespace, data_dir: Path, session: Any) -> None:
        self.args = args
        self.data_dir = data_dir
        self.session = session
        self.payload = Payload(args.size_mb * MB)
        self.chunk = args.chunk_mb * MB
        self.expected_sha256 = ""
        self.server: Process | None = None
        self.discard: Process | None = None
        self.base_url = ""
        self.discard_url = ""
        self.token = ""
        self.warm_rss_kb = 0
        self.exact_peak = False

    # -- setting up

    async def start(self) -> None:
        port, discard_port = free_port(), free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        self.discard_url = f"http://127.0.0.1:{discard_port}"
        env = clean_environment(
            RAVEPILOT_DATA_DIR=str(self.data_dir / "data"),
            RAVEPILOT_PUBLIC_URL=self.base_url,
            # The default limit is 1 GiB; --size-mb may ask for more.
            RAVEPILOT_MAX_CLIP_BYTES=str(max(1024**3, self.payload.size)),
        )
        # The workspace exists before the first start, so serve creates nothing and prints no key.
        cli(["workspaces", "create", "default"], env)
        key = cli(["keys", "create", "--workspace", "default", "--name", "upload bench"], env)
        self.server = Process(
            [*CLI, "serve", "--port", str(port), "--no-worker"], env, self.data_dir / "server.log"
        )
        self.discard = Process(
            [sys.executable, __file__, "--serve-discard", str(discard_port)],
            clean_environment(),
            self.data_dir / "discard.log",
        )
        log(f"server pid {self.server.pid} on {self.base_url}; discard on {self.discard_url}")
        await self._wait_ready(self.server, f"{self.base_url}/health")
        await self._wait_ready(self.discard, self.discard_url)
        self.exact_peak = reset_peak(self.server.pid)
        self.token = await self._invite_with_consent(key)

    async def _wait_ready(self, process: Process, url: str, timeout: float = 60) -> None:
        import aiohttp

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process.check_running()
            try:
                async with self.session.get(url) as response:
                    await response.read()
                    return
            except (aiohttp.ClientError, OSError):
                await asyncio.sleep(0.1)
        raise BenchmarkAborted(f"{url} did not answer within {timeout:.0f} s")

    async def _invite_with_consent(self, key: str) -> str:
        body = {"customer_email": "upload-bench@example.com", "send_email": False}
        headers = {"Authorization": f"Bearer {key}"}
        async with self.session.post(
            f"{self.base_url}/v1/invitations", json=body, headers=headers
        ) as response:
            if response.status != 201:
                raise BenchmarkAborted(f"invitation: {response.status} {await response.text()}")
            token: str = (await response.json())["invite_token"]
        async with self.session.post(
            f"{self.base_url}/r/{token}/api/consent", json={"accepted": True}
        ) as response:
            if response.status != 200:
                raise BenchmarkAborted(f"consent: {response.status} {await response.text()}")
        return token

    # -- the tus client

    async def tus_upload(self, payload: Payload, chunk: int) -> tuple[str, int]:
        """Create an upload and send ``payload`` in PATCHes of ``chunk``; return (url, PATCHes)."""
        metadata = ",".join(
            f"{name} {base64.b64encode(value.encode()).decode()}"
            for name, value in (
                ("script_key", "intro"),
                ("filetype", "video/webm"),
                ("filename", "bench.webm"),
            )
        )
        headers = {**TUS, "Upload-Length": str(payload.size), "Upload-Metadata": metadata}
        async with self.session.post(
            f"{self.base_url}/r/{self.token}/uploads/", headers=headers
        ) as response:
            if response.status != 201:
                raise BenchmarkAborted(f"creation: {response.status} {await response.text()}")
            url = self.base_url + response.headers["Location"]
        offset = patches = 0
        while offset < payload.size:
            offset = await self._patch(url, payload, offset, min(payload.size, offset + chunk))
            patches += 1
        return url, patches

    async def _patch(self, url: str, payload: Payload, start: int, stop: int) -> int:
        headers = {
            **TUS,
            "Upload-Offset": str(start),
            "Content-Type": "application/offset+octet-stream",
            # Announced, so aiohttp streams the generator as is rather than chunk-encoding it.
            "Content-Length": str(stop - start),
        }
        async with self.session.patch(
            url, data=payload.stream(start, stop), headers=headers
        ) as response:
            if response.status != 204:
                raise BenchmarkAborted(
                    f"PATCH at {start}: {response.status} {await response.text()}"
                )
            offset = int(response.headers["Upload-Offset"])
        if offset != stop:
            raise BenchmarkAborted(f"PATCH {start}-{stop} left the offset at {offset}")
        return offset

    async def verify(self, url: str, payload: Payload, expected_sha256: str) -> None:
        """The session shows the clip at its size, and the stored file holds the payload."""
        async with self.session.get(f"{self.base_url}/r/{self.token}/api/session") as response:
            clips = (await response.json())["clips"]
        sizes = [(clip["script_key"], clip["size_bytes"]) for clip in clips]
        if sizes != [("intro", payload.size)]:
            raise BenchmarkAborted(f"the session shows {sizes}, not one clip of {payload.size}")
        upload_id = url.rsplit("/", 1)[1]
        media = self.data_dir / "data" / "media"
        stored = [p for p in media.rglob(upload_id) if ".uploads" not in p.parts]
        if len(stored) != 1:
            raise BenchmarkAborted(f"expected one stored file for {upload_id}, found {stored}")
        digest = await asyncio.to_thread(_sha256_file, stored[0])
        if digest != expected_sha256:
            raise BenchmarkAborted(f"{stored[0]} does not hold the bytes sent")
        # The retake of the next run would replace it, but with --no-worker nothing deletes the
        # replaced file: remove it now (untimed) so the disk does not fill up.
        await asyncio.to_thread(stored[0].unlink)

    # -- the scenarios

    async def warm_up(self) -> None:
        """Two small uploads and a discard, so lazy imports and first-time work are done."""
        assert self.server is not None
        small = Payload(WARMUP_BYTES)
        digest = small.sha256()
        for chunk in (WARMUP_BYTES, WARMUP_BYTES // 2):
            url, _ = await self.tus_upload(small, chunk)
            await self.verify(url, small, digest)
        await self._patch(self.discard_url, small, 0, small.size)
        await asyncio.sleep(0.5)  # let the allocator settle before the baseline is read
        self.warm_rss_kb = memory_kb(self.server.pid)["VmRSS"]

    async def measure(self, scenario: str, repeat: int) -> Run:
        assert self.server is not None
        pid = self.server.pid
        size = self.payload.size
        before = memory_kb(pid)["VmRSS"]
        reset_peak(pid)
        cpu_before, busy_before = process_cpu_seconds(pid), machine_busy_seconds()
        patches = 0
        url = ""
        with RssSampler(pid) as sampler:
            started = time.perf_counter()
            if scenario == "file":
                await asyncio.to_thread(self._write_file, self.data_dir / "baseline.bin")
            elif scenario == "discard":
                await self._patch(self.discard_url, self.payload, 0, size)
                patches = 1
            else:
                chunk = size if scenario == "single" else self.chunk
                url, patches = await self.tus_upload(self.payload, chunk)
            seconds = time.perf_counter() - started
        cpu_after, busy_after = process_cpu_seconds(pid), machine_busy_seconds()
        run = Run(scenario, repeat, round(seconds, 3), round(size / seconds / MB, 1), patches)
        if busy_before is not None and busy_after is not None:
            run.machine_busy_cores = round((busy_after - busy_before) / seconds, 2)
        if scenario in BASELINES:
            (self.data_dir / "baseline.bin").unlink(missing_ok=True)
            return run
        after = memory_kb(pid)
        peak_kb = max(sampler.peak_kb, after["VmHWM"] if self.exact_peak else 0)
        run.rss_before_mb = round(before * 1024 / MB, 1)
        run.rss_peak_mb = round(peak_kb * 1024 / MB, 1)
        run.rss_after_mb = round(after["VmRSS"] * 1024 / MB, 1)
        run.growth_mb = round((peak_kb - self.warm_rss_kb) * 1024 / MB, 1)
        if cpu_before is not None and cpu_after is not None:
            run.server_cpu_s = round(cpu_after - cpu_before, 2)
        await self.verify(url, self.payload, self.expected_sha256)
        return run

    def _write_file(self, path: Path) -> None:
        """The disk baseline: write the payload and fsync, as the file store's append does."""
        with open(path, "wb") as file:
            for piece in self.payload.pieces(0, self.payload.size):
                file.write(piece)
            file.flush()
            os.fsync(file.fileno())

    def stop(self) -> None:
        for process in (self.server, self.discard):
            if process is not None:
                process.stop()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while piece := file.read(BLOCK):
            digest.update(piece)
    return digest.hexdigest()


async def benchmark(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    import aiohttp

    # No client timeout: a 500 MB PATCH may take a while; a hang is the server's fault, and
    # Ctrl-C stops it. One connection at a time is all the client uses.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        bench = Bench(args, data_dir, session)
        try:
            await bench.start()
            log("warming up ...")
            await bench.warm_up()
            bench.expected_sha256 = await asyncio.to_thread(bench.payload.sha256)
            assert bench.server is not None
            log(
                f"server RSS after warm-up {bench.warm_rss_kb * 1024 / MB:.1f} MB; peak "
                + ("from VmHWM (reset per run) and samples" if bench.exact_peak else "sampled")
            )
            runs: list[Run] = []
            for repeat in range(1, args.repeat + 1):
                for scenario in SCENARIOS:
                    bench.server.check_running()
                    run = await bench.measure(scenario, repeat)
                    log(f"  {scenario:8} #{repeat}: {run.mb_s:7.1f} MB/s in {run.seconds:.2f} s")
                    runs.append(run)
        finally:
            bench.stop()
    return report(args, bench, runs)


def report(args: argparse.Namespace, bench: Bench, runs: list[Run]) -> dict[str, Any]:
    median = {
        scenario: statistics.median(r.mb_s for r in runs if r.scenario == scenario)
        for scenario in SCENARIOS
    }
    growth = max(r.growth_mb for r in runs if r.growth_mb is not None)
    targets = {
        f"{scenario} >= {TARGET_MB_S:g} MB/s": median[scenario] >= TARGET_MB_S
        for scenario in ("single", "chunked")
    }
    targets[f"RSS growth < {TARGET_GROWTH_MB:g} MB"] = growth < TARGET_GROWTH_MB
    return {
        "size_mb": args.size_mb,
        "chunk_mb": args.chunk_mb,
        "repeat": args.repeat,
        "warm_rss_mb": round(bench.warm_rss_kb * 1024 / MB, 1),
        "peak_from": "VmHWM+samples" if bench.exact_peak else "samples",
        "median_mb_s": median,
        "ratio_to_file": {s: round(median[s] / median["file"], 2) for s in ("single", "chunked")},
        "ratio_to_discard": {
            s: round(median[s] / median["discard"], 2) for s in ("single", "chunked")
        },
        "max_growth_mb": growth,
        "targets": targets,
        "runs": [asdict(run) for run in runs],
        "versions": versions(),
        "load_before": args.load_before,
    }


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("uvicorn", "httptools", "uvloop", "litestar", "aiohttp", "anyio"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "-"
    return found


def render(report: dict[str, Any]) -> str:
    lines = [
        f"tus upload of {report['size_mb']} MB on loopback; chunked = PATCHes of "
        f"{report['chunk_mb']} MB; {report['repeat']} repeat(s); load before "
        f"{report['load_before']}",
        "",
        f"{'scenario':10} {'#':>2} {'MB/s':>8} {'s':>7} {'PATCHes':>7} {'RSS before':>10} "
        f"{'peak':>7} {'after':>7} {'growth':>7} {'srv CPU s':>9} {'busy cores':>10}",
    ]

    def figure(value: float | None, width: int) -> str:
        return f"{'-' if value is None else value:>{width}}"

    for run in report["runs"]:
        lines.append(
            f"{run['scenario']:10} {run['repeat']:>2} {run['mb_s']:>8.1f} {run['seconds']:>7.2f} "
            f"{run['patches']:>7} {figure(run['rss_before_mb'], 10)} "
            f"{figure(run['rss_peak_mb'], 7)} {figure(run['rss_after_mb'], 7)} "
            f"{figure(run['growth_mb'], 7)} {figure(run['server_cpu_s'], 9)} "
            f"{figure(run['machine_busy_cores'], 10)}"
        )
    median = report["median_mb_s"]
    lines += [
        "",
        "median MB/s: " + ", ".join(f"{s} {median[s]:.1f}" for s in SCENARIOS),
        "ratio to file (disk) baseline: "
        + ", ".join(f"{s} {r:.2f}x" for s, r in report["ratio_to_file"].items()),
        "ratio to discard (loopback HTTP) baseline: "
        + ", ".join(f"{s} {r:.2f}x" for s, r in report["ratio_to_discard"].items()),
        f"server RSS after warm-up {report['warm_rss_mb']} MB; largest growth while receiving "
        f"{report['max_growth_mb']} MB (peak from {report['peak_from']})",
        "",
    ]
    lines += [f"{'PASS' if met else 'MISS'}  {name}" for name, met in report["targets"].items()]
    lines.append(" ".join(f"{k} {v}" for k, v in report["versions"].items()))
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=500, help="clip size (default 500)")
    parser.add_argument(
        "--chunk-mb", type=int, default=64, help="bytes per PATCH when chunked (default 64)"
    )
    parser.add_argument("--repeat", type=int, default=2, help="runs of each scenario (default 2)")
    parser.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    parser.add_argument("--serve-discard", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.size_mb < 1 or args.chunk_mb < 1 or args.repeat < 1:
        parser.error("--size-mb, --chunk-mb and --repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_discard is not None:
        serve_discard(args.serve_discard)
        return 0

    # SIGTERM gets the same clean-up as Ctrl-C.
    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    args.load_before = round(os.getloadavg()[0], 2)
    data_dir = Path(tempfile.mkdtemp(prefix="ravepilot-upload-bench-"))
    log(f"data dir {data_dir}")
    try:
        result = asyncio.run(benchmark(args, data_dir))
    except BenchmarkAborted as exc:
        log(f"benchmark aborted: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        if args.keep:
            log(f"kept {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
