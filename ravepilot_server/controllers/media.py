"""``GET /media/{key}``: the signed, expiring playback route for stores that cannot sign URLs.

Range requests are answered (206) so a browser's video player can seek and start playing before
the whole clip arrived.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Response, get
from litestar.params import FromPath, FromQuery
from litestar.response import Stream

from ravepilot_core.errors import MediaNotFound, NotFound
from ravepilot_core.playback import check_media_url
from ravepilot_server.request import RavePilotRequest

__all__ = ["media"]

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Return ``(start, end)`` (end exclusive) for a single-range header, or None for all."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None or not (match[1] or match[2]):
        return None  # multiple or malformed ranges: the whole object is a valid answer
    if match[1]:
        start = int(match[1])
        end = min(int(match[2]) + 1, size) if match[2] else size
    else:  # the last N bytes
        start, end = max(size - int(match[2]), 0), size
    if start >= size or start >= end:
        return (size, size)
    return start, end


# A video streams for as long as the browser plays it: jobs need not wait for it.
@get("/media/{key:path}", include_in_schema=False, opt={"foreground": False})
async def media(
    request: RavePilotRequest,
    key: FromPath[str],
    expires: FromQuery[str] = "",
    signature: FromQuery[str] = "",
    type: FromQuery[str] = "",
) -> Response[Any]:
    """Stream a media object to the holder of a valid, unexpired signed URL."""
    key = key.lstrip("/")
    ctx = request.ravepilot.context
    check_media_url(ctx, key, expires, signature, type or None)
    size = await ctx.media.size(key)
    if size is None:
        raise NotFound("this media no longer exists")
    headers = {
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, max-age=300",
        "Content-Type": type or "application/octet-stream",
        "X-Content-Type-Options": "nosniff",
    }
    span = _byte_range(request.headers.get("Range"), size)
    if span == (size, size):
        headers["Content-Range"] = f"bytes */{size}"
        return Response(b"", status_code=416, headers=headers)
    start, end = span or (0, size)
    headers["Content-Length"] = str(end - start)
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    try:
        chunks = ctx.media.read(key, start, end)
    except MediaNotFound:
        raise NotFound("this media no longer exists") from None
    return Stream(chunks, status_code=206 if span else 200, headers=headers)
