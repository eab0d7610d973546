"""What the benchmark scripts share: the invalid-measurement error, logging, process CPU time.

The scripts run as ``python benchmarks/<name>.py``, which puts this folder on ``sys.path``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["BenchmarkAborted", "log", "process_cpu_seconds"]


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
