"""The recording portal's part of the Storage contract: submissions moving on, clips, uploads.

:class:`~ravepilot_core.testing.StorageContract` includes these tests; they live apart only to
keep each module readable.
"""

# ruff: noqa: D102

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime

import anyio
import msgspec
import pytest

from ravepilot_core.events import make_event
from ravepilot_core.ids import new_id
from ravepilot_core.models import (
    ClipRecord,
    Customer,
    EventRecord,
    Job,
    RenderRecord,
    Review,
    SubmissionRecord,
    SubmissionStatus,
    Transcript,
    TranscriptWord,
    Upload,
)
from ravepilot_core.protocols import Storage
from ravepilot_core.testing.contract_data import T0, at, make_job, make_submission, new_workspace

__all__ = ["RecordingsContract"]


def _event(kind: str, workspace_id: str, when: datetime = T0) -> EventRecord:
    return make_event(kind, workspace_id=workspace_id, data={"id": "x"}, at=when)


def _upload(record: SubmissionRecord, *, key: str = "intro", when: datetime = T0) -> Upload:
    upload_id = new_id("upl", when)
    return Upload(
        id=upload_id,
        workspace_id=record.workspace_id,
        submission_id=record.id,
        script_key=key,
        length=1000,
        media_key=f"{record.workspace_id}/{record.id}/{upload_id}",
        filename="take.webm",
        filetype="video/webm",
        expires_at=at(hours=24),
        created_at=when,
    )


def _clip(upload: Upload, when: datetime = T0) -> ClipRecord:
    return ClipRecord(
        id=new_id("clip", when),
        workspace_id=upload.workspace_id,
        submission_id=upload.submission_id,
        script_key=upload.script_key,
        status="ready",
        media_key=upload.media_key,
        mime_type="video/webm",
        size_bytes=upload.length,
        created_at=when,
        updated_at=when,
    )


def _finished(upload: Upload, clip: ClipRecord, when: datetime = T0) -> Upload:
    return msgspec.structs.replace(upload, offset=upload.length, completed_at=when, clip_id=clip.id)


class RecordingsContract:
    """What every storage does for the customer portal and the review."""

    async def _recording(
        self, storage: Storage, status: SubmissionStatus = "recording"
    ) -> SubmissionRecord:
        workspace, collector = await new_workspace(storage)
        record = make_submission(
            workspace.id, collector.id, email=f"{secrets.token_hex(4)}@x.com", status=status
        )
        await storage.create_submission(record)
        return record

    async def _add_clip(
        self, storage: Storage, record: SubmissionRecord, key: str = "intro", when: datetime = T0
    ) -> ClipRecord:
        upload = _upload(record, key=key, when=when)
        await storage.create_upload(upload)
        clip = _clip(upload, when)
        assert await storage.complete_upload(_finished(upload, clip, when), clip)
        return clip

    async def test_a_token_hash_finds_its_submission(self, storage: Storage) -> None:
        record = await self._recording(storage)
        assert await storage.get_submission_by_token(record.token_hash) == record
        assert await storage.get_submission_by_token(secrets.token_hex(32)) is None

    async def test_update_submission_is_a_compare_and_set_on_status(self, storage: Storage) -> None:
        record = await self._recording(storage, "invited")
        started = msgspec.structs.replace(record, status="recording", updated_at=at(minutes=1))
        event = _event("submission.started", record.workspace_id)
        assert not await storage.update_submission(started, expect_status=("submitted",))
        assert await storage.update_submission(started, expect_status=("invited",), events=[event])
        assert not await storage.update_submission(started, expect_status=("invited",))
        stored = await storage.get_submission(record.workspace_id, record.id)
        assert stored == started
        assert [e.type for e in await storage.list_events(record.workspace_id)] == [
            "submission.started"
        ]

    async def test_only_one_of_concurrent_moves_wins(self, storage: Storage) -> None:
        record = await self._recording(storage, "invited")
        wins: list[bool] = []

        async def start(n: int) -> None:
            moved = msgspec.structs.replace(record, status="recording", updated_at=at(seconds=n))
            event = _event("submission.started", record.workspace_id, at(seconds=n))
            wins.append(
                await storage.update_submission(moved, expect_status=("invited",), events=[event])
            )

        async with anyio.create_task_group() as group:
            for n in range(5):
                group.start_soon(start, n)
        assert sorted(wins) == [False] * 4 + [True]
        assert len(await storage.list_events(record.workspace_id)) == 1

    async def test_an_upload_advances_only_from_where_it_is(self, storage: Storage) -> None:
        record = await self._recording(storage)
        upload = _upload(record)
        await storage.create_upload(upload)
        assert await storage.get_upload(record.id, upload.id) == upload
        assert await storage.get_upload("sub_other", upload.id) is None
        assert await storage.advance_upload(upload.id, from_offset=0, to_offset=400)
        assert not await storage.advance_upload(upload.id, from_offset=0, to_offset=800)
        stored = await storage.get_upload(record.id, upload.id)
        assert stored is not None and stored.offset == 400

    async def test_completing_an_upload_stores_its_clip_and_events(self, storage: Storage) -> None:
        record = await self._recording(storage)
        upload = _upload(record)
        await storage.create_upload(upload)
        clip = _clip(upload)
        event = _event("clip.uploaded", record.workspace_id)
        assert await storage.complete_upload(_finished(upload, clip), clip, events=[event])
        assert await storage.list_clips([record.id]) == [clip]
        assert await storage.get_clip(record.workspace_id, clip.id) == clip
        assert await storage.get_clip("ws_other", clip.id) is None
        stored = await storage.get_upload(record.id, upload.id)
        assert stored is not None and (stored.clip_id, stored.offset) == (clip.id, 1000)
        # A finished upload neither advances, completes again nor deletes.
        assert not await storage.advance_upload(upload.id, from_offset=1000, to_offset=1000)
        again = _clip(upload, at(seconds=1))
        assert not await storage.complete_upload(_finished(upload, again), again)
        assert not await storage.delete_upload(upload.id)
        assert [e.type for e in await storage.list_events(record.workspace_id)] == ["clip.uploaded"]

    async def test_a_retake_replaces_the_clip_and_queues_its_media_deletion(
        self, storage: Storage
    ) -> None:
        record = await self._recording(storage)
        first = await self._add_clip(storage, record)
        other = await self._add_clip(storage, record, key="result", when=at(seconds=1))
        upload = _upload(record, when=at(seconds=2))
        await storage.create_upload(upload)
        retake = _clip(upload, at(seconds=2))
        replaced: list[ClipRecord] = []

        def delete_media(clips: Sequence[ClipRecord]) -> list[Job]:
            replaced.extend(clips)
            return [make_job(record.workspace_id, first.id, when=at(seconds=2))]

        assert await storage.complete_upload(
            _finished(upload, retake), retake, replaced=delete_media
        )
        assert replaced == [first]
        assert await storage.list_clips([record.id]) == [other, retake]
        assert [j.subject_id for j in await storage.list_jobs(first.id)] == [first.id]

    async def test_uploads_complete_only_while_recording(self, storage: Storage) -> None:
        record = await self._recording(storage, "submitted")
        upload = _upload(record)
        await storage.create_upload(upload)
        clip = _clip(upload)
        assert not await storage.complete_upload(_finished(upload, clip), clip)
        assert await storage.list_clips([record.id]) == []

    async def test_the_last_decision_makes_a_submitted_submission_reviewed(
        self, storage: Storage
    ) -> None:
        record = await self._recording(storage)
        clips = [
            await self._add_clip(storage, record, key, at(seconds=n))
            for n, key in enumerate(("intro", "result"))
        ]
        submitted = msgspec.structs.replace(record, status="submitted")
        assert await storage.update_submission(submitted, expect_status=("recording",))

        async def decide(clip: ClipRecord) -> None:
            decided = msgspec.structs.replace(
                clip,
                review=Review(status="approved", note="ok", decided_at=at(minutes=5)),
                updated_at=at(minutes=5),
            )
            event = _event("clip.approved", record.workspace_id, at(minutes=5))
            assert await storage.review_clip(decided, events=[event]) in ("submitted", "reviewed")

        async with anyio.create_task_group() as group:  # two reviewers at once
            for clip in clips:
                group.start_soon(decide, clip)
        stored = await storage.get_submission(record.workspace_id, record.id)
        assert stored is not None and stored.status == "reviewed"
        reviews = [c.review for c in await storage.list_clips([record.id])]
        assert reviews == [Review(status="approved", note="ok", decided_at=at(minutes=5))] * 2
        gone = msgspec.structs.replace(clips[0], id="clip_gone")
        assert await storage.review_clip(gone) is None

    async def test_erasing_deletes_clips_and_uploads_with_the_change(
        self, storage: Storage
    ) -> None:
        record = await self._recording(storage)
        keep = await self._recording(storage)
        await self._add_clip(storage, record)
        kept_clip = await self._add_clip(storage, keep)
        unfinished = _upload(record, key="result", when=at(seconds=3))
        await storage.create_upload(unfinished)
        erased = msgspec.structs.replace(
            record,
            status="withdrawn",
            customer=Customer(email=f"{record.id}@erased.invalid"),
            consent=None,
            updated_at=at(hours=1),
        )
        job = make_job(record.workspace_id, record.id, when=at(hours=1))
        event = _event("submission.withdrawn", record.workspace_id, at(hours=1))
        assert await storage.erase_submission(
            erased, expect_status=("recording",), events=[event], jobs=[job]
        )
        assert await storage.get_submission(record.workspace_id, record.id) == erased
        assert await storage.list_clips([record.id, keep.id]) == [kept_clip]
        assert await storage.get_upload(record.id, unfinished.id) is None
        assert [j.id for j in await storage.list_jobs(record.id)] == [job.id]
        assert not await storage.erase_submission(erased, expect_status=("recording",))

    async def test_expired_unfinished_uploads_are_listed_and_deleted(
        self, storage: Storage
    ) -> None:
        record = await self._recording(storage)
        old = _upload(record, when=at(hours=-30))
        old = msgspec.structs.replace(old, expires_at=at(hours=-6))
        fresh = _upload(record, key="result", when=at(seconds=1))
        await storage.create_upload(old)
        await storage.create_upload(fresh)
        await self._add_clip(storage, record, key="intro", when=at(seconds=2))
        expired = await storage.list_expired_uploads(now=T0, limit=10)
        assert [u.id for u in expired] == [old.id]
        assert await storage.delete_upload(old.id)
        assert not await storage.delete_upload(old.id)
        assert await storage.list_expired_uploads(now=T0, limit=10) == []

    @pytest.mark.parametrize("status", ["invited", "recording", "submitted"])
    async def test_a_missing_submission_is_never_moved(
        self, storage: Storage, status: SubmissionStatus
    ) -> None:
        record = await self._recording(storage)
        ghost = msgspec.structs.replace(record, id="sub_ghost", status=status)
        assert not await storage.update_submission(ghost, expect_status=(status,))
        assert not await storage.erase_submission(ghost, expect_status=(status,))

    async def test_processing_results_are_stored_with_their_events_and_jobs(
        self, storage: Storage
    ) -> None:
        record = await self._recording(storage)
        clip = await self._add_clip(storage, record)
        ready = msgspec.structs.replace(
            clip,
            status="ready",
            mime_type="video/mp4",
            duration_ms=4_210,
            normalised_key=f"{clip.media_key}.mp4",
            poster_key=f"{clip.media_key}.jpg",
            transcript=Transcript(
                text="hello there",
                language="en",
                words=(
                    TranscriptWord(word="hello", start_ms=100, end_ms=400),
                    TranscriptWord(word="there", start_ms=450, end_ms=800),
                ),
            ),
            updated_at=at(minutes=1),
        )
        job = make_job(record.workspace_id, clip.id, when=at(minutes=1))
        event = _event("clip.transcribed", record.workspace_id, at(minutes=1))
        assert await storage.update_clip(ready, events=[event], jobs=[job])
        assert await storage.get_clip(record.workspace_id, clip.id) == ready
        assert [j.id for j in await storage.list_jobs(clip.id)] == [job.id]
        failed = msgspec.structs.replace(ready, status="failed", error="the clip is silent")
        assert await storage.update_clip(failed)
        stored = await storage.get_clip(record.workspace_id, clip.id)
        assert stored is not None and (stored.status, stored.error) == (
            "failed",
            "the clip is silent",
        )
        gone = msgspec.structs.replace(clip, id="clip_gone")
        assert not await storage.update_clip(gone, events=[_event("clip.transcribed", "ws_x")])

    async def test_a_successful_render_makes_the_submission_rendered(
        self, storage: Storage
    ) -> None:
        record = await self._recording(storage)
        clip = await self._add_clip(storage, record)
        assert await storage.update_submission(
            msgspec.structs.replace(record, status="reviewed"), expect_status=("recording",)
        )
        render = RenderRecord(
            id=new_id("rnd", at(minutes=2)),
            workspace_id=record.workspace_id,
            submission_id=record.id,
            format="9:16",
            status="queued",
            clip_ids=(clip.id,),
            created_at=at(minutes=2),
        )
        job = make_job(record.workspace_id, render.id, when=at(minutes=2))
        await storage.create_render(render, jobs=[job])
        assert await storage.get_render(record.workspace_id, render.id) == render
        assert await storage.get_render("ws_other", render.id) is None
        assert [j.id for j in await storage.list_jobs(render.id)] == [job.id]
        done = msgspec.structs.replace(
            render,
            status="succeeded",
            duration_ms=9_000,
            media_key=f"{record.workspace_id}/{record.id}/renders/{render.id}.mp4",
            finished_at=at(minutes=3),
        )
        event = _event("render.succeeded", record.workspace_id, at(minutes=3))
        assert await storage.update_render(done, events=[event])
        assert await storage.list_renders([record.id]) == [done]
        stored = await storage.get_submission(record.workspace_id, record.id)
        assert stored is not None and stored.status == "rendered"
        newest = (await storage.list_events(record.workspace_id))[0]
        assert newest.type == "render.succeeded"

    async def test_only_the_latest_claim_moves_an_upload_on(self, storage: Storage) -> None:
        record = await self._recording(storage)
        upload = _upload(record)
        await storage.create_upload(upload)
        assert await storage.claim_upload(upload.id, offset=0, writer="first")
        assert await storage.claim_upload(upload.id, offset=0, writer="retry")  # takes over
        assert not await storage.advance_upload(
            upload.id, from_offset=0, to_offset=300, writer="first"
        )
        assert await storage.advance_upload(upload.id, from_offset=0, to_offset=500, writer="retry")
        # A request that read the old offset cannot claim, so it never cuts stored bytes.
        assert not await storage.claim_upload(upload.id, offset=0, writer="stale")
        assert await storage.claim_upload(upload.id, offset=500, writer="next")
        stored = await storage.get_upload(record.id, upload.id)
        assert stored is not None and stored.offset == 500

    async def test_erasure_can_redact_the_events_that_mention_the_submission(
        self, storage: Storage
    ) -> None:
        record = await self._recording(storage)
        other = make_submission(
            record.workspace_id, record.collector_id, email="keep@x.com", when=at(seconds=1)
        )
        await storage.create_submission(other)
        said = make_event(
            "clip.transcribed",
            workspace_id=record.workspace_id,
            data={"submission_id": record.id, "transcript": "my name is Ada"},
            at=at(seconds=2),
        )
        kept = make_event(
            "submission.started",
            workspace_id=record.workspace_id,
            data={"id": other.id},
            at=at(seconds=3),
        )
        assert await storage.update_submission(record, expect_status=("recording",), events=[said])
        assert await storage.update_submission(other, expect_status=("invited",), events=[kept])
        erased = msgspec.structs.replace(record, status="withdrawn", updated_at=at(hours=1))
        withdrawn = make_event(
            "submission.withdrawn",
            workspace_id=record.workspace_id,
            data={"id": record.id, "status": "withdrawn"},
            at=at(hours=1),
        )
        assert await storage.erase_submission(
            erased, expect_status=("recording",), events=[withdrawn], redact_events=True
        )
        stored = {e.id: e for e in await storage.list_events(record.workspace_id)}
        assert b"Ada" not in stored[said.id].payload
        body = msgspec.json.decode(stored[said.id].payload)
        assert body["data"] == {"submission_id": record.id, "erased": True}
        assert (body["id"], body["type"]) == (said.id, "clip.transcribed")
        assert stored[kept.id].payload == kept.payload
        assert stored[withdrawn.id].payload == withdrawn.payload
