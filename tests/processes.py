"""Running RavePilot and a webhook sink as real processes, for crash and scaling tests."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

ROOT = Path(__file__).resolve().parents[1]
WORKER = [sys.executable, "-m", "ravepilot_server.cli", "worker"]
SINK_MAX_DELAY_MS = 20  # the receiver answers after 0-20 ms: many requests are in flight


@asynccontextmanager
async def running(
    command: list[str], *, env: dict[str, str] | None = None, stdout: int | IO[bytes], log: Path
) -> AsyncIterator[Process]:
    """Start ``command`` in the repository root; kill it on the way out if it still runs."""
    with log.open("ab") as stderr:
        process = await anyio.open_process(command, cwd=ROOT, env=env, stdout=stdout, stderr=stderr)
    async with process:
        try:
            yield process
        finally:
            if process.returncode is None:
                process.kill()
                with anyio.CancelScope(shield=True):
                    await process.wait()


@asynccontextmanager
async def sink(receipts: Path, log: Path) -> AsyncIterator[int]:
    """Run the webhook sink; yield its port; stop it with SIGTERM and check it exits cleanly."""
    command = [sys.executable, "-m", "tests.webhook_sink", "--port", "0", "--log", str(receipts)]
    command += ["--max-delay-ms", str(SINK_MAX_DELAY_MS)]
    async with running(command, stdout=subprocess.PIPE, log=log) as process:
        assert process.stdout is not None
        with anyio.fail_after(30):
            line = await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 200)
        assert line.startswith(b"listening on 127.0.0.1:"), line
        yield int(line.rsplit(b":", 1)[1])
        process.terminate()
        with anyio.fail_after(10):
            assert await process.wait() == 0, log.read_text()


async def until(
    condition: Callable[[], bool], *, timeout: float, process: Process, what: str, log: Path
) -> None:
    """Poll ``condition`` until it holds; fail if the worker exits or the time runs out."""
    try:
        with anyio.fail_after(timeout):
            while not condition():
                assert process.returncode is None, (
                    f"the worker exited ({process.returncode}) while waiting for {what}:\n"
                    + log.read_text()
                )
                await anyio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"no {what} within {timeout:g} s; worker log:\n{log.read_text()}")


async def stopped(process: Process, signum: signal.Signals, log: Path) -> int:
    """Send ``signum``; return the exit code, failing if the process outlives the timeout.

    15 s: a graceful stop waits for started attempts, each bounded by the 10 s timeout.
    """
    process.send_signal(signum)
    with anyio.move_on_after(15):
        return await process.wait()
    pytest.fail(
        f"the worker did not exit within 15 s of {signum.name}; its log:\n{log.read_text()}"
    )


def receipt_count(receipts: Path) -> int:
    """How many deliveries reached the sink so far (one line each)."""
    return receipts.read_bytes().count(b"\n")
