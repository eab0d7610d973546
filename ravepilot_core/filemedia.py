"""The ``file://`` media store, the embedded default: clips and renders as files in a directory.

Finished objects live at ``<root>/<key>``; unfinished uploads at ``<root>/.uploads/<key>``, on the
same filesystem so that finishing one is an atomic rename. Every call does its file I/O in a
worker thread, and nothing is ever read or written whole in memory::

    media = open_file_media("file:///var/lib/ravepilot/media")
    size = await media.append("ws_1/sub_1/clip_1.webm", 0, request_body_chunks)
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, TypeVar
from urllib.parse import unquote, urlsplit

import anyio
import anyio.to_thread

from ravepilot_core.errors import ConfigurationError, MediaNotFound

__all__ = ["READ_SIZE", "FileMediaStore", "check_media_key", "open_file_media"]

#: How many bytes :meth:`FileMediaStore.read` yields at a time.
READ_SIZE = 256 * 1024
# What append and put gather before a write: request bodies arrive in pieces of 64-256 KiB, and
# a hop to a worker thread per piece cost more than the write (benchmarks/README.md, upload.py).
_WRITE_SIZE = 1024 * 1024
_UPLOADS = ".uploads"
_MAX_KEY_LENGTH = 1024  # S3's limit; no RavePilot key comes near it
_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
_T = TypeVar("_T")


def check_media_key(key: str, *, allow_prefix: bool = False) -> None:
    """Refuse a key that is not a plain relative path RavePilot could have made.

    RavePilot makes every key itself (``ws_…/sub_…/clip_….webm``), so this is defence in depth:
    a key that slipped through from a request can never reach outside a store's directory or
    bucket prefix. Names may not start with ``.``, which keeps ``..`` out and leaves hidden names
    (``.uploads``) to the stores themselves.

    Args:
        key: The key: ``/``-separated names of ``A-Z a-z 0-9 . _ -``.
        allow_prefix: Whether a trailing ``/`` (a prefix, for deleting) is allowed.

    Raises:
        ValueError: Saying what is wrong with the key.
    """
    if not isinstance(key, str):
        raise ValueError(f"a media key must be a string, not {type(key).__name__}")
    path = key[:-1] if allow_prefix and key.endswith("/") else key
    problem = None
    if not path:
        problem = "it is empty"
    elif len(key) > _MAX_KEY_LENGTH:
        problem = f"it is longer than {_MAX_KEY_LENGTH} characters"
    elif "\\" in path:
        problem = "it contains a backslash"
    elif path.startswith("/"):
        problem = "it starts with '/' (keys are relative)"
    elif path.endswith("/"):
        problem = "it ends with '/' (only delete takes a prefix)"
    elif "//" in path:
        problem = "it has an empty name between two '/'"
    else:
        bad = [name for name in path.split("/") if not _SEGMENT.fullmatch(name)]
        if bad:
            problem = f"the name {bad[0]!r} is not made of A-Z a-z 0-9 . _ - or starts with '.'"
    if problem:
        raise ValueError(f"invalid media key {key!r}: {problem}")


def _fsync_directory(directory: Path) -> None:
    # A new or renamed file's name is durable only once its directory is synced.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _in_fresh_directory(directory: Path, action: Callable[[], _T]) -> _T:
    """Run ``action`` after creating ``directory``, again if a concurrent prune removed it."""
    for _ in range(5):
        directory.mkdir(parents=True, exist_ok=True)
        try:
            return action()
        except FileNotFoundError:
            continue  # the directory was pruned by a finish or abort in between
    directory.mkdir(parents=True, exist_ok=True)
    return action()


class FileMediaStore:
    """A :class:`~ravepilot_core.protocols.MediaStore` over a local directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._uploads = root / _UPLOADS

    def _object_path(self, key: str) -> Path:
        check_media_key(key)
        return self.root.joinpath(*key.split("/"))

    def _upload_path(self, key: str) -> Path:
        check_media_key(key)
        return self._uploads.joinpath(*key.split("/"))

    def _prune(self, directory: Path) -> None:
        """Remove ``directory`` and its parents below ``.uploads`` while they are empty."""
        while directory != self._uploads and self._uploads in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return  # not empty (another upload lives there) or already gone
            directory = directory.parent

    # -- uploads -------------------------------------------------------------------------------
    async def append(self, key: str, offset: int, chunks: AsyncIterable[bytes]) -> int:
        """Write ``chunks`` into upload ``key`` from ``offset``; return its size, fsynced."""
        path = self._upload_path(key)
        if offset < 0:
            raise ValueError(f"offset must not be negative, got {offset}")
        file = await anyio.to_thread.run_sync(self._open_upload, path, offset)
        try:
            await _write_chunks(file, chunks)
        finally:
            # Even when the chunks failed (the client went away) or the task is cancelled,
            # what was written is made durable: the caller counts it as received.
            with anyio.CancelScope(shield=True):
                size = await anyio.to_thread.run_sync(self._sync_and_close, file)
        return size

    def _open_upload(self, path: Path, offset: int) -> BinaryIO:
        created = not path.exists()
        fd = _in_fresh_directory(path.parent, lambda: os.open(path, os.O_RDWR | os.O_CREAT, 0o666))
        file = os.fdopen(fd, "r+b")
        try:
            # One writer at a time, across processes too (serve --workers N): a second request
            # for the same upload waits here, then cuts back to its own offset, which is right
            # because storage let only the latest claim move the upload on.
            fcntl.flock(fd, fcntl.LOCK_EX)
            held = os.fstat(fd).st_size
            if offset > held:
                raise ValueError(
                    f"cannot append to upload {path.relative_to(self._uploads)} at byte "
                    f"{offset}: it holds {held} bytes"
                )
            # Bytes beyond offset came from a request the caller never recorded: drop them.
            file.truncate(offset)
            file.seek(offset)
            if created:
                _fsync_directory(path.parent)
        except BaseException:
            file.close()
            if created:
                self._remove_upload(path)
            raise
        return file

    @staticmethod
    def _sync_and_close(file: BinaryIO) -> int:
        with file:
            file.flush()
            os.fsync(file.fileno())
            return file.tell()

    async def finish_upload(self, key: str, size: int) -> None:
        """Truncate upload ``key`` to ``size`` bytes and rename it to the object ``key``."""
        source, target = self._upload_path(key), self._object_path(key)
        await anyio.to_thread.run_sync(self._finish, key, source, target, size)

    def _finish(self, key: str, source: Path, target: Path, size: int) -> None:
        try:
            file = source.open("r+b")
        except FileNotFoundError:
            if size != 0:
                raise MediaNotFound(f"there is no unfinished upload {key!r}") from None
            file = _in_fresh_directory(source.parent, lambda: source.open("w+b"))
        with file:
            held = os.fstat(file.fileno()).st_size
            if held < size:
                raise ValueError(f"upload {key!r} holds {held} bytes, fewer than {size}")
            file.truncate(size)
            os.fsync(file.fileno())
        _in_fresh_directory(target.parent, lambda: os.replace(source, target))
        _fsync_directory(target.parent)
        self._prune(source.parent)

    async def abort_upload(self, key: str) -> None:
        """Delete upload ``key`` if there is one."""
        path = self._upload_path(key)
        await anyio.to_thread.run_sync(self._remove_upload, path)

    def _remove_upload(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        self._prune(path.parent)

    # -- objects -------------------------------------------------------------------------------
    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Write the object ``key`` to a hidden file beside it, then rename it into place."""
        target = self._object_path(key)
        # Beside the target (same filesystem, so the rename is atomic); keys never start with
        # "." so the name cannot clash, and erasing the prefix also removes a put in progress.
        partial = target.with_name(f".{target.name}.{os.urandom(6).hex()}.partial")

        def create() -> BinaryIO:
            return partial.open("xb")

        file = await anyio.to_thread.run_sync(_in_fresh_directory, target.parent, create)
        try:
            try:
                await _write_chunks(file, chunks)
            finally:
                with anyio.CancelScope(shield=True):
                    size = await anyio.to_thread.run_sync(self._sync_and_close, file)
            await anyio.to_thread.run_sync(os.replace, partial, target)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(lambda: partial.unlink(missing_ok=True))
            raise
        await anyio.to_thread.run_sync(_fsync_directory, target.parent)
        return size

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Yield bytes ``start`` to ``end`` of object ``key`` in pieces of :data:`READ_SIZE`."""
        path = self._object_path(key)
        if start < 0 or (end is not None and end < 0):
            raise ValueError(f"a byte range cannot be negative: start={start}, end={end}")
        try:
            file = await anyio.open_file(path, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise MediaNotFound(f"there is no media object {key!r}") from None
        async with file:
            await file.seek(start)
            remaining = None if end is None else max(0, end - start)
            while remaining is None or remaining > 0:
                wanted = READ_SIZE if remaining is None else min(READ_SIZE, remaining)
                piece = await file.read(wanted)
                if not piece:
                    return
                if remaining is not None:
                    remaining -= len(piece)
                yield piece

    async def size(self, key: str) -> int | None:
        """Return the size of object ``key``, or None."""
        path = self._object_path(key)
        return await anyio.to_thread.run_sync(_file_size, path)

    async def delete(self, keys: Sequence[str]) -> None:
        """Delete objects and uploads; a key ending in ``/`` removes that whole tree."""
        for key in keys:
            check_media_key(key, allow_prefix=True)
        await anyio.to_thread.run_sync(self._delete, list(keys))

    def _delete(self, keys: list[str]) -> None:
        for key in keys:
            names = key.rstrip("/").split("/")
            upload = self._uploads.joinpath(*names)
            for path in (self.root.joinpath(*names), upload):
                if key.endswith("/"):
                    shutil.rmtree(path, ignore_errors=True)
                elif not path.is_dir():  # a directory is a prefix, not the object asked for
                    try:
                        path.unlink(missing_ok=True)
                    except NotADirectoryError:
                        pass  # a parent is a file: there is nothing under it
            self._prune(upload.parent)

    async def playback_url(
        self, key: str, *, expires_at: datetime, content_type: str | None = None
    ) -> str | None:
        """Return None: RavePilot serves local files through its own signed ``/media`` route."""
        check_media_key(key)
        return None

    async def close(self) -> None:
        """Nothing to release: every call opens and closes its own files."""


async def _write_chunks(file: BinaryIO, chunks: AsyncIterable[bytes]) -> None:
    """Write ``chunks`` to ``file`` in batches of about 1 MiB, one thread hop each.

    Whatever way the chunks end (exhausted, failed, or the task cancelled), the chunks received
    but not yet written are written before this returns or raises: callers count them.
    """
    batch: list[bytes] = []
    held = 0
    try:
        async for chunk in chunks:
            if chunk:
                # Kept until the batch is written: a copy, should the sender reuse its buffer.
                batch.append(chunk if isinstance(chunk, bytes) else bytes(chunk))
                held += len(chunk)
                if held >= _WRITE_SIZE:
                    pieces, batch, held = batch, [], 0
                    await anyio.to_thread.run_sync(file.writelines, pieces)
    finally:
        if batch:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(file.writelines, batch)


def _file_size(path: Path) -> int | None:
    try:
        if path.is_file():
            return path.stat().st_size
    except (FileNotFoundError, NotADirectoryError):
        pass
    return None


def open_file_media(url: str) -> FileMediaStore:
    """Create the store for ``file:///absolute/dir`` (or ``file://relative/dir``).

    Raises:
        ConfigurationError: If the URL names no directory, or it cannot be created or written.
    """
    parts = urlsplit(url)
    if parts.scheme != "file":
        raise ConfigurationError(f"RAVEPILOT_MEDIA_URL: not a file:// URL: {url!r}")
    path = unquote(parts.netloc + parts.path)
    if not path or parts.query or parts.fragment:
        raise ConfigurationError(
            "RAVEPILOT_MEDIA_URL: file:// needs a directory and nothing else, "
            f"e.g. file:///var/lib/ravepilot/media (got {url!r})"
        )
    root = Path(path)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"RAVEPILOT_MEDIA_URL: cannot create the media directory {root}: {exc.strerror}"
        ) from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise ConfigurationError(
            f"RAVEPILOT_MEDIA_URL: the media directory {root} is not writable by this user"
        )
    return FileMediaStore(root)
