"""The entry point's factory: turn a ``dailymail://`` URL into a :class:`DailyMailer`."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from ravepilot_core.errors import ConfigurationError
from ravepilot_core.protocols import Clock

from ravepilot_daily_mailer.mailer import DailyMailer

__all__ = ["SCHEME", "open_daily_mailer"]

SCHEME = "dailymail"
_EXAMPLE = "dailymail:///var/mail/ravepilot?keep_days=30"


def open_daily_mailer(url: str, *, clock: Clock | None = None) -> DailyMailer:
    """Create the mailer for ``dailymail:///absolute/dir`` or ``dailymail://relative/dir``.

    RavePilot calls it with the URL alone (``RAVEPILOT_MAILER_URL``); tests may pass a clock.

    Args:
        url: The mailer URL. Its one optional query parameter, ``keep_days=N``, deletes day
            files older than N days (0 keeps only today's).
        clock: Tells the time of sending; the system clock when omitted.

    Raises:
        ConfigurationError: If the URL is not a ``dailymail://`` URL, names no directory, or
            has an unknown parameter or a ``keep_days`` that is not a whole number of days.
    """
    parts = urlsplit(url)
    if parts.scheme != SCHEME:
        raise ConfigurationError(f"{url!r} is not a {SCHEME}:// URL; write it like {_EXAMPLE}")
    directory = unquote(parts.netloc + parts.path)
    if not directory:
        raise ConfigurationError(
            f"{SCHEME}:// needs the directory to write to, e.g. {_EXAMPLE} "
            f"(absolute: three slashes) or {SCHEME}://mail (relative to the working directory)"
        )
    return DailyMailer(Path(directory), keep_days=_keep_days(parts.query), clock=clock)


def _keep_days(query: str) -> int | None:
    """Read ``keep_days`` from the query, rejecting anything else."""
    parameters = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(parameters) - {"keep_days"})
    if unknown:
        raise ConfigurationError(
            f"{SCHEME}:// does not know the parameter(s) {', '.join(unknown)}; "
            f"the only one is keep_days, e.g. {_EXAMPLE}"
        )
    values = parameters.get("keep_days")
    if values is None:
        return None
    if len(values) != 1 or not (values[0].isascii() and values[0].isdigit()):
        given = "&".join(f"keep_days={value}" for value in values)
        raise ConfigurationError(
            f"{SCHEME}:// has {given}; keep_days must appear once, as a whole number of days, "
            "0 or more (0 keeps only today's file; leave it out to keep every file)"
        )
    return int(values[0])
