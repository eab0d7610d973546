"""The render job's logo download: whole files, a size cap, and a miss that never fails a render."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from ravepilot_core import RavePilot
from ravepilot_core.renders import MAX_LOGO_BYTES, _fetch_logo
from ravepilot_core.testing import MemoryMailer, MemoryStorage

pytestmark = pytest.mark.anyio

LOGO = b"\x89PNG\r\n\x1a\n" + os.urandom(900_000)  # far more than one network read


@pytest.fixture
async def logo_server() -> AsyncIterator[str]:
    async def logo(request: web.Request) -> web.Response:
        return web.Response(body=LOGO, content_type="image/png")

    async def huge(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * (MAX_LOGO_BYTES + 10), content_type="image/png")

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/logo.png", logo)
    app.router.add_get("/huge.png", huge)
    app.router.add_get("/page", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_the_whole_logo_is_fetched_and_oversized_or_wrong_ones_are_skipped(
    logo_server: str, tmp_path: Path
) -> None:
    rp = RavePilot(
        storage=MemoryStorage(),
        mailer=MemoryMailer(),
        secret_key="k" * 40,
        allow_private_webhooks=True,  # the server is on loopback
    )
    fetched = await _fetch_logo(rp.context, f"{logo_server}/logo.png", tmp_path / "logo")
    assert fetched is not None and fetched.read_bytes() == LOGO
    assert await _fetch_logo(rp.context, f"{logo_server}/huge.png", tmp_path / "h") is None
    assert await _fetch_logo(rp.context, f"{logo_server}/page", tmp_path / "p") is None
    strict = RavePilot(storage=MemoryStorage(), mailer=MemoryMailer(), secret_key="k" * 40)
    # Under the webhook URL policy a loopback logo is refused, not fetched.
    assert await _fetch_logo(strict.context, f"{logo_server}/logo.png", tmp_path / "s") is None
