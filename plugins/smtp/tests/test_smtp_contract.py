"""The SMTP mailer passes the whole Mailer contract in each TLS mode."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from conftest import StartServer
from smtp_servers import SMTPTestServer

from ravepilot_core.testing import MailerContract
from ravepilot_core.testing.mailer_contract import Received
from ravepilot_smtp import SMTPMailer, open_smtp_mailer


class SMTPContract(MailerContract):
    """The contract against a real aiosmtpd server speaking ``tls``."""

    tls = "starttls"

    @pytest.fixture
    def smtp_server(self, start_server: StartServer) -> SMTPTestServer:
        return start_server(self.tls)

    @pytest.fixture
    async def mailer(self, smtp_server: SMTPTestServer) -> AsyncIterator[SMTPMailer]:  # type: ignore[override]
        mailer = open_smtp_mailer(smtp_server.url())
        yield mailer
        await mailer.close()

    @pytest.fixture
    def received(self, smtp_server: SMTPTestServer) -> Received:
        return smtp_server.recorder.received


class TestContractOverStartTLS(SMTPContract):
    tls = "starttls"


class TestContractOverImplicitTLS(SMTPContract):
    tls = "implicit"


class TestContractWithoutTLS(SMTPContract):
    tls = "none"
