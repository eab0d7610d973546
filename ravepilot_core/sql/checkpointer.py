"""WAL checkpoints on a thread of their own, so that no request waits for one.

In WAL mode every commit appends to the ``-wal`` file, and a checkpoint copies those pages back
into the database file. By default SQLite runs the checkpoint inside whichever ``COMMIT`` grows
the WAL past 1,000 pages: that caller, and the event loop it runs on, waits for it. It cost a
tenth of an invitation's time on average, and the commits that drew it took milliseconds.

A :class:`Checkpointer` instead looks at the WAL four times a second from a daemon thread with
its own connection, and checkpoints whenever it was written to since the last look. The
``sqlite3`` module releases the GIL while SQLite works, so the copying runs on another core.
``PASSIVE`` checkpoints never wait for a lock: one that finds readers or writers in the way
copies what it can, and the next one continues. The writer connection keeps SQLite's automatic
checkpoint as a backstop, at ten times its default size, should this thread fall behind.
"""

from __future__ import annotations

import logging
import os
import pathlib
import sqlite3
import threading

__all__ = ["BACKSTOP_PAGES", "CHECK_INTERVAL", "Checkpointer"]

log = logging.getLogger("ravepilot.sqlite")

BACKSTOP_PAGES = 10_000  # the writer checkpoints inline past this (SQLite's default: 1,000)
CHECK_INTERVAL = 0.25  # seconds between looks at the WAL


class Checkpointer:
    """Checkpoints one database's WAL in the background until :meth:`stop`."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._wal = f"{path}-wal"
        self.checkpoints = 0  # how many ran: for tests and curious operators
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"ravepilot-checkpoint:{os.path.basename(path)}", daemon=True
        )
        self._thread.start()

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stop the thread and wait for a checkpoint in progress to finish."""
        self._stopping.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def _wal_written(self) -> tuple[int, int] | None:
        try:
            found = os.stat(self._wal)
        except FileNotFoundError:
            return None
        return found.st_mtime_ns, found.st_size

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        checkpointed = self._wal_written()
        try:
            while not self._stopping.wait(CHECK_INTERVAL):
                written = self._wal_written()
                if written is None or written == checkpointed:
                    continue  # nothing committed since the last checkpoint
                try:
                    if connection is None:
                        # mode=rw: never create a database where the engine's has gone.
                        connection = sqlite3.connect(
                            f"{pathlib.Path(self._path).absolute().as_uri()}?mode=rw",
                            uri=True,
                            isolation_level=None,
                            timeout=0,
                        )
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:
                    # Failing now; the next look tries again, and the backstop bounds the WAL.
                    log.warning("background WAL checkpoint of %s failed: %s", self._path, exc)
                    continue
                checkpointed = written
                self.checkpoints += 1
        finally:
            if connection is not None:
                connection.close()
