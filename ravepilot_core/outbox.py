"""The ``outbox://`` mailer: each email becomes an ``.eml`` file, and a log line shows the link.

It is the embedded default: a fresh install can invite customers and an operator can open the
messages (any mail client reads ``.eml``) without configuring SMTP.
"""

from __future__ import annotations

import logging
import os
from email.message import Message
from email.policy import SMTP
from pathlib import Path
from urllib.parse import unquote, urlsplit

import anyio

from ravepilot_core.errors import ConfigurationError

__all__ = ["OutboxMailer", "open_outbox_mailer"]

log = logging.getLogger("ravepilot.mail")


class OutboxMailer:
    """Writes messages into a directory, atomically, one file each."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._directory_exists = False

    async def send(self, message: Message) -> None:
        """Write ``message`` as ``<directory>/<message-id>.eml``."""
        message_id = str(message.get("Message-ID", "")).strip("<>") or os.urandom(8).hex()
        name = "".join(c if c.isalnum() or c in "-._" else "_" for c in message_id)
        # Serialise here, on the event loop: Python work in a thread would hold the GIL for up
        # to a switch interval (5 ms) whenever the loop released it, stalling every request.
        # The thread does only file I/O, which releases the GIL.
        data = message.as_bytes(policy=SMTP)
        await anyio.to_thread.run_sync(self._write, name, data)
        link = message.get("X-RavePilot-Link")
        log.info(
            "email to %s: %s%s",
            message["To"],
            message["Subject"],
            f" (link: {link})" if link else "",
        )

    def _write(self, name: str, data: bytes) -> None:
        if not self._directory_exists:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._directory_exists = True
        partial = self.directory / f".{name}.eml.partial"
        partial.write_bytes(data)
        os.replace(partial, self.directory / f"{name}.eml")  # readers never see half a message

    async def close(self) -> None:
        """Nothing to release."""


def open_outbox_mailer(url: str) -> OutboxMailer:
    """Create the mailer for ``outbox:///absolute/dir`` or ``outbox://relative/dir``."""
    parts = urlsplit(url)
    path = unquote(parts.netloc + parts.path)
    if not path:
        raise ConfigurationError(
            "outbox:// needs a directory, e.g. outbox:///var/lib/ravepilot/outbox"
        )
    return OutboxMailer(Path(path))
