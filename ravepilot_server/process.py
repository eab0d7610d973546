"""Settings for the processes RavePilot's own commands run: ``serve``, its workers, ``worker``.

The core library changes nothing process-wide: an app that embeds it owns its process, and
docs/embedding.md suggests the same setting there.
"""

from __future__ import annotations

import gc

__all__ = ["GC_YOUNG_THRESHOLD", "tune_for_serving"]

#: Allocations between two collections of the youngest generation (Python's default is 700).
GC_YOUNG_THRESHOLD = 10_000


def tune_for_serving() -> None:
    """Run the cyclic garbage collector's young collections 14 times less often.

    A server and its worker allocate thousands of short-lived containers a second (requests,
    futures, rows, webhook attempts). Reference counting frees nearly all of them, but every
    young collection also walks those still in flight, and at Python's default of one per 700
    allocations that was a tenth of a webhook delivery's CPU: `benchmarks/dispatch.py` went
    from 140-148 to 130-140 µs a delivery, with p99 latency unchanged. Only cyclic garbage
    waits longer for its collection, ten thousand objects at most. The older generations keep
    their thresholds.
    """
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, oldest)
