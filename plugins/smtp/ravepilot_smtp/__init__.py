"""RavePilot's SMTP mailer: ``RAVEPILOT_MAILER_URL=smtp://user:pass@host:port?tls=starttls``.

Installed, it serves the ``smtp`` scheme of the ``ravepilot.mailer`` entry-point group, so the
core finds it by URL::

    mailer = await open_backend("mailer", "smtp://me:secret@mail.example.com?tls=starttls")
"""

from __future__ import annotations

from ravepilot_smtp.mailer import SMTPMailer, open_smtp_mailer
from ravepilot_smtp.settings import SMTPSettings, TLSMode, parse_smtp_url

__all__ = ["SMTPMailer", "SMTPSettings", "TLSMode", "open_smtp_mailer", "parse_smtp_url"]
