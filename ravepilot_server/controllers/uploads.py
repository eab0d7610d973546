"""The tus 1.0.0 server under ``/r/{invite_token}/uploads/``.

Extensions: creation, termination, expiration.

The protocol's HTTP surface lives here; what an upload is (limits, offsets, becoming a clip) is
:class:`ravepilot_core.uploads.UploadService`. PATCH bodies are read straight from the ASGI
receive channel and streamed into the media store: nothing holds a whole clip, and a client that
goes away mid-request keeps every byte that arrived (the next HEAD reports them).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from datetime import datetime
from email.utils import format_datetime
from typing import Any

from litestar import Controller, Request, Response, delete, head, patch, post
from litestar.datastructures import MutableScopeHeaders
from litestar.params import FromPath
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from ravepilot_core import RavePilot
from ravepilot_core.errors import InvalidRequest, RavePilotError, UnsupportedMediaType
from ravepilot_core.models import Upload
from ravepilot_server.request import RavePilotRequest

__all__ = ["TUS_VERSION", "TusController", "parse_metadata"]

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,termination,expiration"
_OFFSET_TYPE = "application/offset+octet-stream"


class TusVersionMismatch(RavePilotError):
    """The client speaks a tus version this server does not (412 with ``Tus-Version``)."""

    status = 412
    code = "tus_version_unsupported"


def parse_metadata(header: str | None) -> dict[str, str]:
    """Decode ``Upload-Metadata``: comma-separated ``key base64(value)`` pairs (value optional)."""
    found: dict[str, str] = {}
    if not header:
        return found
    for pair in header.split(","):
        key, _, encoded = pair.strip().partition(" ")
        if not key or " " in encoded.strip() or key in found:
            raise InvalidRequest(
                "Upload-Metadata must be comma-separated 'key base64value' pairs, keys unique"
            )
        try:
            found[key] = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidRequest(
                f"Upload-Metadata value of {key!r} is not base64 of UTF-8 text"
            ) from None
    return found


def _integer_header(request: Request[Any, Any, Any], name: str) -> int | None:
    raw = request.headers.get(name)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise InvalidRequest(f"{name} must be a non-negative integer, got {raw!r}")
    return int(raw)


def _check_version(request: Request[Any, Any, Any]) -> None:
    if request.headers.get("Tus-Resumable") != TUS_VERSION:
        raise TusVersionMismatch(f"send Tus-Resumable: {TUS_VERSION} (the only version served)")


def _http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


def _tus_headers(upload: Upload | None = None) -> dict[str, str]:
    headers = {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store"}
    if upload is not None:
        headers["Upload-Offset"] = str(upload.offset)
        if upload.completed_at is None:
            headers["Upload-Expires"] = _http_date(upload.expires_at)
    return headers


class _RequestBody:
    """A PATCH body straight off the wire; a disconnect ends it quietly (bytes so far count)."""

    def __init__(self, request: Request[Any, Any, Any]) -> None:
        self._receive = request.receive
        self.disconnected = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                return
            body = message.get("body", b"")
            if body:
                yield body
            if not message.get("more_body", False):
                return


def tus_headers_middleware(app: ASGIApp) -> ASGIApp:
    """Put ``Tus-Resumable`` on every answer, errors included, as the protocol requires.

    OPTIONS is Litestar's automatic answer; this adds what tus clients discover from it.
    """

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                headers["Tus-Resumable"] = TUS_VERSION
                if message["status"] == TusVersionMismatch.status:
                    headers["Tus-Version"] = TUS_VERSION
                if scope["method"] == "OPTIONS":
                    ravepilot: RavePilot = scope["litestar_app"].state.ravepilot
                    headers["Tus-Version"] = TUS_VERSION
                    headers["Tus-Extension"] = TUS_EXTENSIONS
                    headers["Tus-Max-Size"] = str(ravepilot.context.max_upload_bytes)
            await send(message)

        await app(scope, receive, send_with_version)

    return middleware


class TusController(Controller):
    """Resumable uploads of clips (tus 1.0.0), authorised by the invite token."""

    path = "/r/{invite_token:str}/uploads"
    tags = ["portal"]
    middleware = [tus_headers_middleware]
    include_in_schema = False  # a binary protocol; documented in docs/portal.md
    opt = {"foreground": False}  # an upload lasts minutes: jobs need not wait for it

    @staticmethod
    async def _submission(ravepilot: RavePilot, invite_token: str) -> Any:
        record, _ = await ravepilot.portal.open(invite_token)
        return record

    @post("/", status_code=201)
    async def create(
        self, request: RavePilotRequest, invite_token: FromPath[str]
    ) -> Response[None]:
        """Creation: ``Upload-Length`` and ``Upload-Metadata`` (``script_key`` required)."""
        _check_version(request)
        if _integer_header(request, "Content-Length"):
            raise InvalidRequest(
                "creation takes no body here (creation-with-upload is not supported); "
                "send the bytes with PATCH"
            )
        if request.headers.get("Upload-Defer-Length") is not None:
            raise InvalidRequest("deferred lengths are not supported: send Upload-Length")
        record, collector = await request.ravepilot.portal.open(invite_token)
        upload = await request.ravepilot.uploads.create(
            record,
            collector,
            length=_integer_header(request, "Upload-Length"),
            metadata=parse_metadata(request.headers.get("Upload-Metadata")),
        )
        headers = _tus_headers(upload)
        headers["Location"] = f"/r/{invite_token}/uploads/{upload.id}"
        return Response(None, status_code=201, headers=headers)

    @head("/{upload_id:str}")
    async def status(
        self, request: RavePilotRequest, invite_token: FromPath[str], upload_id: FromPath[str]
    ) -> Response[None]:
        """Where the upload stands: ``Upload-Offset`` is where to resume."""
        _check_version(request)
        record = await self._submission(request.ravepilot, invite_token)
        upload = await request.ravepilot.uploads.get(record, upload_id)
        headers = _tus_headers(upload)
        headers["Upload-Length"] = str(upload.length)
        return Response(None, status_code=200, headers=headers)

    @patch("/{upload_id:str}", status_code=204, request_max_body_size=None)
    async def append(
        self, request: RavePilotRequest, invite_token: FromPath[str], upload_id: FromPath[str]
    ) -> Response[None]:
        """Append the body at ``Upload-Offset``; the last byte makes the clip."""
        _check_version(request)
        if request.headers.get("Content-Type", "").split(";")[0].strip() != _OFFSET_TYPE:
            raise UnsupportedMediaType(f"PATCH bodies must be sent as Content-Type: {_OFFSET_TYPE}")
        offset = _integer_header(request, "Upload-Offset")
        if offset is None:
            raise InvalidRequest("send Upload-Offset: the offset this body starts at")
        record = await self._submission(request.ravepilot, invite_token)
        body = _RequestBody(request)
        upload = await request.ravepilot.uploads.append(
            record,
            upload_id,
            offset=offset,
            chunks=body,
            announced=_integer_header(request, "Content-Length"),
        )
        return Response(None, status_code=204, headers=_tus_headers(upload))

    @delete("/{upload_id:str}", status_code=204)
    async def terminate(
        self, request: RavePilotRequest, invite_token: FromPath[str], upload_id: FromPath[str]
    ) -> Response[None]:
        """Termination: throw an unfinished upload away."""
        _check_version(request)
        record = await self._submission(request.ravepilot, invite_token)
        await request.ravepilot.uploads.terminate(record, upload_id)
        return Response(None, status_code=204, headers=_tus_headers())
