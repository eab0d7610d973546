"""The mailer: append each email to ``<directory>/<YYYY-MM-DD>.mbox``, one file per UTC day."""

from __future__ import annotations

import logging
import mailbox
import re
import time
from datetime import UTC, date, timedelta
from email.utils import parseaddr
from pathlib import Path

import anyio
import anyio.to_thread
from ravepilot_core.clock import SystemClock
from ravepilot_core.errors import BackendError
from ravepilot_core.mime import render_mime
from ravepilot_core.models import Email
from ravepilot_core.protocols import Clock

__all__ = ["LOCK_TIMEOUT", "DailyMailer"]

log = logging.getLogger("ravepilot_daily_mailer")

#: How long a send waits for another process to release a day file before it gives up (and the
#: email job retries later with backoff).
LOCK_TIMEOUT = 10.0
_LOCK_POLL = 0.01
_DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.mbox$")


class DailyMailer:
    """A :class:`~ravepilot_core.protocols.Mailer` that keeps one mbox file per day.

    Any mail client or ``mailbox.mbox`` reads the files. Sends in this process take turns on an
    :class:`anyio.Lock`; other processes writing the same directory are kept out by the mbox
    file locks (``lockf`` and a ``.lock`` file), which ``mailbox`` takes for us.

    Example::

        mailer = DailyMailer(Path("/var/mail/ravepilot"), keep_days=30)
        await mailer.send(email)  # appended to /var/mail/ravepilot/2026-01-01.mbox
    """

    def __init__(
        self,
        directory: Path,
        *,
        keep_days: int | None = None,
        clock: Clock | None = None,
        lock_timeout: float = LOCK_TIMEOUT,
    ) -> None:
        """Create a mailer writing into ``directory`` (created on the first send).

        Args:
            directory: Where the day files go.
            keep_days: Delete day files more than this many days older than today, on the first
                send of each day; ``None`` keeps every file.
            clock: Tells the time of sending (and so the day); tests pass a frozen clock.
            lock_timeout: Seconds to wait for another process's lock on a day file.
        """
        self.directory = directory
        self.keep_days = keep_days
        self._clock: Clock = clock or SystemClock()
        self._lock_timeout = lock_timeout
        self._lock = anyio.Lock()
        self._pruned_day: date | None = None

    async def send(self, email: Email) -> None:
        """Append ``email`` to the file of the current UTC day.

        Raises:
            BackendError: If another process held the day file for longer than the lock
                timeout; like any other exception (a full disk, a permission error), it makes
                the email job retry with backoff.
        """
        async with self._lock:
            # Read the time under the lock, so each file's messages are in sending order.
            sent_at = self._clock.now().astimezone(UTC)
            message = mailbox.mboxMessage(render_mime(email, date=sent_at))
            message.set_from(_envelope_sender(email.sender), sent_at.timetuple())
            # File locks, fsync and the mbox scan block: keep them off the event loop. A
            # cancelled send still waits for its thread, so the lock is never let go mid-write.
            path = await anyio.to_thread.run_sync(self._write, sent_at.date(), message)
        log.info("email to %s: %s (in %s)", email.to, email.subject, path)

    async def close(self) -> None:
        """Nothing to release: every send opens and closes its day file."""

    def _write(self, day: date, message: mailbox.mboxMessage) -> Path:
        """Append ``message`` to the day file, then prune old files once a day (worker thread)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{day.isoformat()}.mbox"
        # mailbox creates a missing file with mode "wb+", which truncates: if two processes both
        # found it missing, the second would erase what the first wrote. Create it ourselves
        # without truncating; mailbox then opens it like any existing file.
        path.touch(exist_ok=True)
        box = mailbox.mbox(path, create=False)
        try:
            self._lock_box(box, path)
            try:
                box.add(message)
                box.flush()  # only appends were made, so this is a flush and fsync, no rewrite
            finally:
                box.unlock()
        finally:
            box.close()
        if self.keep_days is not None and self._pruned_day != day:
            self._prune(day, self.keep_days)
        return path

    def _lock_box(self, box: mailbox.mbox, path: Path) -> None:
        """Take the mbox locks, waiting while another process holds them."""
        deadline = time.monotonic() + self._lock_timeout
        while True:
            try:
                box.lock()  # never blocks: it raises at once when the file is taken
                return
            except mailbox.ExternalClashError:
                if time.monotonic() >= deadline:
                    raise BackendError(
                        f"{path} stayed locked for {self._lock_timeout:g} s: another process is "
                        f"writing it, or one that died left {path}.lock behind (delete it)"
                    ) from None
                time.sleep(_LOCK_POLL)

    def _prune(self, today: date, keep_days: int) -> None:
        """Delete the day files older than ``keep_days`` days; other files are left alone."""
        oldest_kept = today - timedelta(days=keep_days)
        try:
            for path in self.directory.iterdir():
                day = _day_of(path.name)
                if day is not None and day < oldest_kept:
                    path.unlink(missing_ok=True)  # another process may prune at the same time
                    log.info("deleted %s (older than %d days)", path, keep_days)
        except OSError:
            # The email is already written: failing the send now would make the job send it
            # twice. Say so and try again on the next send.
            log.warning("could not delete old day files in %s", self.directory, exc_info=True)
        else:
            self._pruned_day = today


def _day_of(name: str) -> date | None:
    """The day of a day file's name (``2026-01-31.mbox``), or None for any other file."""
    match = _DAY_FILE.match(name)
    try:
        return date.fromisoformat(match[1]) if match else None
    except ValueError:  # 2026-13-01.mbox: not ours
        return None


def _envelope_sender(sender: str) -> str:
    """The address for the mbox ``From `` line, whose fields are separated by spaces."""
    address = parseaddr(sender)[1]  # render_mime has checked it is an ASCII address
    return "MAILER-DAEMON" if any(c.isspace() for c in address) else address
