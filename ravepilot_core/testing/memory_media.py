"""An in-memory :class:`~ravepilot_core.protocols.MediaStore` for tests and demos (``memory://``).

It keeps the semantics of the file and S3 stores (it passes the same contract suite), including
key validation, so a test that passes against it does not depend on a laxity of its own. Tests may
look behind its back through :attr:`MemoryMediaStore.objects` and :attr:`MemoryMediaStore.uploads`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from datetime import datetime
from urllib.parse import urlsplit

from anyio.lowlevel import checkpoint

from ravepilot_core.errors import ConfigurationError, MediaNotFound
from ravepilot_core.filemedia import READ_SIZE, check_media_key

__all__ = ["MemoryMediaStore", "open_memory_media"]


class MemoryMediaStore:
    """Objects and unfinished uploads in two dicts.

    Attributes:
        objects: Finished objects by key.
        uploads: Unfinished uploads by key.
    """

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.uploads: dict[str, bytearray] = {}

    async def append(self, key: str, offset: int, chunks: AsyncIterable[bytes]) -> int:
        """Add ``chunks`` to upload ``key`` from ``offset``; return its size."""
        check_media_key(key)
        held = len(self.uploads.get(key, b""))
        if not 0 <= offset <= held:
            raise ValueError(f"cannot append to upload {key!r} at byte {offset}: it holds {held}")
        upload = self.uploads.setdefault(key, bytearray())
        del upload[offset:]
        # Each chunk is kept as soon as it arrives, so chunks that fail midway keep what came.
        async for chunk in chunks:
            upload += chunk
        await checkpoint()
        return len(upload)

    async def finish_upload(self, key: str, size: int) -> None:
        """Make the first ``size`` bytes of upload ``key`` the object ``key``."""
        check_media_key(key)
        await checkpoint()
        upload = self.uploads.get(key)
        if upload is None:
            if size != 0:
                raise MediaNotFound(f"there is no unfinished upload {key!r}")
            upload = bytearray()
        if len(upload) < size:
            raise ValueError(f"upload {key!r} holds {len(upload)} bytes, fewer than {size}")
        self.objects[key] = bytes(upload[:size])
        self.uploads.pop(key, None)

    async def abort_upload(self, key: str) -> None:
        """Forget upload ``key`` if there is one."""
        check_media_key(key)
        await checkpoint()
        self.uploads.pop(key, None)

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Store the object ``key`` once every chunk arrived (a failed put leaves the old one)."""
        check_media_key(key)
        data = bytearray()
        async for chunk in chunks:
            data += chunk
        self.objects[key] = bytes(data)
        await checkpoint()
        return len(data)

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Yield bytes ``start`` to ``end`` of object ``key`` in pieces of ``READ_SIZE``."""
        check_media_key(key)
        if start < 0 or (end is not None and end < 0):
            raise ValueError(f"a byte range cannot be negative: start={start}, end={end}")
        await checkpoint()
        data = self.objects.get(key)
        if data is None:
            raise MediaNotFound(f"there is no media object {key!r}")
        stop = len(data) if end is None else min(end, len(data))
        for position in range(start, stop, READ_SIZE):
            yield data[position : min(position + READ_SIZE, stop)]
            await checkpoint()

    async def size(self, key: str) -> int | None:
        """Return the size of object ``key``, or None."""
        check_media_key(key)
        await checkpoint()
        data = self.objects.get(key)
        return None if data is None else len(data)

    async def delete(self, keys: Sequence[str]) -> None:
        """Delete objects and uploads; a key ending in ``/`` deletes everything under it."""
        for key in keys:
            check_media_key(key, allow_prefix=True)
        await checkpoint()
        for key in keys:
            for table in (self.objects, self.uploads):
                if key.endswith("/"):
                    for name in [name for name in table if name.startswith(key)]:
                        del table[name]
                else:
                    table.pop(key, None)

    async def playback_url(
        self, key: str, *, expires_at: datetime, content_type: str | None = None
    ) -> str | None:
        """Return None: there is nothing to sign (RavePilot serves it through ``/media``)."""
        check_media_key(key)
        await checkpoint()
        return None

    async def close(self) -> None:
        """Nothing to release."""


def open_memory_media(url: str) -> MemoryMediaStore:
    """Create an empty in-memory media store for ``memory://`` (every call gets its own).

    Raises:
        ConfigurationError: If ``url`` is not a ``memory://`` URL.
    """
    if urlsplit(url).scheme != "memory":
        raise ConfigurationError(f"not a memory:// URL: {url!r}")
    return MemoryMediaStore()
