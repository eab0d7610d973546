"""Ingest racing the customer: a clip erased or retaken mid-processing leaves nothing behind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ravepilot_core import RavePilot
from ravepilot_core import ingest as ingest_module
from ravepilot_core.invitations import InvitationRequest
from ravepilot_core.testing import MemoryMailer, MemoryMediaStore, MemoryStorage
from tests.media import recording

pytestmark = pytest.mark.anyio


@pytest.fixture
async def rp() -> AsyncIterator[RavePilot]:
    instance = RavePilot(
        storage=MemoryStorage(),
        mailer=MemoryMailer(),
        media=MemoryMediaStore(),
        secret_key="k" * 40,
    )
    yield instance
    await instance.close()


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_a_clip_erased_while_it_is_normalised_leaves_no_media(
    rp: RavePilot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = await rp.workspaces.create("acme")
    invited = await rp.invitations.create(
        workspace.id, InvitationRequest(customer_email="ada@example.com", send_email=False)
    )
    await rp.portal.consent(invited.invite_token, accepted=True)
    record, collector = await rp.portal.open(invited.invite_token)
    video = recording(tmp_path / "take.webm").read_bytes()
    upload = await rp.uploads.create(
        record, collector, length=len(video), metadata={"script_key": "intro"}
    )
    await rp.uploads.append(record, upload.id, offset=0, chunks=chunks(video))

    real_normalise = ingest_module.normalise

    async def erase_meanwhile(source: Path, target: Path, **options: Any) -> Any:
        await rp.erasure.erase(workspace.id, record.id)  # the business erases it right now
        return await real_normalise(source, target, **options)

    monkeypatch.setattr(ingest_module, "normalise", erase_meanwhile)
    await rp.worker().run_due()  # runs the ingest job (and the erasure's media.delete job)

    media = rp.context.media
    assert isinstance(media, MemoryMediaStore)
    assert (media.objects, media.uploads) == ({}, {})
