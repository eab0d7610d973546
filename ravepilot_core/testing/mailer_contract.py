"""The Mailer contract suite: a pytest class any mailer subclasses to prove it delivers.

A mailer's job ends at another system (a file, an SMTP server, an API), so the suite needs two
fixtures: ``mailer``, a fresh mailer, and ``received``, an async callable returning the raw
RFC 5322 bytes of every message that reached the far end so far::

    import pytest
    from ravepilot_core.testing import MailerContract

    class TestMyMailer(MailerContract):
        @pytest.fixture
        async def mailer(self, tmp_path):
            mailer = open_my_mailer(f"mine://{tmp_path}")
            yield mailer
            await mailer.close()

        @pytest.fixture
        def received(self, tmp_path):
            async def read():
                return [path.read_bytes() for path in sorted(tmp_path.glob("*.eml"))]
            return read

The messages are parsed with the standard library, so a mailer that keeps its own format (an API
that takes the fields) can return ``ravepilot_core.mime.render_mime(email, date=...)`` of what it
got.
"""

# The tests are public methods whose names say what they check; docstrings would only repeat them.
# ruff: noqa: D102

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import anyio
import pytest

from ravepilot_core.models import Email
from ravepilot_core.protocols import Mailer

__all__ = ["MailerContract", "Received", "make_email"]

#: What the ``received`` fixture returns: every message that arrived so far, as raw bytes.
Received = Callable[[], Awaitable[list[bytes]]]

_parser = BytesParser(policy=policy.default)
ARRIVAL_TIMEOUT = 10.0  # a mailer may hand off asynchronously (a relay, a queue)


def make_email(**overrides: object) -> Email:
    """An email with a unique Message-ID and both bodies; fields may be overridden."""
    token = secrets.token_hex(6)
    fields: dict[str, object] = {
        "sender": "RavePilot <noreply@example.com>",
        "to": f"Customer {token} <customer-{token}@example.com>",
        "subject": f"Share your story {token}",
        "text": f"Hello,\nrecord here: https://example.com/r/{token}\n",
        "html": f'<p>Hello, <a href="https://example.com/r/{token}">record here</a></p>',
        "message_id": f"{token}@ravepilot.test",
        "headers": {"X-RavePilot-Link": f"https://example.com/r/{token}"},
    }
    fields.update(overrides)
    return Email(**fields)  # type: ignore[arg-type]


def _parse(raw: bytes) -> EmailMessage:
    message = _parser.parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def _body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None, f"the message has no text/{subtype} part"
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


class MailerContract:
    """Behaviour every :class:`~ravepilot_core.protocols.Mailer` must have.

    Subclass it in a class named ``Test...`` and override ``mailer`` and ``received``.
    """

    pytestmark = pytest.mark.anyio

    @pytest.fixture
    def mailer(self) -> Mailer:
        """Override this fixture: yield a fresh mailer and close it after the test."""
        raise NotImplementedError("subclass MailerContract and override the `mailer` fixture")

    @pytest.fixture
    def received(self) -> Received:
        """Override this fixture: an async callable returning the raw messages that arrived."""
        raise NotImplementedError("subclass MailerContract and override the `received` fixture")

    async def _arrived(self, received: Received, message_ids: set[str]) -> list[EmailMessage]:
        """Wait until every message in ``message_ids`` arrived; return those messages."""
        with anyio.move_on_after(ARRIVAL_TIMEOUT):
            while True:
                messages = [_parse(raw) for raw in await received()]
                ids = {str(m["Message-ID"]).strip("<>") for m in messages}
                if message_ids <= ids:
                    return [m for m in messages if str(m["Message-ID"]).strip("<>") in message_ids]
                await anyio.sleep(0.02)
        pytest.fail(f"messages {sorted(message_ids)} did not arrive within {ARRIVAL_TIMEOUT}s")

    async def test_is_a_mailer(self, mailer: Mailer) -> None:
        assert isinstance(mailer, Mailer)

    async def test_delivers_headers_and_both_bodies(
        self, mailer: Mailer, received: Received
    ) -> None:
        email = make_email()
        await mailer.send(email)
        (message,) = await self._arrived(received, {email.message_id})
        assert message["From"].addresses[0].addr_spec == "noreply@example.com"
        assert message["To"].addresses[0].addr_spec == email.to.split("<")[1].rstrip(">")
        assert message["Subject"] == email.subject
        assert message["X-RavePilot-Link"] == email.headers["X-RavePilot-Link"]
        assert message["Date"] is not None
        assert _body(message, "plain") == email.text
        assert _body(message, "html").strip() == email.html

    async def test_non_ascii_names_subject_and_bodies_survive(
        self, mailer: Mailer, received: Received
    ) -> None:
        email = make_email(
            to="Zoë Ångström <zoe@example.com>",
            subject="Ihre Erfahrung zählt — 30 Sekunden 🎬",
            text="Grüße aus Köln.\nDanke!\n",
            html="<p>Grüße aus Köln — danke! 🎬</p>",
        )
        await mailer.send(email)
        (message,) = await self._arrived(received, {email.message_id})
        assert message["To"].addresses[0].display_name == "Zoë Ångström"
        assert message["Subject"] == email.subject
        assert _body(message, "plain") == email.text
        assert _body(message, "html").strip() == email.html

    async def test_sends_in_a_row_each_arrive_once(
        self, mailer: Mailer, received: Received
    ) -> None:
        emails = [make_email() for _ in range(5)]
        for email in emails:
            await mailer.send(email)
        ids = {email.message_id for email in emails}
        arrived = await self._arrived(received, ids)
        assert sorted(str(m["Message-ID"]).strip("<>") for m in arrived) == sorted(ids)

    async def test_concurrent_sends_each_arrive_once(
        self, mailer: Mailer, received: Received
    ) -> None:
        emails = [make_email() for _ in range(8)]
        async with anyio.create_task_group() as group:
            for email in emails:
                group.start_soon(mailer.send, email)
        ids = {email.message_id for email in emails}
        arrived = await self._arrived(received, ids)
        assert sorted(str(m["Message-ID"]).strip("<>") for m in arrived) == sorted(ids)

    async def test_close_after_sending_then_nothing_more_is_delivered_twice(
        self, mailer: Mailer, received: Received
    ) -> None:
        email = make_email()
        await mailer.send(email)
        await mailer.close()
        arrived = await self._arrived(received, {email.message_id})
        assert len(arrived) == 1
