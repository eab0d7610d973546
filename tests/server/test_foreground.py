"""The server counts the requests it is answering, so the in-process worker steps aside."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from litestar.routes import HTTPRoute

from ravepilot_core import RavePilot, Settings
from ravepilot_server import create_app
from ravepilot_server.foreground import foreground_middleware
from tests.server.conftest import Tenant
from tests.server.helpers import serve

pytestmark = pytest.mark.anyio


async def test_a_request_counts_while_it_runs_and_stops_counting_when_it_fails_too(
    tenant: Tenant, ravepilot: RavePilot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    original = ravepilot.submissions.list

    async def listing(*args: Any, **kwargs: Any) -> Any:
        seen.append(ravepilot.foreground.in_flight)
        if kwargs.get("status") == "withdrawn":
            raise RuntimeError("broken on purpose")
        return await original(*args, **kwargs)

    monkeypatch.setattr(ravepilot.submissions, "list", listing)
    async with serve(create_app(Settings(data_dir=tmp_path), ravepilot=ravepilot)) as client:
        ok = await client.get("/v1/submissions", headers=tenant.headers)
        failed = await client.get("/v1/submissions?status=withdrawn", headers=tenant.headers)
    assert (ok.status_code, failed.status_code) == (200, 500)
    assert seen == [1, 1]  # this request, counted while its handler ran
    assert ravepilot.foreground.in_flight == 0


async def test_uploads_and_media_streams_do_not_count(ravepilot: RavePilot, tmp_path: Path) -> None:
    """They last as long as the customer's connection; every job would pay the pause all along."""
    seen: list[int] = []

    async def handler(scope: Any, receive: Any, send: Any) -> None:
        seen.append(ravepilot.foreground.in_flight)

    wrapped = foreground_middleware(handler)
    litestar_app = SimpleNamespace(state=SimpleNamespace(ravepilot=ravepilot))
    for opt in ({}, {"foreground": False}):
        route_handler = SimpleNamespace(opt=opt)
        scope = {"type": "http", "route_handler": route_handler, "litestar_app": litestar_app}
        await wrapped(scope, None, None)  # type: ignore[arg-type]
    assert seen == [1, 0]

    app = create_app(Settings(data_dir=tmp_path), ravepilot=ravepilot)
    counted = {  # Litestar's automatic OPTIONS answers are short: leave them out
        route.path: [
            handler.opt.get("foreground", True)
            for handler in route.route_handlers
            if handler.http_methods != {"OPTIONS"}
        ]
        for route in app.routes
        if isinstance(route, HTTPRoute)
    }
    long_lived = [path for path in counted if "/uploads" in path or path.startswith("/media/")]
    assert long_lived and all(counted[path] == [False] * len(counted[path]) for path in long_lived)
    assert counted["/v1/invitations"] == [True]
