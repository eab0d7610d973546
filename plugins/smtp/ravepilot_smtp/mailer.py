"""The SMTP mailer: RavePilot's emails through any SMTP server, over a few reused sessions.

Opening a session costs a TCP connect, often a TLS handshake and a login: several round trips
and, at a hosted provider, a good part of a second. The email worker sends a batch of up to four
at a time, so the mailer keeps up to four sessions open between sends and gives each to one send
at a time.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parseaddr

from aiosmtplib import SMTP, SMTPException, SMTPRecipientsRefused, SMTPResponseException

from ravepilot_core.errors import ConfigurationError, JobAbandoned
from ravepilot_core.mime import render_mime
from ravepilot_core.models import Email
from ravepilot_smtp.failures import describe_failure, is_dropped_connection, summary
from ravepilot_smtp.settings import SMTPSettings, parse_smtp_url

__all__ = ["MAX_IDLE", "POOL_SIZE", "SMTPMailer", "client_tls_context", "open_smtp_mailer"]

log = logging.getLogger("ravepilot.mail.smtp")

#: Sessions kept open at most: the email worker's concurrency.
POOL_SIZE = 4
#: Seconds a session may sit unused before it is replaced rather than reused. Servers close idle
#: sessions themselves (Postfix after 300 s, many providers after a minute) and a firewall may
#: drop one silently, which would cost a full timeout to find out.
MAX_IDLE = 50.0
#: Seconds to wait for the server's goodbye at close; nothing is lost if it never comes.
QUIT_TIMEOUT = 5.0


@dataclass(frozen=True)
class _Envelope:
    sender: str
    recipient: str
    message: bytes


@dataclass(frozen=True)
class _Idle:
    client: SMTP
    since: float


def _envelope(email: Email) -> _Envelope:
    sender, recipient = parseaddr(email.sender)[1], parseaddr(email.to)[1]
    for name, value, address in (("sender", email.sender, sender), ("to", email.to, recipient)):
        if not address:
            raise JobAbandoned(
                f"cannot send email {email.message_id}: {name} {value!r} has no address"
            )
    try:
        message = render_mime(email, date=datetime.now(UTC))
    except ValueError as exc:  # a line break in a header, a non-ASCII address: never sendable
        raise JobAbandoned(f"cannot send email {email.message_id}: {exc}") from exc
    return _Envelope(sender, recipient, message)


def client_tls_context(settings: SMTPSettings) -> ssl.SSLContext | None:
    """Return the TLS context the mailer verifies the server with (``None`` for ``tls=none``).

    The system's trusted authorities, plus those in ``ca_file``; the host name is checked.

    Raises:
        ConfigurationError: ``ca_file`` cannot be read as PEM certificates.
    """
    if settings.tls == "none":
        return None
    context = ssl.create_default_context()
    if settings.ca_file:
        try:
            context.load_verify_locations(cafile=settings.ca_file)
        except OSError as exc:  # ssl.SSLError is one too: not PEM, or no certificate in it
            raise ConfigurationError(
                f"RAVEPILOT_MAILER_URL: ca_file={settings.ca_file!r} cannot be read as PEM "
                f"certificates ({exc}); point it at the CA certificate file"
            ) from None
    return context


def _hang_up(client: SMTP, transport: asyncio.BaseTransport | None = None) -> None:
    """Close ``client``'s connection now, without TLS's closing handshake.

    aiosmtplib closes TLS gracefully: the socket stays open until the server's close_notify
    arrives, and when that comes after the event loop has stopped (a worker shutting down) the
    socket leaks. Nothing is lost by skipping it: the session is over (QUIT was answered) or
    being given up.

    Args:
        client: The client to close.
        transport: Its transport as it was before a call that may have dropped it (aiosmtplib
            forgets the transport when it closes after a timeout or QUIT).
    """
    for open_transport in {transport, client.transport}:
        if isinstance(open_transport, asyncio.WriteTransport):
            open_transport.abort()  # the socket closes on the loop's next turn
    client.close()


async def _quit(client: SMTP, timeout: float) -> None:
    transport = client.transport
    try:
        await client.quit(timeout=min(timeout, QUIT_TIMEOUT))
    except (SMTPException, OSError) as exc:
        log.debug("no goodbye from the SMTP server (%s); closing anyway", exc)
    finally:
        _hang_up(client, transport)
    await asyncio.sleep(0)  # that turn: close() returns with the socket closed


class SMTPMailer:
    """A :class:`~ravepilot_core.protocols.Mailer` that sends through an SMTP server.

    Sends reuse open sessions; a session the server closed while idle is replaced and the email
    sent again once. A 5xx refusal raises :class:`~ravepilot_core.errors.MailRejected`; any other
    failure raises :class:`~ravepilot_core.errors.BackendError`, so the email job retries.

    Example::

        mailer = SMTPMailer(parse_smtp_url("smtp://me:secret@mail.example.com"))
        await mailer.send(email)
        await mailer.close()
    """

    def __init__(
        self,
        settings: SMTPSettings,
        *,
        pool_size: int = POOL_SIZE,
        max_idle: float = MAX_IDLE,
    ) -> None:
        """Create a mailer; it connects on the first send.

        Args:
            settings: The server and how to reach it (see :func:`parse_smtp_url`).
            pool_size: Sessions open at most, which is also how many sends run at once.
            max_idle: Seconds after which an unused session is replaced instead of reused.

        Raises:
            ConfigurationError: ``ca_file`` cannot be read.
        """
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, got {pool_size}")
        self.settings = settings
        self._tls_context = client_tls_context(settings)
        self._max_idle = max_idle
        self._slots = asyncio.Semaphore(pool_size)
        self._idle: list[_Idle] = []
        self._generation = 0  # bumped by close(): sessions of an older one are not kept
        self._local_hostname: str | None = None
        if settings.username and settings.tls == "none":
            log.warning(
                "smtp:// with tls=none sends the password for %r to %s unencrypted; use "
                "tls=starttls or tls=implicit unless the server is on this machine",
                settings.username,
                settings.address,
            )

    def __repr__(self) -> str:
        return f"SMTPMailer(smtp://{self.settings.address}, tls={self.settings.tls})"

    async def send(self, email: Email) -> None:
        """Send ``email`` to its recipient.

        Raises:
            MailRejected: The server refused for good (an SMTP 5xx reply, also a failed login).
            BackendError: Anything temporary: a 4xx reply, no connection, a timeout.
            JobAbandoned: ``email`` cannot be sent at all (no address in ``to``).
        """
        envelope = _envelope(email)
        async with self._slots:
            try:
                await self._send_pooled(envelope)
            except (SMTPException, OSError) as exc:
                raise describe_failure(exc, self.settings) from exc

    async def close(self) -> None:
        """Say goodbye (QUIT) on every idle session; safe to call again.

        Sessions still sending finish their email and are closed then. A later ``send`` opens
        new sessions.
        """
        self._generation += 1
        idle, self._idle = self._idle, []
        timeout = self.settings.timeout
        await asyncio.gather(*(_quit(entry.client, timeout) for entry in idle))

    async def _send_pooled(self, envelope: _Envelope) -> None:
        generation = self._generation
        client = self._take_idle()
        if client is not None:
            try:
                await self._transact(client, envelope, generation)
                return
            except (SMTPException, OSError) as exc:
                if not is_dropped_connection(exc):
                    raise
                log.info(
                    "the SMTP server %s had closed an idle session (%s); reconnecting",
                    self.settings.address,
                    summary(exc),
                )
        client = await self._connect()
        await self._transact(client, envelope, generation)

    def _take_idle(self) -> SMTP | None:
        now = time.monotonic()
        while self._idle:
            entry = self._idle.pop()  # the most recently used is the likeliest to be alive
            if entry.client.is_connected and now - entry.since < self._max_idle:
                return entry.client
            _hang_up(entry.client)
        return None

    async def _connect(self) -> SMTP:
        settings = self.settings
        if self._local_hostname is None:
            # getfqdn may wait on reverse DNS, which no timeout covers: ask once, not per session.
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        client = SMTP(
            hostname=settings.host,
            port=settings.port,
            local_hostname=self._local_hostname,
            timeout=settings.timeout,
            use_tls=settings.tls == "implicit",
            start_tls=False,  # done below, where a failure can close the connection at once
            tls_context=self._tls_context,
        )
        await client.connect()  # closes itself when that fails
        transport = client.transport
        try:
            if settings.tls == "starttls":
                # Always, not the library's default "if offered": a STARTTLS that a man in the
                # middle strips from the server's reply must fail, not fall back to plain text.
                await client.starttls()
            if settings.username is not None:
                await client.login(settings.username, settings.password or "")
        except BaseException:
            _hang_up(client, transport)
            raise
        return client

    async def _transact(self, client: SMTP, envelope: _Envelope, generation: int) -> None:
        transport = client.transport
        try:
            await client.sendmail(envelope.sender, [envelope.recipient], envelope.message)
        except (SMTPResponseException, SMTPRecipientsRefused):
            # The server refused this email; aiosmtplib reset the envelope (RSET), so the session
            # is still good for the next one.
            await self._give_back(client, generation, transport)
            raise
        except BaseException:
            _hang_up(client, transport)  # mid-command (cancelled, timed out, dropped)
            raise
        await self._give_back(client, generation, transport)

    async def _give_back(
        self, client: SMTP, generation: int, transport: asyncio.BaseTransport | None
    ) -> None:
        if not client.is_connected:  # the server hung up (after a 421, say)
            _hang_up(client, transport)
        elif generation != self._generation:
            await _quit(client, self.settings.timeout)  # close() ran while this one was sending
        else:
            self._idle.append(_Idle(client, time.monotonic()))


def open_smtp_mailer(url: str) -> SMTPMailer:
    """Create the mailer for an ``smtp://`` URL (the ``ravepilot.mailer`` entry point).

    Args:
        url: ``smtp://user:password@host:port?tls=starttls|implicit|none&timeout=30&ca_file=...``

    Raises:
        ConfigurationError: The URL is unusable; the message says what to fix.
    """
    return SMTPMailer(parse_smtp_url(url))
