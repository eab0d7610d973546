"""The S3 media store: finished objects at ``<prefix>/<key>``, uploads as staged parts.

An S3 object cannot be appended to, so an unfinished upload is a run of *part objects* under
``<prefix>/.uploads/<key>/``, each named by the byte offset where it starts (20 digits, so names
sort by offset) and at most :data:`PART_SIZE` long. The upload is the run of parts that follow
each other without a gap from offset 0; anything else there is debris of an interrupted call and
is deleted by the next ``append``. ``finish_upload`` streams the parts, in order, into one
multipart upload of the final object and then deletes them.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio
import obstore
from obstore.store import S3Store

from ravepilot_core.errors import BackendError, MediaNotFound
from ravepilot_core.filemedia import READ_SIZE, check_media_key
from ravepilot_s3.failures import backend_errors
from ravepilot_s3.settings import S3Settings, make_s3_store, parse_s3_url

__all__ = ["MAX_URL_LIFETIME", "PART_SIZE", "S3MediaStore", "open_s3_media"]

#: The most an upload buffers in memory before writing a part; also the multipart chunk size.
PART_SIZE = 8 * 1024 * 1024
#: The longest a presigned URL may live (SigV4's limit).
MAX_URL_LIFETIME = timedelta(days=7)
_STAGING = ".uploads"
_OFFSET_DIGITS = 20
_UPLOAD_CONCURRENCY = 2  # parts in flight per multipart upload: bounds memory to a few parts
_FLUSH_TIMEOUT = 60.0  # seconds a cancelled append may take to save what it already received


@dataclass(frozen=True)
class _Part:
    offset: int
    size: int
    path: str

    @property
    def end(self) -> int:
        return self.offset + self.size


class S3MediaStore:
    """A :class:`~ravepilot_core.protocols.MediaStore` on an S3 bucket (or any S3 API)."""

    def __init__(self, store: S3Store, settings: S3Settings) -> None:
        self.store = store
        self.settings = settings

    # -- staged parts --------------------------------------------------------------------------
    @staticmethod
    def _staging(key: str) -> str:
        return f"{_STAGING}/{key}/"

    def _part_path(self, key: str, offset: int) -> str:
        return f"{self._staging(key)}{offset:0{_OFFSET_DIGITS}d}"

    async def _upload(self, key: str) -> tuple[list[_Part], list[_Part]]:
        """Return the upload's parts (contiguous from 0) and the debris beside them."""
        found: list[_Part] = []
        with backend_errors(f"list the parts of upload {key}"):
            async for batch in obstore.list(self.store, prefix=self._staging(key), chunk_size=1000):
                for meta in batch:
                    name = meta["path"].rpartition("/")[2]
                    offset = int(name) if name.isdigit() else -1
                    found.append(_Part(offset, meta["size"], meta["path"]))
        parts, debris, end = [], [], 0
        for part in sorted(found, key=lambda p: p.offset):
            if part.offset == end and part.size > 0:
                parts.append(part)
                end = part.end
            else:
                debris.append(part)
        return parts, debris

    async def _delete_paths(self, paths: Sequence[str], what: str) -> None:
        if paths:
            with backend_errors(f"delete {what}"):
                await obstore.delete_async(self.store, list(paths))

    async def _write_part(self, key: str, offset: int, data: bytes) -> None:
        with backend_errors(f"write a part of upload {key} at byte {offset}"):
            await obstore.put_async(
                self.store, self._part_path(key, offset), data, use_multipart=False
            )

    async def _put_stream(
        self,
        key: str,
        chunks: AsyncGenerator[bytes, None],
        action: str,
        *,
        not_ours: Sequence[BaseException] = (),
    ) -> None:
        """Store ``chunks`` as ``key``: one PUT if they fit in a part, else a multipart upload.

        A multipart upload costs three requests at least, and some S3 servers refuse an empty
        one; only what does not fit in one part (so never more than a part) is held in memory.
        """
        async with aclosing(chunks):
            with backend_errors(action, not_ours=not_ours):
                head = bytearray()
                async for chunk in chunks:
                    head += chunk
                    if len(head) >= PART_SIZE:
                        break
                else:
                    await obstore.put_async(self.store, key, bytes(head), use_multipart=False)
                    return
                await obstore.put_async(
                    self.store,
                    key,
                    _prepend(bytes(head), chunks),
                    chunk_size=PART_SIZE,
                    max_concurrency=_UPLOAD_CONCURRENCY,
                )

    # -- uploads -------------------------------------------------------------------------------
    async def append(self, key: str, offset: int, chunks: AsyncIterable[bytes]) -> int:
        """Write ``chunks`` as parts of upload ``key`` from ``offset``; return its size."""
        check_media_key(key)
        parts, debris = await self._upload(key)
        held = parts[-1].end if parts else 0
        if not 0 <= offset <= held:
            raise ValueError(f"cannot append to upload {key!r} at byte {offset}: it holds {held}")
        # Stale parts go before the cut part is rewritten: were it the other way round, a crash
        # in between could leave a stale part right where the shortened one now ends.
        stale = debris + [p for p in parts if p.offset >= offset]
        await self._delete_paths([p.path for p in stale], f"stale parts of upload {key}")
        cut = next((p for p in parts if p.offset < offset < p.end), None)
        if cut is not None:
            with backend_errors(f"shorten a part of upload {key}"):
                kept = await obstore.get_range_async(
                    self.store, cut.path, start=0, end=offset - cut.offset
                )
            await self._write_part(key, cut.offset, bytes(kept))

        buffer, position = bytearray(), offset
        try:
            async for chunk in chunks:
                buffer += chunk
                while len(buffer) >= PART_SIZE:
                    # Dropped from the buffer only once written: a failed write loses nothing.
                    await self._write_part(key, position, bytes(buffer[:PART_SIZE]))
                    del buffer[:PART_SIZE]
                    position += PART_SIZE
        finally:
            # Whatever arrived is saved even when the chunks fail or the task is cancelled: the
            # caller counts every byte it handed over. Not saving it in time is a BackendError,
            # so that the caller does not count it.
            if buffer:
                deadline = anyio.current_time() + _FLUSH_TIMEOUT
                with anyio.CancelScope(shield=True, deadline=deadline) as scope:
                    await self._write_part(key, position, bytes(buffer))
                    position += len(buffer)
                if scope.cancelled_caught:
                    raise BackendError(f"S3 did not save the end of upload {key} in time")
        return position

    async def finish_upload(self, key: str, size: int) -> None:
        """Stream the first ``size`` bytes of the parts into the object ``key``; drop them."""
        check_media_key(key)
        parts, debris = await self._upload(key)
        held = parts[-1].end if parts else 0
        if not parts and size > 0:
            raise MediaNotFound(f"there is no unfinished upload {key!r}")
        if held < size:
            raise ValueError(f"upload {key!r} holds {held} bytes, fewer than {size}")
        assembled = self._assemble(key, parts, size)
        await self._put_stream(key, assembled, f"assemble the object {key} from its parts")
        paths = [p.path for p in parts + debris]
        await self._delete_paths(paths, f"the parts of finished upload {key}")

    async def _assemble(
        self, key: str, parts: list[_Part], size: int
    ) -> AsyncGenerator[bytes, None]:
        sent = 0
        for part in parts:
            if sent >= size:
                break
            length = min(part.size, size - sent)
            result = await obstore.get_async(self.store, part.path, options={"range": (0, length)})
            async for piece in result.stream(min_chunk_size=READ_SIZE):
                sent += len(piece)
                yield piece
        if sent != size:  # a part changed underneath: fail the put rather than store a bad clip
            raise BackendError(f"the parts of upload {key} held {sent} bytes, not {size}")

    async def abort_upload(self, key: str) -> None:
        """Delete every part of upload ``key``."""
        check_media_key(key)
        parts, debris = await self._upload(key)
        await self._delete_paths([p.path for p in parts + debris], f"the parts of upload {key}")

    # -- objects -------------------------------------------------------------------------------
    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Store the object ``key`` from ``chunks``, streamed; return its size."""
        check_media_key(key)
        counted, failures = 0, list[BaseException]()

        async def counting() -> AsyncGenerator[bytes, None]:
            nonlocal counted
            try:
                async for chunk in chunks:
                    if chunk:
                        counted += len(chunk)
                        yield chunk
            except Exception as exc:
                failures.append(exc)
                raise

        await self._put_stream(key, counting(), f"write the object {key}", not_ours=failures)
        return counted

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Yield bytes ``start`` to ``end`` of object ``key`` as they arrive from S3."""
        check_media_key(key)
        if start < 0 or (end is not None and end < 0):
            raise ValueError(f"a byte range cannot be negative: start={start}, end={end}")
        with backend_errors(f"read the object {key}"):
            try:
                if start == 0 and end is None:
                    result = await obstore.get_async(self.store, key)
                else:
                    # S3 refuses a range that starts at or past the end: clip it to the size.
                    size = (await obstore.head_async(self.store, key))["size"]
                    stop = size if end is None else min(end, size)
                    if start >= stop:
                        return
                    result = await obstore.get_async(
                        self.store, key, options={"range": (start, stop)}
                    )
            except FileNotFoundError:
                raise MediaNotFound(f"there is no media object {key!r}") from None
        with backend_errors(f"read the object {key}"):
            async for piece in result.stream(min_chunk_size=READ_SIZE):
                yield piece

    async def size(self, key: str) -> int | None:
        """Return the size of object ``key``, or None."""
        check_media_key(key)
        with backend_errors(f"look up the object {key}"):
            try:
                return (await obstore.head_async(self.store, key))["size"]
            except FileNotFoundError:
                return None

    async def delete(self, keys: Sequence[str]) -> None:
        """Delete objects and their uploads' parts; a prefix is listed and deleted in batches."""
        for key in keys:
            check_media_key(key, allow_prefix=True)
        exact = [key for key in keys if not key.endswith("/")]
        await self._delete_paths(exact, "objects")
        listed = [self._staging(key) for key in exact]
        listed += [p for key in keys if key.endswith("/") for p in (key, f"{_STAGING}/{key}")]
        for prefix in listed:
            with backend_errors(f"list {prefix}"):
                async for batch in obstore.list(self.store, prefix=prefix, chunk_size=1000):
                    await self._delete_paths([meta["path"] for meta in batch], f"under {prefix}")

    async def playback_url(
        self, key: str, *, expires_at: datetime, content_type: str | None = None
    ) -> str | None:
        """Return a presigned GET URL valid until ``expires_at`` (at most 7 days away).

        ``content_type`` is not signed in: obstore cannot add ``response-content-type``, so the
        response carries the type stored with the object.
        """
        check_media_key(key)
        if expires_at.tzinfo is None:
            raise ValueError("expires_at must be an aware datetime")
        # Rounded down, so that the URL never outlives what the caller promised.
        lifetime = math.floor((expires_at - datetime.now(UTC)).total_seconds())
        if lifetime < 1:
            raise ValueError(f"expires_at {expires_at.isoformat()} is not in the future")
        if lifetime > MAX_URL_LIFETIME.total_seconds():
            raise ValueError("S3 presigned URLs live at most 7 days; choose an earlier expires_at")
        with backend_errors(f"sign a URL for {key}"):
            return await obstore.sign_async(self.store, "GET", key, timedelta(seconds=lifetime))

    async def close(self) -> None:
        """Nothing to release: obstore's HTTP client closes with the store object."""


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        yield chunk


def open_s3_media(url: str) -> S3MediaStore:
    """Create the store for ``s3://bucket/prefix?endpoint_url=...&region=...``.

    Credentials and other settings come from the standard ``AWS_*`` environment variables.

    Raises:
        ConfigurationError: If the URL (or the AWS configuration) is unusable; says what to fix.
    """
    settings = parse_s3_url(url)
    return S3MediaStore(make_s3_store(settings), settings)
