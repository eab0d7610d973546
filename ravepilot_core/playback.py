"""Playback handles: time-limited signed URLs for clips and renders, never a permanent path.

A media store that can sign URLs itself (S3) answers :meth:`MediaStore.playback_url`; for one
that cannot (local files) RavePilot signs ``<public_url>/media/<key>?expires=…&signature=…`` with
a key derived from the server secret, and the server's media route checks it with
:func:`check_media_url`.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote, urlencode

from ravepilot_core.clock import utc_from_ms
from ravepilot_core.context import Context
from ravepilot_core.errors import LinkExpired, NotFound
from ravepilot_core.models import Clip, ClipRecord, Playback

__all__ = ["MEDIA_PATH", "PLAYBACK_TTL", "check_media_url", "clip_view", "playback_for"]

MEDIA_PATH = "/media/"
PLAYBACK_TTL = timedelta(hours=1)


async def playback_for(context: Context, key: str, content_type: str | None) -> Playback:
    """Return a playback handle for the media object ``key``, valid for :data:`PLAYBACK_TTL`."""
    # Whole seconds: the expiry travels as a Unix time in the URL.
    expires = int((context.clock.now() + PLAYBACK_TTL).timestamp())
    expires_at = utc_from_ms(expires * 1000)
    url = await context.media.playback_url(key, expires_at=expires_at, content_type=content_type)
    if url is None:
        query: dict[str, object] = {
            "expires": expires,
            "signature": context.keyring.media_signature(key, expires, content_type),
        }
        if content_type:
            query["type"] = content_type
        url = f"{context.public_url.rstrip('/')}{MEDIA_PATH}{quote(key)}?{urlencode(query)}"
    return Playback(url=url, expires_at=expires_at)


def check_media_url(
    context: Context, key: str, expires: str, signature: str, content_type: str | None
) -> None:
    """Accept a signed media URL's parts, or raise NotFound (forged) or LinkExpired (too old)."""
    if not (expires.isascii() and expires.isdigit()) or not context.keyring.media_signature_valid(
        key, int(expires), signature, content_type
    ):
        raise NotFound("no such media, or the link is not a valid playback link")
    if int(expires) < context.clock.now().timestamp():
        raise LinkExpired(
            "this playback link has expired: fetch the clip or render again for a fresh link"
        )


async def clip_view(context: Context, record: ClipRecord) -> Clip:
    """Return the API view of a stored clip, with fresh playback handles when it is ready.

    What plays is the normalised mp4 (browsers play it everywhere), with its poster frame.
    """
    playback = poster = None
    if record.status == "ready" and context.media_store is not None:
        if record.normalised_key is not None:
            playback = await playback_for(context, record.normalised_key, "video/mp4")
        else:  # an embedder that does not process media: the original plays
            playback = await playback_for(context, record.media_key, record.mime_type)
        if record.poster_key is not None:
            poster = await playback_for(context, record.poster_key, "image/jpeg")
    return Clip(
        id=record.id,
        submission_id=record.submission_id,
        script_key=record.script_key,
        status=record.status,
        duration_ms=record.duration_ms,
        mime_type=record.mime_type,
        size_bytes=record.size_bytes,
        transcript=record.transcript,
        review=record.review,
        playback=playback,
        poster=poster,
        error=record.error,
        created_at=record.created_at,
    )
