"""Reading smtp:// URLs: defaults, decoding, and errors that say what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from ravepilot_core.errors import ConfigurationError
from ravepilot_smtp import SMTPMailer, SMTPSettings, parse_smtp_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", SMTPSettings(host="mail.example.com", port=587)),
        (
            "smtp://mail.example.com?tls=implicit",
            SMTPSettings(host="mail.example.com", port=465, tls="implicit"),
        ),
        ("smtp://relay?tls=none", SMTPSettings(host="relay", port=25, tls="none")),
        ("smtp://relay:2525?tls=NONE", SMTPSettings(host="relay", port=2525, tls="none")),
        (
            "smtp://apikey:SG.a%2Fb%3Dc@smtp.sendgrid.net:587",
            SMTPSettings(
                host="smtp.sendgrid.net", port=587, username="apikey", password="SG.a/b=c"
            ),
        ),
        (
            "smtp://me%40acme.test:p%40ss%3Aw%2Frd%23%25%20%C3%BC@mail.acme.test",
            SMTPSettings(
                host="mail.acme.test", port=587, username="me@acme.test", password="p@ss:w/rd#% ü"
            ),
        ),
        ("smtp://user:@relay/", SMTPSettings(host="relay", port=587, username="user", password="")),
        ("smtp://[::1]:25?tls=none", SMTPSettings(host="::1", port=25, tls="none")),
        (
            "smtp://mail.example.com?timeout=2.5&ca_file=/etc/ssl/private%20ca.pem",
            SMTPSettings(
                host="mail.example.com", port=587, timeout=2.5, ca_file="/etc/ssl/private ca.pem"
            ),
        ),
        ("SMTP://Mail.Example.COM", SMTPSettings(host="mail.example.com", port=587)),
    ],
)
def test_reads_the_url(url: str, expected: SMTPSettings) -> None:
    assert parse_smtp_url(url) == expected


def test_address_brackets_ipv6() -> None:
    assert parse_smtp_url("smtp://[::1]?tls=none").address == "[::1]:25"
    assert parse_smtp_url("smtp://mail.example.com").address == "mail.example.com:587"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("smtps://mail.example.com", "smtps scheme"),
        ("smtp://", "has no host"),
        ("smtp://:25", "has no host"),
        ("smtp://user:pass@:25", "has no host"),
        ("smtp://mail.example.com?tls=ssl", "tls='ssl' is not a TLS mode; write tls=starttls"),
        ("smtp://mail.example.com?tls=", "tls='' is not a TLS mode"),
        ("smtp://mail.example.com?tsl=none", "unknown parameter 'tsl'.*tls, timeout, ca_file"),
        ("smtp://mail.example.com?tls=none&tls=starttls", "tls is given twice"),
        ("smtp://mail.example.com?timeout=soon", "timeout='soon' must be a positive number"),
        ("smtp://mail.example.com?timeout=0", "timeout='0' must be a positive number"),
        ("smtp://mail.example.com?timeout=-1", "must be a positive number"),
        ("smtp://mail.example.com?timeout=inf", "must be a positive number"),
        ("smtp://mail.example.com?timeout=nan", "must be a positive number"),
        ("smtp://:secret@mail.example.com", "has a password but no user"),
        ("smtp://me@mail.example.com", "has the user 'me' but no password"),
        ("smtp://mail.example.com:smtp", "port .* must be a number"),
        ("smtp://mail.example.com:70000", "port .* must be a number"),
        ("smtp://mail.example.com:0", "port 0"),
        ("smtp://me:pa:ss@mail.example.com:x", "percent-encode"),
        ("smtp://me:pa#ss@mail.example.com", "must not contain '#'.*%23"),
        ("smtp://me:pa/ss@mail.example.com", "no path|must be a number"),
        ("smtp://mail.example.com/inbox", "takes no path"),
        ("smtp://mail.example.com?tls=none&ca_file=/ca.pem", "with tls=none no certificate"),
        ("smtp://mail.example.com?ca_file=", "ca_file needs a path"),
        ("smtp://[::1", "cannot read the smtp:// URL"),
    ],
)
def test_a_bad_url_says_what_to_fix(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as failure:
        parse_smtp_url(url)
    assert str(failure.value).startswith("RAVEPILOT_MAILER_URL: ")


def test_the_password_is_not_in_the_settings_repr() -> None:
    settings = parse_smtp_url("smtp://me:hunter2@mail.example.com")
    assert "hunter2" not in repr(settings)


def test_a_missing_ca_file_is_a_configuration_error(tmp_path: Path) -> None:
    settings = parse_smtp_url(f"smtp://mail.example.com?ca_file={tmp_path}/missing.pem")
    with pytest.raises(ConfigurationError, match=r"missing\.pem.*cannot be read as PEM"):
        SMTPMailer(settings)


def test_a_ca_file_that_is_not_pem_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    settings = parse_smtp_url(f"smtp://mail.example.com?ca_file={tmp_path}/ca.pem")
    with pytest.raises(ConfigurationError, match="cannot be read as PEM"):
        SMTPMailer(settings)
