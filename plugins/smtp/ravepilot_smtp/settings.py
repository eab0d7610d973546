"""Read ``smtp://user:pass@host:port?tls=starttls|implicit|none&timeout=30&ca_file=/ca.pem``.

Every mistake is a :class:`~ravepilot_core.errors.ConfigurationError` raised at start-up with a
message that says what to write instead, so a typo never surfaces hours later as failed emails.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from ravepilot_core.errors import ConfigurationError

__all__ = ["DEFAULT_PORTS", "DEFAULT_TIMEOUT", "SMTPSettings", "TLSMode", "parse_smtp_url"]

TLSMode = Literal["starttls", "implicit", "none"]

#: The port each TLS mode listens on by convention (RFC 8314: 465 implicit TLS, 587 submission).
DEFAULT_PORTS: dict[TLSMode, int] = {"starttls": 587, "implicit": 465, "none": 25}
#: Seconds allowed for connecting and for each SMTP command.
DEFAULT_TIMEOUT = 30.0

_EXAMPLE = "smtp://user:password@mail.example.com:587?tls=starttls"
_ENCODE_HINT = (
    "percent-encode any @ : / ? # % in the user or password (@ is %40, # is %23, / is %2F)"
)
_PARAMETERS = ("tls", "timeout", "ca_file")


@dataclass(frozen=True)
class SMTPSettings:
    """Where and how to reach the SMTP server, as read from the URL.

    Attributes:
        host: The server's name or IP address.
        port: The server's port (defaults by TLS mode: 587, 465 or 25).
        tls: ``starttls`` (upgrade a plain connection; the default), ``implicit`` (TLS from the
            first byte, "SMTPS") or ``none`` (no encryption; local relays only).
        username: Who to log in as, or ``None`` to send without logging in.
        password: The password (kept out of ``repr`` so logs never show it).
        timeout: Seconds allowed to connect and for each SMTP command.
        ca_file: A PEM file of extra certificate authorities to trust (private CAs).
    """

    host: str
    port: int
    tls: TLSMode = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT
    ca_file: str | None = None

    @property
    def address(self) -> str:
        """``host:port`` as people write it (IPv6 in brackets), for messages and logs."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _fail(problem: str) -> ConfigurationError:
    return ConfigurationError(f"RAVEPILOT_MAILER_URL: {problem}")


def _query(query: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in _PARAMETERS:
            raise _fail(
                f"unknown parameter {name!r} in the smtp:// URL; "
                f"the known ones are {', '.join(_PARAMETERS)}"
            )
        if name in values:
            raise _fail(f"{name} is given twice in the smtp:// URL; keep one")
        values[name] = value
    return values


def _tls(value: str | None) -> TLSMode:
    mode = "starttls" if value is None else value.lower()
    if mode not in DEFAULT_PORTS:
        raise _fail(
            f"tls={value!r} is not a TLS mode; write tls=starttls (port 587, the usual "
            "submission port), tls=implicit (port 465, often called SSL/TLS or SMTPS) or "
            "tls=none (no encryption, for a relay on the same machine or network)"
        )
    return mode  # narrowed to TLSMode by the membership test


def _timeout(value: str | None) -> float:
    if value is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise _fail(f"timeout={value!r} must be a positive number of seconds, e.g. timeout=30")
    return seconds


def _port(parts_port: int | None, tls: TLSMode) -> int:
    if parts_port is None:
        return DEFAULT_PORTS[tls]
    if parts_port == 0:
        raise _fail("port 0 cannot be connected to; leave the port out to use the default")
    return parts_port


def parse_smtp_url(url: str) -> SMTPSettings:
    """Read an ``smtp://`` URL into :class:`SMTPSettings`.

    Args:
        url: ``smtp://[user:password@]host[:port][?tls=...&timeout=...&ca_file=...]``; the user
            and password are percent-decoded.

    Returns:
        The settings, with the port defaulted from the TLS mode.

    Raises:
        ConfigurationError: The URL is not one the SMTP mailer can use; the message says why
            and what to write instead.
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:  # an unbalanced IPv6 bracket, for one
        raise _fail(f"cannot read the smtp:// URL ({exc}); write {_EXAMPLE}") from None
    if parts.scheme.lower() != "smtp":
        raise _fail(f"{parts.scheme or 'no'} scheme: the SMTP mailer takes {_EXAMPLE}")
    if parts.fragment or "#" in url:
        raise _fail(f"the smtp:// URL must not contain '#'; {_ENCODE_HINT}")
    if parts.path not in ("", "/"):
        raise _fail(
            f"the smtp:// URL takes no path (got {parts.path!r}); write {_EXAMPLE}; "
            f"if it is part of a password, {_ENCODE_HINT}"
        )
    try:
        parts_port = parts.port
    except ValueError:
        raise _fail(
            "the port of the smtp:// URL must be a number from 1 to 65535; "
            f"if the colon belongs to a password, {_ENCODE_HINT}"
        ) from None
    host = parts.hostname
    if not host:
        raise _fail(f"the smtp:// URL has no host; write {_EXAMPLE}")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and not username:
        raise _fail("the smtp:// URL has a password but no user; write smtp://user:password@host")
    if username and password is None:
        raise _fail(
            f"the smtp:// URL has the user {username!r} but no password; write "
            "smtp://user:password@host (an empty password is written user:@host)"
        )
    query = _query(parts.query)
    tls = _tls(query.get("tls"))
    ca_file = query.get("ca_file")
    if ca_file is not None and (not ca_file or tls == "none"):
        raise _fail(
            "ca_file needs a path and a TLS mode (tls=starttls or tls=implicit); "
            "with tls=none no certificate is checked"
        )
    return SMTPSettings(
        host=host,
        port=_port(parts_port, tls),
        tls=tls,
        username=username or None,
        password=password if username else None,
        timeout=_timeout(query.get("timeout")),
        ca_file=ca_file,
    )
