"""What every service shares: the backends, the clock, the keyring and a few settings."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio

from ravepilot_core.crypto import Keyring
from ravepilot_core.protocols import Clock, Mailer, Storage

__all__ = ["Context", "Resolver"]

Resolver = Callable[[str], Awaitable[list[str]]]
"""Turns a host name into the IP addresses it resolves to (injected for tests: no DNS here)."""


async def resolve_with_dns(host: str) -> list[str]:
    """Return every address ``host`` resolves to, using the system resolver."""
    infos = await anyio.getaddrinfo(host, None)
    return sorted({str(info[4][0]) for info in infos})


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
    work_available: anyio.Event = field(default_factory=anyio.Event)

    def wake_worker(self) -> None:
        """Tell an in-process worker that new jobs or deliveries were committed."""
        self.work_available.set()

    def link_for(self, token: str, host: str | None) -> str:
        """Return the customer's recording link; a collector's custom host wins."""
        base = f"https://{host}" if host else self.public_url.rstrip("/")
        return f"{base}/r/{token}"
