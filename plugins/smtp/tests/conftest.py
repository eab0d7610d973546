"""Real SMTP servers (aiosmtpd) on loopback, one per TLS mode, with a certificate made here."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from smtp_servers import Recorder, SMTPTestServer, free_port


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiosmtplib is written for asyncio


@pytest.fixture(scope="session")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(certificate_authority: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    certificate_authority.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="session")
def server_tls_context(certificate_authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


StartServer = Callable[..., SMTPTestServer]


@pytest.fixture
def start_server(
    certificate_authority: trustme.CA, server_tls_context: ssl.SSLContext, ca_file: Path
) -> Iterator[StartServer]:
    """Start an aiosmtpd server in ``tls`` mode (starttls, implicit, none); stopped at teardown.

    ``certificate_for`` names the hosts its certificate is for (by default 127.0.0.1 and
    localhost). Other keyword arguments go to aiosmtpd's ``SMTP`` (``authenticator``, ...).
    """
    controllers: list[Controller] = []

    def start(
        tls: str = "starttls", *, certificate_for: tuple[str, ...] = (), **smtp: Any
    ) -> SMTPTestServer:
        recorder = Recorder()
        context = server_tls_context
        if certificate_for:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            certificate_authority.issue_cert(*certificate_for).configure_cert(context)
        if tls == "starttls":
            smtp.update(tls_context=context, require_starttls=True)
        elif tls == "implicit":
            smtp.update(ssl_context=context)
        port = free_port()
        controller = Controller(
            recorder, hostname="127.0.0.1", port=port, server_hostname="mail.test", **smtp
        )
        controller.start()
        controllers.append(controller)
        return SMTPTestServer(controller, recorder, port, tls, ca_file)

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture(params=["starttls", "implicit", "none"])
def server(request: pytest.FixtureRequest, start_server: StartServer) -> SMTPTestServer:
    """A server in each TLS mode."""
    return start_server(request.param)
