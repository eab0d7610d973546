"""The core finds the plugin by its URL scheme; the public API is what __all__ says."""

from __future__ import annotations

import pytest
from smtp_servers import free_port

import ravepilot_smtp
from ravepilot_core.backends import installed_backends, open_backend
from ravepilot_core.protocols import Mailer
from ravepilot_smtp import SMTPMailer

pytestmark = pytest.mark.anyio


async def test_open_backend_finds_the_smtp_mailer() -> None:
    mailer = await open_backend("mailer", f"smtp://127.0.0.1:{free_port()}?tls=none")
    try:
        assert isinstance(mailer, SMTPMailer)
        assert isinstance(mailer, Mailer)
        assert mailer.settings.tls == "none"
    finally:
        await mailer.close()


def test_installed_backends_lists_smtp_from_this_distribution() -> None:
    (info,) = [b for b in installed_backends() if b.kind == "mailer" and b.scheme == "smtp"]
    assert info.distribution == "ravepilot-smtp"
    assert info.target == "ravepilot_smtp:open_smtp_mailer"


def test_all_is_sorted_and_complete() -> None:
    assert ravepilot_smtp.__all__ == sorted(ravepilot_smtp.__all__)
    public = {name for name in vars(ravepilot_smtp) if not name.startswith("_")}
    modules = {"annotations", "mailer", "settings", "failures"}
    assert public - modules == set(ravepilot_smtp.__all__)
