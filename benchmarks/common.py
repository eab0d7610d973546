"""What the benchmark scripts share: the invalid-measurement error, logging, CPU time from /proc.

The scripts run as ``python benchmarks/<name>.py``, which puts this folder on ``sys.path``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["BenchmarkAborted", "log", "machine_busy_seconds", "process_cpu_seconds", "process_name"]


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
