"""Running RavePilot and a webhook sink as real processes, for crash and scaling tests."""

from __future__ import annotations

import os
import signal
import socket
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

from ravepilot_core import LinkRequest, RavePilot, Settings
from ravepilot_core.webhooks import NewWebhookEndpoint

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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ravepilot_env(settings: Settings) -> dict[str, str]:
    """The environment of a RavePilot process started on ``settings`` (and nothing else of ours).

    The test's own ``RAVEPILOT_*`` variables are dropped, so a developer's shell cannot leak in.
    """
    env = {name: value for name, value in os.environ.items() if not name.startswith("RAVEPILOT_")}
    env["RAVEPILOT_DATA_DIR"] = str(settings.data_dir)
    if settings.database_url is not None:
        env["RAVEPILOT_DATABASE_URL"] = settings.database_url
    if settings.secret_key is not None:
        env["RAVEPILOT_SECRET_KEY"] = settings.secret_key
    env["RAVEPILOT_ALLOW_PRIVATE_WEBHOOKS"] = str(settings.allow_private_webhooks).lower()
    return env


async def queue_deliveries(
    settings: Settings, sink_port: int, *, endpoints: int, invitations: int
) -> None:
    """In-process: ``endpoints`` endpoints on the sink, then ``invitations`` invitations.

    Each invitation.created event fans out to every endpoint: endpoints x invitations pending
    deliveries. Invitations are created 25 at a time, concurrently (commits batch up).
    """
    async with await RavePilot.from_settings(settings) as rp:
        workspace = await rp.workspaces.create("load")
        for number in range(endpoints):
            url = f"http://127.0.0.1:{sink_port}/hook/{number}"
            await rp.webhooks.create(workspace.id, NewWebhookEndpoint(url=url))

        async def invite(numbers: range) -> None:
            for number in numbers:
                request = LinkRequest(customer_email=f"customer{number}@example.com")
                await rp.invitations.create(workspace.id, request)

        async with anyio.create_task_group() as group:
            for start in range(0, invitations, 25):
                group.start_soon(invite, range(start, min(start + 25, invitations)))
