"""Foreground work: requests someone is waiting for, which background jobs step aside for.

An app that runs the job worker in the same process as its request handlers (``ravepilot serve``
does by default) counts the requests it is answering with :meth:`Foreground.serving`. A job
about to start while any is in flight first waits :data:`~ravepilot_core.jobs.STEP_ASIDE`,
once, so jobs never starve.

Why: under a burst of API calls, the emails they queue now go out a little later instead of
taking event-loop turns from the calls themselves. The worker's share of the loop follows how
many turns it gets, not how much work is waiting, and each of its write transactions cuts into
the requests' shared commits. Webhook dispatch does not step aside: deliveries are how the
business's systems learn of changes as they happen.
"""

from __future__ import annotations

from types import TracebackType

import anyio

__all__ = ["Foreground"]


class Foreground:
    """Counts requests in flight; background work pauses for them when it finds any."""

    def __init__(self) -> None:
        self.in_flight = 0

    def serving(self) -> _Serving:
        """Count a request while it runs: ``with foreground.serving(): ...``."""
        return _Serving(self)

    async def step_aside(self, pause: float) -> None:
        """Sleep ``pause`` seconds if a request is in flight, else return at once.

        With none in flight it does not even yield, so an idle server pays nothing.

        A fixed pause, not "until none is in flight": a busy server has none in flight for a
        moment between its shared commits, many times a second, and waking on those moments
        gave the worker as many turns as before.
        """
        if self.in_flight:
            await anyio.sleep(pause)


class _Serving:
    """The context manager of :meth:`Foreground.serving` (a class: cheaper than a generator)."""

    __slots__ = ("_foreground",)

    def __init__(self, foreground: Foreground) -> None:
        self._foreground = foreground

    def __enter__(self) -> None:
        self._foreground.in_flight += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._foreground.in_flight -= 1
