"""The server counts the requests it is answering, so the in-process worker steps aside."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ravepilot_core import RavePilot, Settings
from ravepilot_server import create_app
from tests.server.conftest import Tenant
from tests.server.helpers import serve

pytestmark = pytest.mark.anyio


async def test_a_request_counts_while_it_runs_and_stops_counting_however_it_ends(
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
        missing = await client.get("/v1/nothing-here", headers=tenant.headers)
    assert (ok.status_code, failed.status_code, missing.status_code) == (200, 500, 404)
    assert seen == [1, 1]  # this request, counted while its handler ran
    assert ravepilot.foreground.in_flight == 0
