"""What the contract does not cover: login, TLS checks, session reuse, timeouts, refusals."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from urllib.parse import quote

import anyio
import pytest
from conftest import StartServer
from smtp_servers import PASSWORD, USER, SMTPTestServer, accept_credentials, free_port

from ravepilot_core.errors import BackendError, JobAbandoned, MailRejected
from ravepilot_core.testing.mailer_contract import make_email
from ravepilot_smtp import SMTPMailer, open_smtp_mailer, parse_smtp_url

pytestmark = pytest.mark.anyio

CREDENTIALS = f"{quote(USER, safe='')}:{quote(PASSWORD, safe='')}"


@pytest.fixture
async def close_later() -> AsyncIterator[list[SMTPMailer]]:
    """Mailers appended here are closed after the test, whatever it did."""
    mailers: list[SMTPMailer] = []
    yield mailers
    for mailer in mailers:
        await mailer.close()


async def test_the_envelope_holds_the_bare_addresses(
    server: SMTPTestServer, close_later: list[SMTPMailer]
) -> None:
    mailer = open_smtp_mailer(server.url())
    close_later.append(mailer)
    email = make_email(to="Ann Example <ann@example.com>")
    await mailer.send(email)
    (delivery,) = server.recorder.deliveries
    assert delivery.mail_from == "noreply@example.com"
    assert delivery.rcpt_tos == ["ann@example.com"]


# Login


async def test_logs_in_with_percent_encoded_credentials(
    start_server: StartServer, close_later: list[SMTPMailer]
) -> None:
    server = start_server("starttls", authenticator=accept_credentials, auth_required=True)
    mailer = open_smtp_mailer(server.url(credentials=CREDENTIALS))
    close_later.append(mailer)
    await mailer.send(make_email())
    assert len(server.recorder.deliveries) == 1


async def test_wrong_credentials_are_a_permanent_refusal(
    start_server: StartServer, close_later: list[SMTPMailer]
) -> None:
    server = start_server("starttls", authenticator=accept_credentials, auth_required=True)
    mailer = open_smtp_mailer(server.url(credentials=f"{quote(USER)}:wrong"))
    close_later.append(mailer)
    with pytest.raises(MailRejected, match=r"refused the login of 'ann@acme.test': 535 "):
        await mailer.send(make_email())
    assert server.recorder.deliveries == []


async def test_without_credentials_a_server_that_requires_login_refuses(
    start_server: StartServer, close_later: list[SMTPMailer]
) -> None:
    server = start_server("starttls", authenticator=accept_credentials, auth_required=True)
    mailer = open_smtp_mailer(server.url())
    close_later.append(mailer)
    with pytest.raises(MailRejected, match=r"refused the sender noreply@example.com: 530 "):
        await mailer.send(make_email())


async def test_login_without_tls_works_and_warns(
    start_server: StartServer, close_later: list[SMTPMailer], caplog: pytest.LogCaptureFixture
) -> None:
    server = start_server(
        "none", authenticator=accept_credentials, auth_required=False, auth_require_tls=False
    )
    with caplog.at_level(logging.WARNING, logger="ravepilot.mail.smtp"):
        mailer = open_smtp_mailer(server.url(credentials=CREDENTIALS))
    close_later.append(mailer)
    assert "unencrypted" in caplog.text and PASSWORD not in caplog.text
    await mailer.send(make_email())
    (delivery,) = server.recorder.deliveries
    assert delivery.connection.session is not None
    assert delivery.connection.session.authenticated


async def test_login_fails_clearly_when_a_plain_server_offers_no_auth(
    start_server: StartServer, close_later: list[SMTPMailer], caplog: pytest.LogCaptureFixture
) -> None:
    server = start_server("none")  # aiosmtpd offers AUTH only over TLS by default
    with caplog.at_level(logging.ERROR):  # the expected warning about tls=none is not the point
        mailer = open_smtp_mailer(server.url(credentials=CREDENTIALS))
    close_later.append(mailer)
    with pytest.raises(BackendError, match="AUTH extension is not supported"):
        await mailer.send(make_email())


# TLS


async def test_starttls_is_required_not_opportunistic(
    start_server: StartServer, close_later: list[SMTPMailer]
) -> None:
    plain = start_server("none")
    mailer = open_smtp_mailer(f"smtp://127.0.0.1:{plain.port}?tls=starttls")
    close_later.append(mailer)
    with pytest.raises(BackendError, match="STARTTLS extension not supported"):
        await mailer.send(make_email())
    assert plain.recorder.deliveries == []


TLS_MODES = ["starttls", "implicit"]


@pytest.mark.parametrize("tls", TLS_MODES)
async def test_an_untrusted_certificate_is_refused_with_a_hint(
    tls: str, start_server: StartServer, close_later: list[SMTPMailer]
) -> None:
    server = start_server(tls)
    mailer = open_smtp_mailer(server.url(ca_file=""))  # the test CA is not trusted
    close_later.append(mailer)
    with pytest.raises(BackendError, match="add ca_file=") as failure:
        await mailer.send(make_email())
    assert "CERTIFICATE_VERIFY_FAILED" in str(failure.value)
    assert server.recorder.deliveries == []


@pytest.mark.parametrize("tls", TLS_MODES)
async def test_the_certificate_must_name_the_host(
    tls: str, start_server: StartServer, close_later: list[SMTPMailer]
) -> None:
    server = start_server(tls, certificate_for=("mail.elsewhere.test",))
    mailer = open_smtp_mailer(server.url())
    close_later.append(mailer)
    with pytest.raises(BackendError, match="IP address mismatch"):
        await mailer.send(make_email())
    assert server.recorder.deliveries == []


# Session reuse


async def test_sends_in_a_row_share_one_connection(
    server: SMTPTestServer, close_later: list[SMTPMailer]
) -> None:
    mailer = open_smtp_mailer(server.url())
    close_later.append(mailer)
    for _ in range(5):
        await mailer.send(make_email())
    assert len(server.recorder.deliveries) == 5
    assert len(server.recorder.connections) == 1


async def test_concurrent_sends_use_at_most_four_connections(
    start_server: StartServer, close_later: list[SMTPMailer]
) -> None:
    server = start_server("starttls")
    mailer = open_smtp_mailer(server.url())
    close_later.append(mailer)
    for _ in range(2):  # the second round reuses the first round's sessions
        async with anyio.create_task_group() as group:
            for _ in range(10):
                group.start_soon(mailer.send, make_email())
    assert len(server.recorder.deliveries) == 20
    assert 1 <= len(server.recorder.connections) <= 4


async def test_a_refused_email_leaves_the_session_usable(
    start_server: StartServer, close_later: list[SMTPMailer]
) -> None:
    server = start_server("starttls")
    server.recorder.rcpt_replies.append("550 5.1.1 mailbox unavailable")
    mailer = open_smtp_mailer(server.url())
    close_later.append(mailer)
    with pytest.raises(MailRejected):
        await mailer.send(make_email())
    await mailer.send(make_email())
    assert len(server.recorder.deliveries) == 1
    assert len(server.recorder.connections) == 1


async def test_a_connection_the_server_closed_while_idle_is_replaced(
    server: SMTPTestServer, close_later: list[SMTPMailer], caplog: pytest.LogCaptureFixture
) -> None:
    mailer = open_smtp_mailer(server.url())
    close_later.append(mailer)
    await mailer.send(make_email())
    server.drop_connections()
    # Wait until the client has seen the close, so this test covers the check made when a
    # session is taken from the pool; the next test covers a close noticed only mid-send.
    with anyio.fail_after(5):
        while any(idle.client.is_connected for idle in mailer._idle):
            await anyio.sleep(0.005)
    with caplog.at_level(logging.INFO, logger="ravepilot.mail.smtp"):
        await mailer.send(make_email())
    assert len(server.recorder.deliveries) == 2
    assert len(server.recorder.connections) == 2
    assert "reconnecting" not in caplog.text, "a session known to be closed is not tried"


async def test_a_connection_dropped_as_the_email_goes_out_is_replaced_and_sent_once(
    server: SMTPTestServer, close_later: list[SMTPMailer], caplog: pytest.LogCaptureFixture
) -> None:
    mailer = open_smtp_mailer(server.url())
    close_later.append(mailer)
    await mailer.send(make_email())
    server.recorder.drop_at_mail = 1  # the session looks alive until MAIL FROM
    email = make_email()
    with caplog.at_level(logging.INFO, logger="ravepilot.mail.smtp"):
        await mailer.send(email)
    assert "had closed an idle session" in caplog.text
    assert len(server.recorder.deliveries) == 2
    assert email.message_id.encode() in server.recorder.deliveries[1].raw
    assert len(server.recorder.connections) == 2


async def test_an_idle_close_announced_with_421_is_replaced(
    start_server: StartServer, close_later: list[SMTPMailer], caplog: pytest.LogCaptureFixture
) -> None:
    server = start_server("none")
    mailer = open_smtp_mailer(server.url())
    close_later.append(mailer)
    await mailer.send(make_email())
    server.recorder.mail_replies.append("421 4.4.2 mail.test idle timeout, closing")
    with caplog.at_level(logging.INFO, logger="ravepilot.mail.smtp"):
        await mailer.send(make_email())
    assert "(421 4.4.2 mail.test idle timeout, closing); reconnecting" in caplog.text
    assert len(server.recorder.deliveries) == 2


async def test_a_fresh_connection_dropping_is_not_retried(
    start_server: StartServer, close_later: list[SMTPMailer]
) -> None:
    """Only a reused session gets a second chance: a server that hangs up on new ones is down."""
    server = start_server("none")
    server.recorder.drop_at_mail = 2
    mailer = open_smtp_mailer(server.url())
    close_later.append(mailer)
    with pytest.raises(BackendError, match="could not send through the SMTP server"):
        await mailer.send(make_email())
    assert server.recorder.drop_at_mail == 1


async def test_a_session_idle_too_long_is_replaced_not_reused(
    start_server: StartServer, close_later: list[SMTPMailer]
) -> None:
    server = start_server("none")
    mailer = SMTPMailer(parse_smtp_url(server.url()), max_idle=0)
    close_later.append(mailer)
    await mailer.send(make_email())
    await mailer.send(make_email())
    assert len(server.recorder.connections) == 2


async def test_close_says_goodbye_and_is_safe_twice(
    server: SMTPTestServer, close_later: list[SMTPMailer]
) -> None:
    mailer = open_smtp_mailer(server.url())
    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(mailer.send, make_email())
    opened = len(server.recorder.connections)
    await mailer.close()
    assert server.recorder.quits == opened
    await mailer.close()
    assert server.recorder.quits == opened
    await mailer.send(make_email())  # a closed mailer opens a new session when used again
    close_later.append(mailer)
    assert len(server.recorder.deliveries) == 4


async def test_a_session_busy_when_closed_is_closed_after_its_send(
    start_server: StartServer, close_later: list[SMTPMailer]
) -> None:
    server = start_server("starttls")
    release = server.recorder.hold_data = threading.Event()
    mailer = open_smtp_mailer(server.url())
    close_later.append(mailer)
    async with anyio.create_task_group() as group:
        group.start_soon(mailer.send, make_email())
        await anyio.to_thread.run_sync(server.recorder.data_started.wait, 5)
        await mailer.close()  # nothing idle yet: the one session is busy sending
        assert server.recorder.quits == 0
        release.set()
    assert len(server.recorder.deliveries) == 1
    assert server.recorder.quits == 1, "the send finished and said goodbye, not kept it"


# Timeouts and unreachable servers


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel does) and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


async def test_a_server_that_never_answers_times_out(
    silent_server: int, close_later: list[SMTPMailer]
) -> None:
    mailer = open_smtp_mailer(f"smtp://127.0.0.1:{silent_server}?tls=none&timeout=0.5")
    close_later.append(mailer)
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"Timed out.*raise timeout="):
        await mailer.send(make_email())
    assert 0.4 < time.monotonic() - started < 2.0


async def test_implicit_tls_to_a_silent_server_times_out(
    silent_server: int, close_later: list[SMTPMailer]
) -> None:
    mailer = open_smtp_mailer(f"smtp://127.0.0.1:{silent_server}?tls=implicit&timeout=0.5")
    close_later.append(mailer)
    started = time.monotonic()
    with pytest.raises(BackendError, match="Timed out"):
        await mailer.send(make_email())
    assert time.monotonic() - started < 2.0


async def test_a_refused_connection_is_temporary(close_later: list[SMTPMailer]) -> None:
    port = free_port()
    mailer = open_smtp_mailer(f"smtp://127.0.0.1:{port}?tls=none")
    close_later.append(mailer)
    with pytest.raises(BackendError, match=f"127.0.0.1:{port}.*Error connecting"):
        await mailer.send(make_email())


# Refusals


@pytest.mark.parametrize(
    ("stage", "reply", "expected", "what"),
    [
        ("rcpt", "550 5.1.1 mailbox unavailable", MailRejected, "refused the recipient"),
        ("rcpt", "451 4.3.0 try later", BackendError, "deferred the recipient"),
        ("mail", "553 5.7.1 sender not allowed", MailRejected, "refused the sender"),
        ("mail", "452 4.3.1 insufficient storage", BackendError, "deferred the sender"),
    ],
)
async def test_5xx_is_permanent_and_4xx_temporary(
    stage: str,
    reply: str,
    expected: type[Exception],
    what: str,
    start_server: StartServer,
    close_later: list[SMTPMailer],
) -> None:
    server = start_server("none")
    getattr(server.recorder, f"{stage}_replies").append(reply)
    mailer = open_smtp_mailer(server.url())
    close_later.append(mailer)
    with pytest.raises(expected) as failure:
        await mailer.send(make_email())
    assert type(failure.value) is expected
    assert what in str(failure.value) and str(failure.value).endswith(reply)


async def test_an_email_without_an_address_is_abandoned(
    server: SMTPTestServer, close_later: list[SMTPMailer]
) -> None:
    mailer = open_smtp_mailer(server.url())
    close_later.append(mailer)
    with pytest.raises(JobAbandoned, match="has no address"):
        await mailer.send(make_email(to="Nobody <>"))
    assert server.recorder.connections == []


async def test_the_password_stays_out_of_repr_and_errors(close_later: list[SMTPMailer]) -> None:
    mailer = open_smtp_mailer(f"smtp://{CREDENTIALS}@127.0.0.1:{free_port()}?timeout=1")
    close_later.append(mailer)
    with pytest.raises(BackendError) as failure:
        await mailer.send(make_email())
    for text in (repr(mailer), repr(mailer.settings), str(failure.value)):
        assert PASSWORD not in text and quote(PASSWORD, safe="") not in text
