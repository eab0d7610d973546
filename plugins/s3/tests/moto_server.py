"""A moto S3 server on loopback, in a subprocess that exits by itself when its parent dies.

``moto_server`` is moto's Flask app; it keeps everything in memory and accepts any credentials,
so nothing here needs a cloud account. Its log goes to a file (a pipe nobody reads would fill up
and stall it).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "moto_server is not installed: pip install 'moto[server]' (or 'plugins/s3[test]')"

# Run as `python -c WATCHDOG <parent pid> <port>`: moto in the foreground, and a thread that
# exits the process as soon as the parent is gone (killed pytest, crashed CI job), so no server
# outlives the run that started it.
WATCHDOG = """
import os, sys, threading, time
parent = int(sys.argv[1])
def watch():
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
from moto.server import main
main(["-H", "127.0.0.1", "-p", sys.argv[2]])
"""


def moto_installed() -> bool:
    """Whether moto and the Flask bits of its ``server`` extra can be imported."""
    return all(importlib.util.find_spec(name) for name in ("moto", "flask", "flask_cors"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class MotoServer:
    """A running moto server."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def endpoint(self) -> str:
        """The S3 API's address, for ``endpoint_url=``."""
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self) -> str:
        """The end of the server's output, for failure messages."""
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def create_bucket(self, name: str) -> None:
        """Create a bucket with a plain ``PUT /bucket`` (moto does not check signatures)."""
        request = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200, response.status

    def stop(self) -> None:
        """Terminate the server and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_moto(log: Path, *, parent: int | None = None, timeout: float = 30.0) -> MotoServer:
    """Start moto_server on a free port and wait until it answers.

    Args:
        log: Where the server's output goes.
        parent: The process whose death stops the server (this one by default).
        timeout: Seconds to wait for the server to answer.

    Raises:
        RuntimeError: If the server exits or does not answer in time (with its output).
    """
    port = free_port()
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-c", WATCHDOG, str(parent or os.getpid()), str(port)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = MotoServer(process, port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"moto_server exited with {process.returncode}:\n{server.log_tail()}"
            )
        try:
            with urllib.request.urlopen(f"{server.endpoint}/moto-api/", timeout=2):
                return server
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"moto_server did not answer within {timeout}s:\n{server.log_tail()}")
