"""Renders: ad-ready cuts of approved clips, made by a :class:`Renderer` in a durable job.

A render is queued by the API (or by ``auto_render`` when the last clip is decided), made by the
``media.render`` job and stored in the media store. Whatever the renderer raises fails the render
with that reason (``render.failed``); only trouble with the media store retries the job.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Literal

import aiohttp
import msgspec

from ravepilot_core.context import Context
from ravepilot_core.errors import Conflict, MediaProcessingError, NotFound
from ravepilot_core.events import make_event
from ravepilot_core.ffmpeg import private_copy
from ravepilot_core.ids import new_id
from ravepilot_core.models import (
    ClipRecord,
    Collector,
    Job,
    Render,
    RenderClip,
    RenderRecord,
    RenderRequest,
    SubmissionRecord,
)
from ravepilot_core.playback import playback_for
from ravepilot_core.safehttp import new_session
from ravepilot_core.scratch import download, scratch_directory, upload

__all__ = ["RENDER_JOB", "RenderService", "render_view", "run_render"]

log = logging.getLogger("ravepilot.renders")

RENDER_JOB = "media.render"
RenderFormat = Literal["9:16", "1:1", "16:9"]
MAX_LOGO_BYTES = 2 * 1024 * 1024
_RENDERABLE = ("submitted", "reviewed", "rendered")


async def render_view(context: Context, record: RenderRecord) -> Render:
    """Return the API view of a stored render, with a playback handle once it succeeded."""
    playback = None
    if record.status == "succeeded" and record.media_key and context.media_store is not None:
        playback = await playback_for(context, record.media_key, "video/mp4")
    return Render(
        id=record.id,
        submission_id=record.submission_id,
        format=record.format,
        status=record.status,
        clip_ids=record.clip_ids,
        duration_ms=record.duration_ms,
        playback=playback,
        error=record.error,
        created_at=record.created_at,
        finished_at=record.finished_at,
    )


def _in_script_order(clips: list[ClipRecord], collector: Collector | None) -> list[ClipRecord]:
    order = {p.key: n for n, p in enumerate(collector.script)} if collector else {}
    return sorted(clips, key=lambda c: (order.get(c.script_key, len(order)), c.id))


class RenderService:
    """Queue renders and read them."""

    def __init__(self, context: Context) -> None:
        self._ctx = context

    async def create(
        self,
        workspace_id: str,
        submission_id: str,
        render_format: RenderFormat,
        clip_ids: list[str] | None = None,
    ) -> Render:
        """Queue a render of ``clip_ids`` (default: every approved clip, in script order)."""
        storage = self._ctx.storage
        submission = await storage.get_submission(workspace_id, submission_id)
        if submission is None:
            raise NotFound(f"no submission {submission_id!r} in this workspace")
        return await self.queue(submission, render_format, clip_ids)

    async def queue(
        self,
        submission: SubmissionRecord,
        render_format: RenderFormat,
        clip_ids: list[str] | None = None,
    ) -> Render:
        """Queue a render for a submission already read."""
        ctx = self._ctx
        if submission.status not in _RENDERABLE:
            raise Conflict(
                f"a {submission.status} submission cannot be rendered: "
                "render after the customer submitted"
            )
        collector = await ctx.storage.get_collector(
            submission.workspace_id, submission.collector_id
        )
        clips = {c.id: c for c in await ctx.storage.list_clips([submission.id])}
        if clip_ids is None:
            chosen = [c for c in clips.values() if c.review.status == "approved"]
        else:
            unknown = [i for i in clip_ids if i not in clips]
            if unknown:
                raise NotFound(f"no clip {unknown[0]!r} in this submission")
            chosen = [clips[i] for i in dict.fromkeys(clip_ids)]
        if not chosen:
            raise Conflict("approve at least one clip before rendering")
        for clip in chosen:
            if clip.review.status != "approved":
                raise Conflict(f"clip {clip.id} is not approved; approve it before rendering")
            if clip.status != "ready":
                raise Conflict(
                    f"clip {clip.id} is {clip.status}"
                    + (f" ({clip.error})" if clip.error else "")
                    + "; only ready clips can be rendered"
                )
        if clip_ids is None:
            chosen = _in_script_order(chosen, collector)
        now = ctx.clock.now()
        record = RenderRecord(
            id=new_id("rnd", now),
            workspace_id=submission.workspace_id,
            submission_id=submission.id,
            format=render_format,
            status="queued",
            clip_ids=tuple(c.id for c in chosen),
            created_at=now,
        )
        await ctx.storage.create_render(record, jobs=[_render_job(record, now)])
        ctx.wake_worker()
        return await render_view(ctx, record)

    async def get(self, workspace_id: str, render_id: str) -> Render:
        """Return one render or raise NotFound."""
        record = await self._ctx.storage.get_render(workspace_id, render_id)
        if record is None:
            raise NotFound(f"no render {render_id!r} in this workspace")
        return await render_view(self._ctx, record)


def _render_job(record: RenderRecord, at: datetime) -> Job:
    return Job(
        id=new_id("job", at),
        workspace_id=record.workspace_id,
        kind=RENDER_JOB,
        subject_id=record.id,
        max_attempts=5,
        run_at=at,
        created_at=at,
    )


async def _fetch_logo(context: Context, url: str, target: Path) -> Path | None:
    """Download the brand's logo under the webhook URL policy; None when it cannot be had."""
    session = new_session(
        resolver=context.resolver,
        allow_private=context.allow_private_webhooks,
        timeout=10.0,
        user_agent="RavePilot-Renderer",
    )
    try:
        async with session, session.get(url) as response:
            kind = response.headers.get("Content-Type", "").split(";")[0].strip()
            if response.status != 200 or kind not in ("image/png", "image/jpeg"):
                log.warning(
                    "logo %s answered %s %s; rendering without it", url, response.status, kind
                )
                return None
            body = b""
            async for piece in response.content.iter_chunked(64 * 1024):
                body += piece
                if len(body) > MAX_LOGO_BYTES:
                    log.warning(
                        "logo %s is over %d bytes; rendering without it", url, MAX_LOGO_BYTES
                    )
                    return None
        target.write_bytes(body)
        return target
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        log.warning("logo %s could not be fetched (%s); rendering without it", url, exc)
        return None


async def run_render(context: Context, job: Job) -> None:
    """Run a render job; fires ``render.succeeded`` or ``render.failed``."""
    storage = context.storage
    record = await storage.get_render(job.workspace_id, job.subject_id)
    renderer = context.renderer
    if record is None or record.status in ("succeeded", "failed") or renderer is None:
        return
    submission = await storage.get_submission(record.workspace_id, record.submission_id)
    if submission is None:
        return
    collector = await storage.get_collector(record.workspace_id, submission.collector_id)
    clips = {c.id: c for c in await storage.list_clips([record.submission_id])}
    running = msgspec.structs.replace(record, status="running")
    if not await storage.update_render(running):
        return  # erased meanwhile
    key = f"{record.workspace_id}/{record.submission_id}/renders/{record.id}.mp4"
    error = None
    duration = 0
    async with context.media_slots, scratch_directory() as scratch:
        parts = []
        for n, clip_id in enumerate(record.clip_ids):
            clip = clips.get(clip_id)
            if clip is None or clip.normalised_key is None:
                error = f"clip {clip_id} is gone or was never processed"
                break
            if clip.review.status != "approved":  # decided again while the render was queued
                error = f"clip {clip_id} is {clip.review.status}, no longer approved"
                break
            # Cut from the customer's original, not the playback copy: no second generation of
            # lossy encoding, and full size where the copy is capped at 720p. A renderer may be
            # a third party's service, so it gets the streams without the phone's metadata.
            original = await download(context.media, clip.media_key, scratch / f"original{n}")
            try:
                path = await private_copy(original, scratch / f"clip{n}")
            except MediaProcessingError as exc:
                error = f"clip {clip_id}: {exc.message}"
                break
            parts.append(
                RenderClip(
                    path=str(path), duration_ms=clip.duration_ms or 0, transcript=clip.transcript
                )
            )
        if error is None and collector is None:
            error = "the submission's collector no longer exists"
        if error is None and collector is not None:
            logo = None
            if collector.brand.logo_url:
                logo = await _fetch_logo(context, collector.brand.logo_url, scratch / "logo")
            request = RenderRequest(
                format=record.format,
                clips=tuple(parts),
                customer_name=submission.customer.name,
                brand=collector.brand,
                logo_path=str(logo) if logo else None,
            )
            try:
                duration = await renderer.render(request, scratch / "render.mp4")
            except Exception as exc:  # a renderer crash fails the render, with its reason
                log.warning("render %s failed: %s", record.id, exc)
                error = str(getattr(exc, "message", None) or exc) or type(exc).__name__
            else:
                await upload(context.media, key, scratch / "render.mp4")
    now = context.clock.now()
    finished = msgspec.structs.replace(
        running,
        status="failed" if error else "succeeded",
        duration_ms=None if error else duration,
        media_key=None if error else key,
        error=error,
        finished_at=now,
    )
    event = make_event(
        "render.failed" if error else "render.succeeded",
        workspace_id=record.workspace_id,
        data=await render_view(context, finished),
        at=now,
    )
    if await storage.update_render(finished, events=[event]):
        context.wake_worker()
    elif not error:  # erased while rendering: the file must not outlive the submission
        await context.media.delete([key])
