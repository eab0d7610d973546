"""An aiosmtpd server that records what it gets and can be told to refuse or hang up."""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

USER = "ann@acme.test"
PASSWORD = "p@ss:w/rd#1 ü"  # every character a URL must percent-encode, and one non-ASCII


@dataclass
class Delivery:
    """One message as the server got it."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    connection: SMTP  # the server-side session: one per client connection


@dataclass
class Recorder:
    """An aiosmtpd handler that keeps every message and can be told to refuse or hang up."""

    deliveries: list[Delivery] = field(default_factory=list)
    connections: list[SMTP] = field(default_factory=list)  # sessions that said EHLO
    quits: int = 0
    rcpt_replies: list[str] = field(default_factory=list)  # answers to give before accepting
    mail_replies: list[str] = field(default_factory=list)
    drop_at_mail: int = 0  # hang up on this many MAIL commands without answering
    # Set ``hold_data`` to keep the next DATA unanswered until the test sets it; the server sets
    # ``data_started`` when the message is in. (threading: the server runs in its own thread)
    hold_data: threading.Event | None = None
    data_started: threading.Event = field(default_factory=threading.Event)

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: Any
    ) -> Any:
        session.host_name = hostname  # what aiosmtpd does itself when there is no hook
        if not any(known is server for known in self.connections):
            self.connections.append(server)
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.drop_at_mail:
            self.drop_at_mail -= 1
            assert server.transport is not None
            server.transport.close()  # as a server does whose idle timer fired just now
            return "421 4.4.2 never sent: the connection is already closed"
        if self.mail_replies:
            return self.mail_replies.pop(0)
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.rcpt_replies:
            return self.rcpt_replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.data_started.set()
        hold, self.hold_data = self.hold_data, None
        while hold is not None and not hold.is_set():
            await asyncio.sleep(0.005)
        assert envelope.mail_from is not None and envelope.original_content is not None
        self.deliveries.append(
            Delivery(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content, server)
        )
        return "250 2.0.0 OK: queued"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.quits += 1
        return "221 Bye"

    async def received(self) -> list[bytes]:
        """The ``received`` of the Mailer contract: every message's raw bytes so far."""
        return [delivery.raw for delivery in self.deliveries]


@dataclass
class SMTPTestServer:
    """A running aiosmtpd server and how to reach it."""

    controller: Controller
    recorder: Recorder
    port: int
    tls: str
    ca_file: Path

    def url(self, *, credentials: str = "", **params: str) -> str:
        """The mailer URL of this server; ``ca_file`` and ``tls`` are filled in."""
        query = {"tls": self.tls, **params}
        if self.tls != "none":
            query.setdefault("ca_file", str(self.ca_file))
        at = f"{credentials}@" if credentials else ""
        pairs = "&".join(f"{name}={value}" for name, value in query.items() if value)
        return f"smtp://{at}127.0.0.1:{self.port}?{pairs}"

    def drop_connections(self) -> None:
        """Close every client connection from the server's side, as an idle timeout does."""

        def close_all() -> None:
            for server in self.recorder.connections:
                if server.transport is not None:
                    server.transport.close()

        self.controller.loop.call_soon_threadsafe(close_all)


def free_port() -> int:
    """A loopback port nobody listens on (connecting to it is refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def accept_credentials(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    """An aiosmtpd authenticator that knows one user, ``USER`` with ``PASSWORD``."""
    ok = isinstance(auth_data, LoginPassword) and auth_data == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)
