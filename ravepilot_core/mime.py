"""Render an :class:`~ravepilot_core.models.Email` as RFC 5322 bytes (multipart/alternative).

The standard library's ``email`` package builds and serialises the same message, but its
generator cost ~0.35 ms a message here, more than creating the invitation itself. The shape
RavePilot sends is fixed (a text and an HTML part, a few headers), so it is written directly:
bodies base64-encoded by ``binascii`` (C), non-ASCII headers RFC 2047-encoded by
``email.header``. ``tests/core/test_mime.py`` parses the output back with the standard library.
"""

from __future__ import annotations

import base64
import functools
import secrets
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr

from ravepilot_core.models import Email

__all__ = ["render_mime"]


def _text_header(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("a header value must not contain a line break")
    return value if value.isascii() else Header(value, "utf-8").encode()


# Characters that give an address header a display name, a comment or a list. A printable
# ASCII value with none of them and one @ that is not last is a bare address, which parseaddr and
# formataddr return unchanged (tests/core/test_mime.py checks that against them).
_ADDRESS_SPECIALS = frozenset(' \t<>()[]",;:\\\r\n')


def _is_bare_address(value: str) -> bool:
    """Whether ``value`` is an address alone, with no display name, comment or list."""
    return (
        value.isascii()
        and value.isprintable()  # no control characters, which some readers take as breaks
        and value.count("@") == 1
        and not value.endswith("@")
        and _ADDRESS_SPECIALS.isdisjoint(value)
    )


def _address_header(value: str) -> str:
    if _is_bare_address(value):
        return value  # the parse costs ~40 µs an email
    return _parsed_address_header(value)


@functools.lru_cache(maxsize=64)  # the sender: one or a few values, on every email
def _parsed_address_header(value: str) -> str:
    name, address = parseaddr(value)
    if not address or "\r" in value or "\n" in value:
        raise ValueError(f"not an email address: {value!r}")
    return formataddr((name, address), charset="utf-8")


def _part(content_type: str, body: str) -> bytes:
    encoded = base64.encodebytes(body.encode()).replace(b"\n", b"\r\n")
    return (
        f'Content-Type: {content_type}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode() + encoded


def render_mime(email: Email, *, date: datetime) -> bytes:
    """Return ``email`` as the bytes an SMTP server or a ``.eml`` file takes (CRLF lines)."""
    boundary = f"=_rp_{secrets.token_hex(12)}"
    headers = [
        ("From", _address_header(email.sender)),
        ("To", _address_header(email.to)),
        ("Subject", _text_header(email.subject)),
        ("Date", format_datetime(date)),
        ("Message-ID", f"<{email.message_id}>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
        *((name, _text_header(value)) for name, value in email.headers.items()),
    ]
    head = "".join(f"{name}: {value}\r\n" for name, value in headers).encode()
    separator = f"\r\n--{boundary}\r\n".encode()
    return b"".join(
        (
            head,
            separator,
            _part("text/plain", email.text),
            separator,
            _part("text/html", email.html),
            f"\r\n--{boundary}--\r\n".encode(),
        )
    )
