"""An example RavePilot mailer plugin: every email is appended to one mbox file per UTC day.

Installed, it serves ``RAVEPILOT_MAILER_URL=dailymail:///var/mail/ravepilot?keep_days=30``
through the entry point ``dailymail`` in the group ``ravepilot.mailer``. It imports only
``ravepilot_core``, the standard library and anyio.
"""

from __future__ import annotations

from ravepilot_daily_mailer.mailer import LOCK_TIMEOUT, DailyMailer
from ravepilot_daily_mailer.url import SCHEME, open_daily_mailer

__all__ = ["LOCK_TIMEOUT", "SCHEME", "DailyMailer", "open_daily_mailer"]
