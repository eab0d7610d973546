"""What every service shares: the backends, the clock, the keyring and a few settings."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio

from ravepilot_core.crypto import Keyring
from ravepilot_core.errors import ConfigurationError
from ravepilot_core.foreground import Foreground
from ravepilot_core.protocols import Clock, Mailer, MediaStore, Renderer, Storage, Transcriber

__all__ = ["Context", "Resolver", "WorkSignal"]

Resolver = Callable[[str], Awaitable[list[str]]]
"""Turns a host name into the IP addresses it resolves to (injected for tests: no DNS here)."""


async def resolve_with_dns(host: str) -> list[str]:
    """Return every address ``host`` resolves to, using the system resolver."""
    infos = await anyio.getaddrinfo(host, None)
    return sorted({str(info[4][0]) for info in infos})


class WorkSignal:
    """Wakes every in-process waiter when new work is committed, losing no wake-up.

    A waiter reads :attr:`generation` before it looks for work and passes it to :meth:`wait`;
    a notification that came in between makes the wait return at once.
    """

    def __init__(self) -> None:
        self.generation = 0
        self._waiters: set[anyio.Event] = set()

    def notify(self) -> None:
        """Wake everyone waiting now, and anyone about to wait on an older generation."""
        self.generation += 1
        for waiter in self._waiters:
            waiter.set()
        self._waiters.clear()

    async def wait(self, seen: int, timeout: float) -> None:
        """Return after a notification newer than ``seen``, or after ``timeout`` seconds."""
        if self.generation != seen:
            return
        waiter = anyio.Event()
        self._waiters.add(waiter)
        try:
            with anyio.move_on_after(timeout):
                await waiter.wait()
        finally:
            self._waiters.discard(waiter)


@dataclass(eq=False)
class Context:
    """The shared state of one :class:`~ravepilot_core.RavePilot` instance."""

    storage: Storage
    mailer: Mailer
    clock: Clock
    keyring: Keyring
    public_url: str
    mail_from: str
    allow_private_webhooks: bool = False
    resolver: Resolver = resolve_with_dns
    work: WorkSignal = field(default_factory=WorkSignal)
    # Requests the app is answering; in-process jobs step aside for them (foreground.py).
    foreground: Foreground = field(default_factory=Foreground)
    media_store: MediaStore | None = None
    max_upload_bytes: int = 1024**3
    transcriber: Transcriber | None = None
    renderer: Renderer | None = None
    # ffmpeg and transcribers each take a core; more at once only makes each slower.
    media_concurrency: int = 1
    _media_slots: anyio.CapacityLimiter | None = field(default=None, repr=False)

    @property
    def media_slots(self) -> anyio.CapacityLimiter:
        """How many CPU-heavy media steps (normalise, transcribe, render) run at once."""
        if self._media_slots is None:
            self._media_slots = anyio.CapacityLimiter(self.media_concurrency)
        return self._media_slots

    @property
    def media(self) -> MediaStore:
        """The media store; an instance made without one cannot take uploads."""
        if self.media_store is None:
            raise ConfigurationError(
                "this RavePilot has no media store: pass media=... (for example "
                "FileMediaStore) or set RAVEPILOT_MEDIA_URL"
            )
        return self.media_store

    def wake_worker(self) -> None:
        """Tell in-process workers that new jobs or deliveries were committed."""
        self.work.notify()

    def link_for(self, token: str, host: str | None) -> str:
        """Return the customer's recording link; a collector's custom host wins."""
        base = f"https://{host}" if host else self.public_url.rstrip("/")
        return f"{base}/r/{token}"
