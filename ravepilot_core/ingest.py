"""Processing an uploaded clip: normalise it, then transcribe it, as durable jobs.

Browser recordings arrive without a duration, in whatever codec the browser chose, so every clip
is normalised (a 720p mp4, h264/aac, constant frame rate) for playback and transcription before
it is ready; renders are later cut from the original, which is kept. A clip that is
not a readable video, is silent or is too short *fails* with a reason the business can read; the
customer's original stays in the media store. Anything else that goes wrong (the media store or a
tool is down) raises, and the job retries with backoff.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from ravepilot_core.context import Context
from ravepilot_core.errors import MediaProcessingError
from ravepilot_core.events import make_event
from ravepilot_core.ffmpeg import (
    SILENCE_DB,
    extract_speech,
    max_volume_db,
    normalise,
    poster,
    probe,
)
from ravepilot_core.ids import new_id
from ravepilot_core.models import ClipRecord, Job
from ravepilot_core.playback import clip_view
from ravepilot_core.scratch import download, scratch_directory, upload

__all__ = [
    "INGEST_JOB",
    "TRANSCRIBE_JOB",
    "ingest_clip",
    "ingest_job",
    "transcribe_clip",
]

INGEST_JOB = "media.ingest"
TRANSCRIBE_JOB = "media.transcribe"
POSTER_AT_MS = 1000


def _job(kind: str, clip: ClipRecord, at: datetime) -> Job:
    return Job(
        id=new_id("job", at),
        workspace_id=clip.workspace_id,
        kind=kind,
        subject_id=clip.id,
        max_attempts=5,
        run_at=at,
        created_at=at,
    )


def ingest_job(clip: ClipRecord, at: datetime) -> Job:
    """Return the job that normalises a newly uploaded clip."""
    return _job(INGEST_JOB, clip, at)


async def _clip(context: Context, job: Job) -> ClipRecord | None:
    return await context.storage.get_clip(job.workspace_id, job.subject_id)


async def _min_seconds(context: Context, clip: ClipRecord) -> int:
    submission = await context.storage.get_submission(clip.workspace_id, clip.submission_id)
    if submission is None:
        return 0
    collector = await context.storage.get_collector(clip.workspace_id, submission.collector_id)
    return collector.min_clip_seconds if collector else 0


async def ingest_clip(context: Context, job: Job) -> None:
    """Run an ingest job: probe, check, normalise and make a poster; then queue transcription."""
    clip = await _clip(context, job)
    if clip is None or clip.status != "processing":
        return  # replaced by a retake, erased, or done by an earlier attempt
    minimum = await _min_seconds(context, clip)
    base = f"{clip.workspace_id}/{clip.submission_id}/{clip.id}"
    async with context.media_slots, scratch_directory() as scratch:
        original = await download(context.media, clip.media_key, scratch / "original")
        try:
            found = await probe(original)
            if not found.has_video:
                raise MediaProcessingError("the upload has no video: record with the camera on")
            loudest = await max_volume_db(original)
            if loudest is None or loudest < SILENCE_DB:
                raise MediaProcessingError(
                    "the clip is silent: check that the microphone is on and not muted"
                )
            normalised = await normalise(original, scratch / "clip.mp4", found=found)
            duration = normalised.duration_ms or 0
            if duration < minimum * 1000:
                raise MediaProcessingError(
                    f"the clip is {duration / 1000:.1f} s long; this collector needs at least "
                    f"{minimum} s"
                )
            await poster(
                scratch / "clip.mp4", scratch / "poster.jpg", at_ms=min(POSTER_AT_MS, duration // 2)
            )
        except MediaProcessingError as exc:
            failed = msgspec.structs.replace(
                clip, status="failed", error=exc.message, updated_at=context.clock.now()
            )
            await context.storage.update_clip(failed)
            return
        await upload(context.media, f"{base}.mp4", scratch / "clip.mp4")
        await upload(context.media, f"{base}.jpg", scratch / "poster.jpg")
    now = context.clock.now()
    ready = msgspec.structs.replace(
        clip,
        status="ready",
        mime_type="video/mp4",
        duration_ms=duration,
        normalised_key=f"{base}.mp4",
        poster_key=f"{base}.jpg",
        error=None,
        updated_at=now,
    )
    jobs = [_job(TRANSCRIBE_JOB, ready, now)] if context.transcriber is not None else []
    if await context.storage.update_clip(ready, jobs=jobs):
        context.wake_worker()
    else:  # retaken or erased while we worked: what we stored must not outlive it
        await context.media.delete([f"{base}.mp4", f"{base}.jpg"])


async def transcribe_clip(context: Context, job: Job) -> None:
    """Run a transcription job; fires ``clip.transcribed``."""
    clip = await _clip(context, job)
    transcriber = context.transcriber
    if clip is None or clip.normalised_key is None or transcriber is None:
        return
    async with context.media_slots, scratch_directory() as scratch:
        video = await download(context.media, clip.normalised_key, scratch / "clip.mp4")
        await extract_speech(video, scratch / "speech.wav")
        transcript = await transcriber.transcribe(scratch / "speech.wav", language="en")
    now = context.clock.now()
    done = msgspec.structs.replace(clip, transcript=transcript, updated_at=now)
    event = make_event(
        "clip.transcribed",
        workspace_id=clip.workspace_id,
        data=await clip_view(context, done),
        at=now,
    )
    if await context.storage.update_clip(done, events=[event]):
        context.wake_worker()
