"""Resumable clip uploads (the state machine behind the server's tus endpoints).

An upload is created with its full length, receives its bytes in any number of appends (each
starting exactly where the stored offset says), and on its last byte becomes a clip, replacing
an earlier clip for the same prompt (a retake), and is processed by a durable ingest job
(:mod:`ravepilot_core.ingest`). The stored offset is the truth: a request that
died mid-way leaves the offset where its last recorded append ended, and the client resumes
from there. Bytes are streamed into the media store as they arrive.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta

import anyio
import msgspec

from ravepilot_core.context import Context
from ravepilot_core.erasure import ReplacedClipsJob
from ravepilot_core.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from ravepilot_core.events import make_event
from ravepilot_core.ids import new_id
from ravepilot_core.ingest import ingest_job
from ravepilot_core.models import ClipRecord, Collector, SubmissionRecord, Upload
from ravepilot_core.playback import clip_view

__all__ = ["ACCEPTED_TYPES", "UPLOAD_TTL", "UploadService", "sniff_video_type"]

UPLOAD_TTL = timedelta(hours=24)
# What browsers record (webm; mp4 on Safari) and what phones save (mp4, QuickTime), plus mkv.
ACCEPTED_TYPES: tuple[str, ...] = ("video/webm", "video/mp4", "video/quicktime", "video/x-matroska")
_SNIFF_BYTES = 12
_MAX_FILENAME = 255
_FILETYPE = re.compile(r"^[\w.+-]+/[\w.+-]+$")


def sniff_video_type(head: bytes) -> str | None:
    """Tell the container from a file's first bytes: webm/Matroska (EBML) or MP4/QuickTime."""
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    if head[4:8] == b"ftyp":
        return "video/quicktime" if head[8:12] == b"qt  " else "video/mp4"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free"):  # old QuickTime files start so
        return "video/quicktime"
    return None


def _base_type(filetype: str) -> str:
    return filetype.split(";", 1)[0].strip().lower()


def _clean_filename(name: str | None) -> str | None:
    if name is None:
        return None
    cleaned = "".join(c for c in unicodedata.normalize("NFC", name) if c.isprintable())
    return cleaned[:_MAX_FILENAME] or None


class _Body:
    """The request body on its way to the store: checked at the start, cut at the length.

    The first bytes of an upload must be a video container; more bytes than the upload has
    room for are not written, and :attr:`overflowed` tells the caller to refuse the request.
    """

    def __init__(self, chunks: AsyncIterable[bytes], *, room: int, sniff: bool) -> None:
        self._chunks = chunks
        self._room = room
        self._sniff = sniff
        self.overflowed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        head = b""
        async for chunk in self._chunks:
            if self._sniff:
                head += chunk
                if len(head) < _SNIFF_BYTES:
                    continue
                self._check(head)
                chunk, head = head, b""
            piece = self._fit(chunk)
            if piece:
                yield piece
            if self.overflowed:
                return
        if head:  # the whole body was shorter than the sniff window
            self._check(head)
            piece = self._fit(head)
            if piece:
                yield piece

    def _fit(self, chunk: bytes) -> bytes:
        """Return what of ``chunk`` fits in the upload, noting an overflow."""
        if len(chunk) > self._room:
            self.overflowed = True
            chunk = chunk[: self._room]
        self._room -= len(chunk)
        return chunk

    def _check(self, head: bytes) -> None:
        self._sniff = False
        if sniff_video_type(head) is None:
            raise UnsupportedMediaType(
                "this file is not a video RavePilot can take: upload a recording in one of "
                + ", ".join(ACCEPTED_TYPES)
            )


class UploadService:
    """Create, append to, finish and terminate clip uploads, by invite token."""

    def __init__(self, context: Context) -> None:
        self._ctx = context
        # One append at a time per upload in this process; across processes the stored
        # offset's compare-and-set decides.
        self._busy: dict[str, anyio.Lock] = {}

    def _check_accepting(self, record: SubmissionRecord) -> None:
        if record.status == "invited":
            raise Conflict("give consent before uploading clips")
        if record.status != "recording":
            raise Conflict("this submission is finished and takes no more clips")

    async def create(
        self,
        record: SubmissionRecord,
        collector: Collector,
        *,
        length: int | None,
        metadata: Mapping[str, str],
    ) -> Upload:
        """Start an upload of ``length`` bytes for the prompt named in ``metadata``."""
        self._check_accepting(record)
        keys = [prompt.key for prompt in collector.script]
        script_key = metadata.get("script_key")
        if not script_key:
            raise InvalidRequest(
                "Upload-Metadata must carry script_key, one of: " + ", ".join(keys)
            )
        if script_key not in keys:
            raise InvalidRequest(
                f"unknown script_key {script_key!r}; this collector's prompts are: "
                + ", ".join(keys)
            )
        if length is None:
            raise InvalidRequest("send Upload-Length: deferred lengths are not supported")
        if length <= 0:
            raise InvalidRequest("Upload-Length must be a positive number of bytes")
        if length > self._ctx.max_upload_bytes:
            raise PayloadTooLarge(
                f"a clip may be at most {self._ctx.max_upload_bytes} bytes; this one is {length}"
            )
        filetype = metadata.get("filetype")
        if filetype is not None:
            if not _FILETYPE.match(_base_type(filetype)):
                raise InvalidRequest(f"filetype {filetype!r} is not a media type")
            if _base_type(filetype) not in ACCEPTED_TYPES:
                raise UnsupportedMediaType(
                    f"{_base_type(filetype)} is not accepted; upload one of "
                    + ", ".join(ACCEPTED_TYPES)
                )
        now = self._ctx.clock.now()
        upload_id = new_id("upl", now)
        upload = Upload(
            id=upload_id,
            workspace_id=record.workspace_id,
            submission_id=record.id,
            script_key=script_key,
            length=length,
            media_key=f"{record.workspace_id}/{record.id}/{upload_id}",
            filename=_clean_filename(metadata.get("filename")),
            filetype=_base_type(filetype) if filetype else None,
            expires_at=now + UPLOAD_TTL,
            created_at=now,
        )
        await self._ctx.storage.create_upload(upload)
        return upload

    async def _load(self, record: SubmissionRecord, upload_id: str) -> Upload:
        upload = await self._ctx.storage.get_upload(record.id, upload_id)
        if upload is None or (
            upload.completed_at is None and upload.expires_at <= self._ctx.clock.now()
        ):
            raise NotFound("no such upload: it finished long ago, expired or never existed")
        return upload

    @asynccontextmanager
    async def _writing(self, upload_id: str) -> AsyncIterator[None]:
        """Hold the upload for one request in this process, or refuse with 409."""
        lock = self._busy.setdefault(upload_id, anyio.Lock())
        if lock.locked():
            raise Conflict("another request is writing to this upload; HEAD it and resume")
        try:
            async with lock:
                yield
        finally:
            if not lock.locked():
                self._busy.pop(upload_id, None)

    async def get(self, record: SubmissionRecord, upload_id: str) -> Upload:
        """Return the submission's upload; an expired unfinished one is gone.

        An upload whose every byte arrived but whose clip was never stored (the process died,
        or storage failed, in between) is finished now, so the client's next look finds it done.
        """
        upload = await self._load(record, upload_id)
        if upload.completed_at is None and upload.offset == upload.length:
            async with self._writing(upload_id):
                upload = await self._finish(upload)
        return upload

    async def append(
        self,
        record: SubmissionRecord,
        upload_id: str,
        *,
        offset: int,
        chunks: AsyncIterable[bytes],
        announced: int | None = None,
    ) -> Upload:
        """Write the bytes at ``offset``; the last byte turns the upload into a clip.

        When ``chunks`` ends early (the client went away) what arrived is kept and counted.
        ``announced`` is the body's declared size, if known: one that cannot fit is refused
        before anything is written.
        """
        async with self._writing(upload_id):
            return await self._append(record, upload_id, offset, chunks, announced)

    async def _append(
        self,
        record: SubmissionRecord,
        upload_id: str,
        offset: int,
        chunks: AsyncIterable[bytes],
        announced: int | None,
    ) -> Upload:
        upload = await self._load(record, upload_id)
        if upload.completed_at is not None:
            raise Conflict("this upload is complete; start a new upload to record a retake")
        self._check_accepting(record)
        if upload.offset == upload.length:  # every byte is here; only the clip is missing
            return await self._finish(upload)
        if offset != upload.offset:
            raise Conflict(
                f"Upload-Offset {offset} does not match the {upload.offset} bytes received; "
                "send a HEAD request and resume from there"
            )
        if announced is not None and offset + announced > upload.length:
            raise PayloadTooLarge(
                f"this body of {announced} bytes at offset {offset} goes past the upload's "
                f"{upload.length} bytes (Upload-Length)"
            )
        # Claimed before a byte is written, so a request that read a stale offset (another
        # process moved the upload on meanwhile) is refused before it can cut stored bytes.
        writer = secrets.token_hex(8)
        if not await self._ctx.storage.claim_upload(upload.id, offset=offset, writer=writer):
            raise Conflict("another request moved this upload on; HEAD it and resume")
        body = _Body(chunks, room=upload.length - offset, sniff=offset == 0)
        size = await self._ctx.media.append(upload.media_key, offset, body)
        if not await self._ctx.storage.advance_upload(
            upload.id, from_offset=offset, to_offset=size, writer=writer
        ):
            if await self._ctx.storage.get_upload(upload.submission_id, upload.id) is None:
                await self._ctx.media.abort_upload(upload.media_key)  # withdrawn meanwhile
            raise Conflict("another request moved this upload on; HEAD it and resume")
        upload = msgspec.structs.replace(upload, offset=size)
        if size == upload.length:
            upload = await self._finish(upload)
        if body.overflowed:  # the declared bytes were kept (and made the clip); the rest not
            raise PayloadTooLarge(
                f"this upload is {upload.length} bytes (Upload-Length); more were sent"
            )
        return upload

    async def _finish(self, upload: Upload) -> Upload:
        ctx = self._ctx
        now = ctx.clock.now()
        # Idempotent: a finish that stopped after this step (the object exists) is resumed.
        if await ctx.media.size(upload.media_key) != upload.length:
            await ctx.media.finish_upload(upload.media_key, upload.length)
        # The container decides the type, not what the client said it sent (the first append
        # checked it is a video; it may have been an earlier request than this one).
        head = b"".join([c async for c in ctx.media.read(upload.media_key, 0, _SNIFF_BYTES)])
        mime_type = sniff_video_type(head)
        if mime_type == "video/webm" and upload.filetype == "video/x-matroska":
            mime_type = "video/x-matroska"
        clip = ClipRecord(
            id=new_id("clip", now),
            workspace_id=upload.workspace_id,
            submission_id=upload.submission_id,
            script_key=upload.script_key,
            status="processing",
            media_key=upload.media_key,
            mime_type=mime_type,
            size_bytes=upload.length,
            created_at=now,
            updated_at=now,
        )
        finished = msgspec.structs.replace(upload, completed_at=now, clip_id=clip.id)
        event = make_event(
            "clip.uploaded",
            workspace_id=upload.workspace_id,
            data=await clip_view(ctx, clip),
            at=now,
        )
        if not await ctx.storage.complete_upload(
            finished,
            clip,
            events=[event],
            jobs=[ingest_job(clip, now)],
            replaced=ReplacedClipsJob(now),
        ):
            # Finished or withdrawn meanwhile: neither the bytes nor the upload may linger.
            await ctx.storage.delete_upload(upload.id)
            await ctx.media.delete([upload.media_key])
            raise Conflict("this submission no longer takes clips (finished or withdrawn)")
        ctx.wake_worker()
        return finished

    async def terminate(self, record: SubmissionRecord, upload_id: str) -> None:
        """Throw an unfinished upload away."""
        upload = await self._load(record, upload_id)
        if upload.completed_at is not None:
            raise Conflict("this upload is complete and is a clip now; record a retake instead")
        if await self._ctx.storage.delete_upload(upload.id):
            await self._ctx.media.abort_upload(upload.media_key)

    async def sweep_expired(self, *, limit: int = 100) -> int:
        """Delete unfinished uploads past their expiry (rows and bytes); return how many."""
        expired = await self._ctx.storage.list_expired_uploads(
            now=self._ctx.clock.now(), limit=limit
        )
        for upload in expired:
            if await self._ctx.storage.delete_upload(upload.id):
                await self._ctx.media.abort_upload(upload.media_key)
        return len(expired)
