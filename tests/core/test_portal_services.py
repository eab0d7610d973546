"""The portal's core services without HTTP: interrupted appends, expiry, playback links, erasure."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import msgspec
import pytest

from ravepilot_core import RavePilot
from ravepilot_core.errors import (
    BackendError,
    Conflict,
    LinkExpired,
    NotFound,
    UnsupportedMediaType,
)
from ravepilot_core.invitations import InvitationRequest
from ravepilot_core.models import SubmissionRecord
from ravepilot_core.playback import check_media_url
from ravepilot_core.testing import FrozenClock, MemoryMailer, MemoryMediaStore, MemoryStorage
from ravepilot_core.uploads import sniff_video_type

pytestmark = pytest.mark.anyio

WEBM = b"\x1a\x45\xdf\xa3" + os.urandom(2044)


class FlakyMedia(MemoryMediaStore):
    """A media store whose deletes fail until told otherwise (an object store outage)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True

    async def delete(self, keys: Sequence[str]) -> None:
        if self.down:
            raise OSError("object store unreachable")
        await super().delete(keys)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def rp(clock: FrozenClock) -> AsyncIterator[RavePilot]:
    instance = RavePilot(
        storage=MemoryStorage(),
        mailer=MemoryMailer(),
        media=FlakyMedia(),
        secret_key="k" * 40,
        clock=clock,
        max_upload_bytes=1_000_000,
    )
    yield instance
    await instance.close()


async def recording(rp: RavePilot) -> tuple[str, SubmissionRecord]:
    workspace = await rp.workspaces.create("acme")
    result = await rp.invitations.create(
        workspace.id, InvitationRequest(customer_email="ada@example.com", send_email=False)
    )
    await rp.portal.consent(result.invite_token, accepted=True)
    record, _ = await rp.portal.open(result.invite_token)
    return result.invite_token, record


async def pieces(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x1a\x45\xdf\xa3\x01\x00\x00\x00\x00\x00\x00\x1f", "video/webm"),
        (b"\x00\x00\x00\x20ftypisom\x00\x00", "video/mp4"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00", "video/quicktime"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3", None),
        (b"", None),
    ],
)
def test_containers_are_told_by_their_first_bytes(head: bytes, expected: str | None) -> None:
    assert sniff_video_type(head) == expected


async def test_an_interrupted_append_keeps_what_arrived_and_resumes(rp: RavePilot) -> None:
    token, record = await recording(rp)
    _, collector = await rp.portal.open(token)
    upload = await rp.uploads.create(
        record, collector, length=len(WEBM), metadata={"script_key": "intro"}
    )
    # The client went away after 700 bytes: the body simply ends there.
    upload = await rp.uploads.append(record, upload.id, offset=0, chunks=pieces(WEBM[:700]))
    assert upload.offset == 700 and upload.completed_at is None
    assert (await rp.uploads.get(record, upload.id)).offset == 700
    with pytest.raises(Conflict, match="HEAD"):
        await rp.uploads.append(record, upload.id, offset=0, chunks=pieces(WEBM))
    done = await rp.uploads.append(record, upload.id, offset=700, chunks=pieces(WEBM[700:]))
    assert done.completed_at is not None and done.clip_id is not None
    clips = await rp.storage.list_clips([record.id])
    assert [(c.id, c.size_bytes, c.mime_type) for c in clips] == [
        (done.clip_id, len(WEBM), "video/webm")
    ]
    stored = b"".join([chunk async for chunk in rp.context.media.read(clips[0].media_key)])
    assert stored == WEBM


async def test_the_first_bytes_are_sniffed_even_when_they_trickle_in(rp: RavePilot) -> None:
    token, record = await recording(rp)
    _, collector = await rp.portal.open(token)
    upload = await rp.uploads.create(
        record, collector, length=100, metadata={"script_key": "intro"}
    )
    with pytest.raises(UnsupportedMediaType, match="video/webm"):
        await rp.uploads.append(
            record, upload.id, offset=0, chunks=pieces(b"PK", b"\x03\x04", b"zip file....")
        )
    assert (await rp.uploads.get(record, upload.id)).offset == 0
    trickled = await rp.uploads.append(
        record, upload.id, offset=0, chunks=pieces(*[bytes([b]) for b in WEBM[:30]])
    )
    assert trickled.offset == 30


async def test_unfinished_uploads_expire_and_are_swept(rp: RavePilot, clock: FrozenClock) -> None:
    token, record = await recording(rp)
    _, collector = await rp.portal.open(token)
    upload = await rp.uploads.create(
        record, collector, length=len(WEBM), metadata={"script_key": "intro"}
    )
    await rp.uploads.append(record, upload.id, offset=0, chunks=pieces(WEBM[:100]))
    clock.advance(hours=23)
    assert await rp.uploads.sweep_expired() == 0
    clock.advance(hours=2)
    with pytest.raises(NotFound, match="expired"):
        await rp.uploads.get(record, upload.id)
    assert await rp.uploads.sweep_expired() == 1
    assert await rp.storage.get_upload(record.id, upload.id) is None
    assert await rp.context.media.size(upload.media_key) is None


async def test_playback_links_are_signed_and_expire(rp: RavePilot, clock: FrozenClock) -> None:
    token, record = await recording(rp)
    _, collector = await rp.portal.open(token)
    upload = await rp.uploads.create(
        record, collector, length=len(WEBM), metadata={"script_key": "intro"}
    )
    await rp.uploads.append(record, upload.id, offset=0, chunks=pieces(WEBM))
    (clip,) = await rp.storage.list_clips([record.id])
    assert clip.status == "processing"  # nothing plays before ingest made the mp4
    assert (await rp.submissions.get(record.workspace_id, record.id)).clips[0].playback is None
    ready = msgspec.structs.replace(clip, status="ready", normalised_key=upload.media_key)
    await rp.storage.update_clip(ready)
    submission = await rp.submissions.get(record.workspace_id, record.id)
    playback = submission.clips[0].playback
    assert playback is not None
    assert playback.expires_at == clock.now().replace(microsecond=0) + timedelta(hours=1)
    query = dict(p.split("=", 1) for p in playback.url.split("?", 1)[1].split("&"))
    key = upload.media_key
    check_media_url(rp.context, key, query["expires"], query["signature"], "video/mp4")
    with pytest.raises(NotFound):  # another object, the same signature
        check_media_url(rp.context, key + "x", query["expires"], query["signature"], "video/mp4")
    with pytest.raises(NotFound):  # a content type swapped in
        check_media_url(rp.context, key, query["expires"], query["signature"], "text/html")
    clock.advance(hours=1, seconds=1)
    with pytest.raises(LinkExpired, match="fresh link"):
        check_media_url(rp.context, key, query["expires"], query["signature"], "video/mp4")


async def test_erasure_survives_an_object_store_outage(rp: RavePilot) -> None:
    token, record = await recording(rp)
    _, collector = await rp.portal.open(token)
    upload = await rp.uploads.create(
        record, collector, length=len(WEBM), metadata={"script_key": "intro"}
    )
    await rp.uploads.append(record, upload.id, offset=0, chunks=pieces(WEBM))
    media = rp.context.media
    assert isinstance(media, FlakyMedia)

    await rp.portal.withdraw(token)  # the immediate delete fails; the stored job remains
    assert await media.size(upload.media_key) == len(WEBM)
    jobs = await rp.storage.list_jobs(record.id)
    assert [(j.kind, j.payload) for j in jobs] == [
        ("media.delete", {"keys": [f"{record.workspace_id}/{record.id}/"]})
    ]
    media.down = False
    assert await rp.worker().run_due() >= 1
    assert await media.size(upload.media_key) is None
    assert [j.status for j in await rp.storage.list_jobs(record.id)] == ["succeeded"]


async def test_a_finish_cut_short_is_completed_by_the_next_look(rp: RavePilot) -> None:
    token, record = await recording(rp)
    _, collector = await rp.portal.open(token)
    upload = await rp.uploads.create(
        record, collector, length=len(WEBM), metadata={"script_key": "intro"}
    )
    storage = rp.storage
    real_complete = storage.complete_upload

    async def fails_once(*args: Any, **kwargs: Any) -> bool:
        storage.complete_upload = real_complete  # type: ignore[method-assign]
        raise BackendError("database is locked")

    storage.complete_upload = fails_once  # type: ignore[method-assign]
    with pytest.raises(BackendError):
        await rp.uploads.append(record, upload.id, offset=0, chunks=pieces(WEBM))
    # Every byte is stored, the clip is not: a tus client's HEAD (or a PATCH) finishes it.
    assert await rp.storage.list_clips([record.id]) == []
    done = await rp.uploads.get(record, upload.id)
    assert done.completed_at is not None and done.offset == len(WEBM)
    (clip,) = await rp.storage.list_clips([record.id])
    assert clip.id == done.clip_id and clip.size_bytes == len(WEBM)
    stored = b"".join([chunk async for chunk in rp.context.media.read(clip.media_key)])
    assert stored == WEBM
