"""WAL checkpoints on a thread of their own, so that no request waits for one.

In WAL mode every commit appends to the ``-wal`` file, and a checkpoint copies those pages back
into the database file. By default SQLite runs the checkpoint inside whichever ``COMMIT`` grows
the WAL past 1,000 pages: that caller, and the event loop it runs on, waits for it. It cost a
tenth of an invitation's time on average, and the commits that drew it took milliseconds.

A :class:`Checkpointer` instead looks at the WAL four times a second from a daemon thread with
its own connection, and checkpoints whenever it was written to since the last complete
checkpoint. The ``sqlite3`` module releases the GIL while SQLite works, so the copying runs on
another core. Its checkpoints never wait for a lock (the connection's busy timeout is zero):
one that finds a writer or readers in the way copies what it can, and the next look goes on.

SQLite starts the WAL file over only when a write begins after *every* frame was copied, which
seldom happens while commits keep arriving during the copying. So once the file has grown past
:data:`TRUNCATE_BYTES`, the thread asks for a ``TRUNCATE`` checkpoint, which also empties the
file when it gets a moment with no writer and no reader. The writer connection keeps SQLite's
automatic checkpoint as a backstop, at ten times its default size, should this thread fall
behind.
"""

from __future__ import annotations

import logging
import os
import pathlib
import sqlite3
import threading

__all__ = ["BACKSTOP_PAGES", "CHECK_INTERVAL", "TRUNCATE_BYTES", "Checkpointer"]

log = logging.getLogger("ravepilot.sqlite")

BACKSTOP_PAGES = 10_000  # the writer checkpoints inline past this (SQLite's default: 1,000)
CHECK_INTERVAL = 0.25  # seconds between looks at the WAL
TRUNCATE_BYTES = 16 * 1024 * 1024  # past this, ask for a checkpoint that empties the file
MAX_BACKOFF = 30.0  # seconds between tries while checkpoints keep failing


class Checkpointer:
    """Checkpoints one database's WAL in the background until :meth:`stop`."""

    def __init__(self, path: str) -> None:
        self._path = os.path.abspath(path)  # the engine's file, whatever chdir comes later
        self._wal = f"{self._path}-wal"
        self.checkpoints = 0  # how many completed: for tests and curious operators
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
        """Stop the thread; a checkpoint in progress finishes first (milliseconds)."""
        self._stopping.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def _wal_written(self) -> tuple[int, int] | None:
        """The WAL file's modification time and size, or None when there is none."""
        try:
            found = os.stat(self._wal)
        except OSError:  # gone, or its directory is (the engine's statements will say why)
            return None
        return found.st_mtime_ns, found.st_size

    def _connect(self) -> sqlite3.Connection:
        # mode=rw: never create a database where the engine's has gone.
        return sqlite3.connect(
            f"{pathlib.Path(self._path).as_uri()}?mode=rw",
            uri=True,
            isolation_level=None,
            timeout=0,
        )

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        done: tuple[int, int] | None = None  # the WAL as it was at the last complete checkpoint
        wait = CHECK_INTERVAL
        failing = False
        try:
            while not self._stopping.wait(wait):
                written = self._wal_written()
                if written is None or written == done:
                    continue  # nothing committed since the last complete checkpoint
                mode = "TRUNCATE" if written[1] >= TRUNCATE_BYTES else "PASSIVE"
                try:
                    if connection is None:
                        connection = self._connect()
                    _, in_wal, copied = connection.execute(
                        f"PRAGMA wal_checkpoint({mode})"
                    ).fetchone()
                except sqlite3.Error as exc:
                    # Back off and say so once: the backstop still bounds the WAL meanwhile.
                    if not failing:
                        log.warning("background WAL checkpoints of %s fail: %s", self._path, exc)
                    failing, wait = True, min(wait * 2, MAX_BACKOFF)
                    continue
                if failing:
                    log.info("background WAL checkpoints of %s work again", self._path)
                failing, wait = False, CHECK_INTERVAL
                if copied == in_wal:  # every frame; else readers held some back: look again
                    done = written
                    self.checkpoints += 1
        except Exception:  # a bug: the backstop takes over, but say so
            log.exception("the background WAL checkpointer of %s stopped", self._path)
        finally:
            if connection is not None:
                connection.close()
