"""render_mime's output, read back by the standard library's parser."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.utils import formataddr, parseaddr

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ravepilot_core.mime import _address_header, _is_bare_address, render_mime
from ravepilot_core.models import Email

DATE = datetime(2026, 11, 22, 10, 30, tzinfo=UTC)


def parse(data: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    assert not message.defects
    return message


def test_an_ascii_message_round_trips() -> None:
    sent = Email(
        sender="Acme <noreply@acme.test>",
        to="ann@example.com",
        subject="Acme would love to hear from you",
        text="Hi Ann,\n\nRecord here: https://r.test/r/abc\n" + "x" * 300,
        html="<p>Hi Ann, <a href='https://r.test/r/abc'>record</a></p>",
        message_id="m1@ravepilot.local",
        headers={"X-RavePilot-Link": "https://r.test/r/abc"},
    )
    data = render_mime(sent, date=DATE)
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert b"\n" not in data.replace(b"\r\n", b"")
    message = parse(data)
    assert message["From"] == "Acme <noreply@acme.test>"
    assert message["To"] == "ann@example.com"
    assert message["Subject"] == sent.subject
    assert message["Message-ID"] == "<m1@ravepilot.local>"
    assert message["X-RavePilot-Link"] == "https://r.test/r/abc"
    assert message["Date"].datetime == DATE
    assert message.get_content_type() == "multipart/alternative"
    assert message.get_body(("plain",)).get_content() == sent.text
    assert message.get_body(("html",)).get_content() == sent.html


def test_non_ascii_names_subjects_and_bodies_are_encoded() -> None:
    sent = Email(
        sender="Café Zoë <hello@cafe.test>",
        to="José Núñez <jose@example.com>",
        subject="Café Zoë aimerait vous entendre ☕",
        text="Bonjour José, enregistrez ici ✨",
        html="<p>Bonjour José ✨</p>",
        message_id="m2@ravepilot.local",
    )
    data = render_mime(sent, date=DATE)
    assert data.isascii()
    message = parse(data)
    assert message["Subject"] == sent.subject
    assert message["From"].addresses[0].display_name == "Café Zoë"
    assert message["To"].addresses[0].addr_spec == "jose@example.com"
    assert message.get_body(("plain",)).get_content() == sent.text


@pytest.mark.parametrize(
    "field", [{"subject": "hi\r\nBcc: victim@example.com"}, {"to": "a@b.test\nBcc: x@y.test"}]
)
def test_header_injection_is_refused(field: dict[str, str]) -> None:
    values = {
        "sender": "a@b.test",
        "to": "c@d.test",
        "subject": "s",
        "text": "t",
        "html": "h",
        "message_id": "m@x",
        **field,
    }
    with pytest.raises(ValueError, match=r"line break|not an email address"):
        render_mime(Email(**values), date=DATE)


@settings(max_examples=2000, deadline=None)
@given(st.text("aZ09.@-_+'!#é <>\"(),;:[]\\\x0b\x0c\x1c\x7f", max_size=30))
@example("\x0bjane@example.com")
@example("jane@example.com")
@example("@")
@example("jane@")
def test_bare_addresses_skip_the_parser_with_the_same_result(value: str) -> None:
    try:
        name, address = parseaddr(value)
        parsed: str | None = formataddr((name, address), charset="utf-8") if address else None
    except UnicodeError:
        parsed = None
    try:
        rendered: str | None = _address_header(value)
    except (ValueError, UnicodeError):
        rendered = None
    if _is_bare_address(value):
        assert rendered == parsed == value
    else:
        assert rendered == parsed
