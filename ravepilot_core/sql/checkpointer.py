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
seldom happens while commits keep arriving during the copying. Two things bound the file:

- the writer connection keeps SQLite's automatic checkpoint as a backstop, at ten times its
  default size. By then this thread has copied nearly every frame, so that checkpoint is short,
  and the WAL starts over after it (in the same file: cutting the file there, with
  ``journal_size_limit``, doubled the p99 delivery latency);
- once writes pause (a look finds the WAL as the previous one did), a file longer than
  :data:`TRUNCATE_BYTES` is emptied with a ``TRUNCATE`` checkpoint. Only then: that checkpoint
  holds the write lock through its fsyncs, which under steady writes made webhook deliveries
  wait (p99 from 9 to 60 ms).
"""

from __future__ import annotations

import logging
import os
import pathlib
import sqlite3
import threading

__all__ = ["BACKSTOP_PAGES", "CHECK_INTERVAL", "TRUNCATE_BYTES", "Checkpointer", "checkpoint_mode"]

log = logging.getLogger("ravepilot.sqlite")

BACKSTOP_PAGES = 10_000  # the writer checkpoints inline past this (SQLite's default: 1,000)
CHECK_INTERVAL = 0.25  # seconds between looks at the WAL
TRUNCATE_BYTES = 16 * 1024 * 1024  # a WAL file longer than this is cut back
MAX_BACKOFF = 30.0  # seconds between tries while checkpoints keep failing


WalState = tuple[int, int]  # the WAL file's modification time (ns) and size


def checkpoint_mode(
    written: WalState | None, *, previous: WalState | None, done: WalState | None
) -> str | None:
    """Which checkpoint a look that found the WAL as ``written`` should run, if any.

    ``previous`` is what the look before found; ``done`` what the last complete checkpoint did.
    """
    if written is None:
        return None  # no WAL (yet, or any more)
    if written == previous and written[1] >= TRUNCATE_BYTES:
        # No commit since the last look: empty the file now, while no writer waits. Under
        # steady writes it would hold every writer up for its fsyncs (p99 delivery latency
        # went from 9 to 60 ms); the backstop lets the WAL start over then.
        return "TRUNCATE"
    if written != done:
        return "PASSIVE"
    return None  # nothing committed since the last complete checkpoint


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

    def _wal_written(self) -> WalState | None:
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
        done: WalState | None = None  # the WAL as it was at the last complete checkpoint
        wait = CHECK_INTERVAL
        failing = False
        previous: WalState | None = None  # the WAL as the last look found it
        try:
            while not self._stopping.wait(wait):
                written = self._wal_written()
                mode = checkpoint_mode(written, previous=previous, done=done)
                previous = written
                if mode is None:
                    continue
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
