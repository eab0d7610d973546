"""What the benchmark scripts share: the invalid-measurement error, logging, CPU time from /proc.

The scripts run as ``python benchmarks/<name>.py``, which puts this folder on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

__all__ = [
    "BenchmarkAborted",
    "clean_environment",
    "free_port",
    "interrupt",
    "log",
    "log_tail",
    "machine_busy_seconds",
    "process_cpu_seconds",
    "process_name",
]


class BenchmarkAborted(Exception):
    """The measurement is not valid (a process failed, too many errors, ...)."""


def log(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the report."""
    print(message, file=sys.stderr, flush=True)


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads), from /proc; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def process_name(pid: int) -> str | None:
    """The process's command name (``/proc/<pid>/comm``); None if it is gone or elsewhere."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_environment(**values: str) -> dict[str, str]:
    """This shell's environment without its RAVEPILOT_* variables, plus ``values``.

    A server or worker started by a benchmark gets only what the run configures.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAVEPILOT_")}
    env.update(values)
    return env


def log_tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a process's log file, for an error message."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def interrupt(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop ``process`` with SIGINT (uvicorn's graceful shutdown), or SIGKILL after ``timeout``."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()
