"""The customer's side over HTTP: session, consent, tus uploads, finish, review, withdraw, erase."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from ravepilot_core import RavePilot, Settings
from ravepilot_server import create_app
from tests.media import recording
from tests.server.conftest import Tenant, serve_tenant
from tests.server.helpers import Client, assert_error, expect, serve

pytestmark = pytest.mark.anyio

TUS = {"Tus-Resumable": "1.0.0"}
WEBM_MAGIC = b"\x1a\x45\xdf\xa3"


def fake_webm(size: int) -> bytes:
    """Bytes that start like a webm file (the upload sniffs only the container's magic).

    Processing later fails them as unreadable, which is all some tests need.
    """
    return WEBM_MAGIC + os.urandom(size - len(WEBM_MAGIC))


@pytest.fixture(scope="session")
def real_clips(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """Two short browser-like recordings (VP8/Opus webm), made with ffmpeg."""
    directory = tmp_path_factory.mktemp("clips")
    first = recording(directory / "first.webm", seconds=2.0)
    second = recording(directory / "second.webm", seconds=1.5, size="240x320")
    return first.read_bytes(), second.read_bytes()


async def processed(client: Client, tenant: Tenant, submission_id: str) -> dict[str, Any]:
    """Wait until no clip of the submission is processing any more; return the submission."""
    with anyio.fail_after(60):
        while True:
            submission = expect(
                await client.get(f"/v1/submissions/{submission_id}", headers=tenant.headers)
            )
            if all(c["status"] != "processing" for c in submission["clips"]):
                return submission
            await anyio.sleep(0.1)


def metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


async def invite(client: Client, tenant: Tenant, email: str = "marjorie@acme.com") -> str:
    """Create an invitation over HTTP; return the invite token."""
    response = await client.post(
        "/v1/invitations",
        json={"customer_email": email, "customer_name": "Marjorie", "send_email": False},
        headers=tenant.headers,
    )
    token: str = expect(response, 201)["invite_token"]
    return token


async def use_two_prompts(client: Client, tenant: Tenant) -> None:
    collectors = expect(await client.get("/v1/collectors", headers=tenant.headers))["data"]
    response = await client.patch(
        f"/v1/collectors/{collectors[0]['id']}",
        json={
            "script": [
                {"key": "intro", "prompt": "Who are you?", "max_seconds": 30},
                {"key": "story", "prompt": "What changed?", "max_seconds": 60},
            ]
        },
        headers=tenant.headers,
    )
    expect(response)


async def create_upload(client: Client, token: str, length: int, script_key: str = "intro") -> str:
    response = await client.post(
        f"/r/{token}/uploads/",
        headers={
            **TUS,
            "Upload-Length": str(length),
            "Upload-Metadata": metadata(script_key=script_key, filetype="video/webm"),
        },
    )
    assert response.status_code == 201, response.text
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert "Upload-Expires" in response.headers
    location: str = response.headers["Location"]
    assert location.startswith(f"/r/{token}/uploads/upl_")
    return location


async def patch(client: Client, location: str, offset: int, body: bytes) -> httpx.Response:
    return await client.patch(
        location,
        content=body,
        headers={
            **TUS,
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
        },
    )


async def upload(client: Client, token: str, body: bytes, script_key: str = "intro") -> str:
    location = await create_upload(client, token, len(body), script_key)
    response = await patch(client, location, 0, body)
    assert response.status_code == 204, response.text
    assert response.headers["Upload-Offset"] == str(len(body))
    return location


async def event_types(ravepilot: RavePilot, tenant: Tenant) -> list[str]:
    return [e.type for e in reversed(await ravepilot.storage.list_events(tenant.workspace_id))]


async def consent(client: Client, token: str) -> dict[str, Any]:
    return expect(await client.post(f"/r/{token}/api/consent", json={"accepted": True}))


async def test_a_customer_records_two_prompts_and_the_business_reviews_them(
    client: Client, tenant: Tenant, ravepilot: RavePilot, real_clips: tuple[bytes, bytes]
) -> None:
    await use_two_prompts(client, tenant)
    token = await invite(client, tenant)

    session = expect(await client.get(f"/r/{token}/api/session"))
    assert session["status"] == "invited"
    assert session["customer_name"] == "Marjorie"
    assert [p["key"] for p in session["script"]] == ["intro", "story"]
    assert session["upload_url"] == f"/r/{token}/uploads/"
    assert "video/webm" in session["accepted_types"] and "video/mp4" in session["accepted_types"]

    session = await consent(client, token)
    assert session["status"] == "recording"
    assert session["consent"]["text"] == session["consent_text"]
    assert session["consent"]["version"] == session["consent_version"]

    first, second = real_clips
    location = await create_upload(client, token, len(first))
    head = await client.head(location, headers=TUS)
    assert (head.headers["Upload-Offset"], head.headers["Upload-Length"]) == ("0", str(len(first)))
    half = len(first) // 2
    assert (await patch(client, location, 0, first[:half])).headers["Upload-Offset"] == str(half)
    assert_error(await patch(client, location, half // 2, first[half // 2 :]), 409)  # not there
    head = await client.head(location, headers=TUS)
    assert head.headers["Upload-Offset"] == str(half)  # resume from what the server holds
    assert (await patch(client, location, half, first[half:])).status_code == 204
    await upload(client, token, second, "story")

    clips = expect(await client.get(f"/r/{token}/api/session"))["clips"]
    assert [(c["script_key"], c["size_bytes"]) for c in clips] == [
        ("intro", len(first)),
        ("story", len(second)),
    ]
    session = expect(await client.post(f"/r/{token}/api/finish"))
    assert session["status"] == "submitted"
    assert_error(await client.post(f"/r/{token}/uploads/", headers=TUS), 409)

    submission_id = session["submission_id"]
    submission = await processed(client, tenant, submission_id)
    assert submission["status"] == "submitted"
    intro, story = submission["clips"]
    assert [c["status"] for c in (intro, story)] == ["ready", "ready"], submission["clips"]
    assert 1900 <= intro["duration_ms"] <= 2100 and 1400 <= story["duration_ms"] <= 1600
    assert intro["mime_type"] == "video/mp4"
    url = intro["playback"]["url"].removeprefix("https://reviews.example.test")
    served = await client.get(url)
    assert served.status_code == 200 and served.headers["content-type"] == "video/mp4"
    assert served.content[4:8] == b"ftyp"  # the normalised mp4, not the customer's webm
    ranged = await client.get(url, headers={"Range": "bytes=10-19"})
    assert (ranged.status_code, ranged.content) == (206, served.content[10:20])
    assert ranged.headers["Content-Range"] == f"bytes 10-19/{len(served.content)}"
    poster = await client.get(intro["poster"]["url"].removeprefix("https://reviews.example.test"))
    assert poster.headers["content-type"] == "image/jpeg" and poster.content[:2] == b"\xff\xd8"

    approved = expect(
        await client.post(
            f"/v1/clips/{intro['id']}/approve", json={"note": "great"}, headers=tenant.headers
        )
    )
    assert approved["review"]["status"] == "approved" and approved["review"]["note"] == "great"
    again = expect(await client.post(f"/v1/clips/{intro['id']}/approve", headers=tenant.headers))
    assert again["review"]["decided_at"] == approved["review"]["decided_at"]  # a no-op
    expect(await client.post(f"/v1/clips/{story['id']}/reject", headers=tenant.headers))
    submission = expect(
        await client.get(f"/v1/submissions/{submission_id}", headers=tenant.headers)
    )
    assert submission["status"] == "reviewed"

    assert await event_types(ravepilot, tenant) == [
        "invitation.created",
        "submission.started",
        "clip.uploaded",
        "clip.uploaded",
        "submission.submitted",
        "clip.approved",
        "clip.rejected",
    ]


async def test_an_unreadable_upload_fails_with_a_reason_and_keeps_the_original(
    client: Client, tenant: Tenant, tmp_path: Path
) -> None:
    token = await invite(client, tenant)
    await consent(client, token)
    junk = fake_webm(30_000)
    await upload(client, token, junk)
    submission_id = expect(await client.get(f"/r/{token}/api/session"))["submission_id"]
    clip = (await processed(client, tenant, submission_id))["clips"][0]
    assert clip["status"] == "failed" and "not a readable video" in clip["error"], clip
    assert clip["playback"] is None
    originals = [p for p in (tmp_path / "media").rglob("upl_*") if p.is_file()]
    assert [p.read_bytes() == junk for p in originals] == [True]


async def test_a_retake_replaces_the_clip_and_deletes_the_old_media(
    client: Client, tenant: Tenant, ravepilot: RavePilot, tmp_path: Path
) -> None:
    token = await invite(client, tenant)
    await consent(client, token)
    await upload(client, token, fake_webm(50_000))
    old = expect(await client.get(f"/r/{token}/api/session"))["clips"][0]
    retake = fake_webm(60_000)
    await upload(client, token, retake)
    clips = expect(await client.get(f"/r/{token}/api/session"))["clips"]
    assert [c["size_bytes"] for c in clips] == [60_000] and clips[0]["id"] != old["id"]
    await ravepilot.worker().run_due()  # the media.delete job stored with the retake
    stored = sorted(p.stat().st_size for p in (tmp_path / "media").rglob("upl_*"))
    assert stored == [60_000]


async def test_uploads_need_consent_a_known_prompt_and_a_video(
    client: Client, tenant: Tenant
) -> None:
    token = await invite(client, tenant)
    headers = {**TUS, "Upload-Length": "1000", "Upload-Metadata": metadata(script_key="intro")}
    assert (
        "consent"
        in assert_error(await client.post(f"/r/{token}/uploads/", headers=headers), 409)["error"]
    )
    await consent(client, token)

    unknown = {**headers, "Upload-Metadata": metadata(script_key="nope")}
    body = assert_error(await client.post(f"/r/{token}/uploads/", headers=unknown), 400)
    assert "intro" in body["error"]  # names the prompts there are
    missing = {**TUS, "Upload-Length": "1000"}
    assert (
        "script_key"
        in assert_error(await client.post(f"/r/{token}/uploads/", headers=missing), 400)["error"]
    )
    huge = {**headers, "Upload-Length": str(2 * 1024**3)}
    assert_error(await client.post(f"/r/{token}/uploads/", headers=huge), 413)
    pdf = {**headers, "Upload-Metadata": metadata(script_key="intro", filetype="application/pdf")}
    assert_error(await client.post(f"/r/{token}/uploads/", headers=pdf), 415)
    old = {"Tus-Resumable": "0.2.2", "Upload-Length": "10"}
    refused = await client.post(f"/r/{token}/uploads/", headers=old)
    assert_error(refused, 412)
    assert refused.headers["Tus-Version"] == "1.0.0"

    location = await create_upload(client, token, 1000)
    assert_error(await patch(client, location, 0, b"%PDF-1.7 not a video at all"), 415)
    assert (await client.head(location, headers=TUS)).headers["Upload-Offset"] == "0"
    wrong_type = await client.patch(
        location, content=b"x", headers={**TUS, "Upload-Offset": "0", "Content-Type": "video/webm"}
    )
    assert_error(wrong_type, 415)
    too_much = fake_webm(1500)
    assert "Upload-Length" in assert_error(await patch(client, location, 0, too_much), 413)["error"]
    assert (await client.head(location, headers=TUS)).headers["Upload-Offset"] == "0"


async def test_termination_and_the_options_answer(client: Client, tenant: Tenant) -> None:
    token = await invite(client, tenant)
    await consent(client, token)
    options = await client.options(f"/r/{token}/uploads/")
    assert options.headers["Tus-Version"] == "1.0.0"
    assert set(options.headers["Tus-Extension"].split(",")) == {
        "creation",
        "termination",
        "expiration",
    }
    assert int(options.headers["Tus-Max-Size"]) == 1024**3
    location = await create_upload(client, token, 5000)
    await patch(client, location, 0, fake_webm(5000)[:2000])
    assert (await client.delete(location, headers=TUS)).status_code == 204
    assert (await client.head(location, headers=TUS)).status_code == 404  # HEAD: no body
    assert_error(await client.delete(location, headers=TUS), 404)


async def test_finishing_needs_a_clip(client: Client, tenant: Tenant) -> None:
    token = await invite(client, tenant)
    assert_error(await client.post(f"/r/{token}/api/finish"), 409)
    await consent(client, token)
    body = assert_error(await client.post(f"/r/{token}/api/finish"), 409)
    assert "at least one clip" in body["error"]
    assert_error(await client.post(f"/r/{token}/api/consent", json={"accepted": False}), 400)


async def test_withdrawing_deletes_the_media_and_closes_the_link(
    client: Client, tenant: Tenant, ravepilot: RavePilot, tmp_path: Path
) -> None:
    token = await invite(client, tenant)
    await consent(client, token)
    await upload(client, token, fake_webm(40_000))
    unfinished = await create_upload(client, token, 9000, "intro")
    await patch(client, unfinished, 0, fake_webm(9000)[:3000])
    assert list((tmp_path / "media").rglob("upl_*"))

    withdrawn = expect(await client.post(f"/r/{token}/api/withdraw"))
    assert withdrawn == {"ok": True, "status": "withdrawn"}
    assert not [p for p in (tmp_path / "media").rglob("*") if p.is_file()]
    assert_error(await client.get(f"/r/{token}/api/session"), 404)
    assert (await client.head(unfinished, headers=TUS)).status_code == 404
    submissions = expect(await client.get("/v1/submissions", headers=tenant.headers))["data"]
    assert submissions[0]["status"] == "withdrawn" and submissions[0]["clips"] == []
    assert submissions[0]["customer"]["email"] == "marjorie@acme.com"  # the business's record
    assert (await event_types(ravepilot, tenant))[-1] == "submission.withdrawn"


async def test_erasing_a_submission_removes_personal_data(
    client: Client, tenant: Tenant, ravepilot: RavePilot, tmp_path: Path
) -> None:
    token = await invite(client, tenant)
    await consent(client, token)
    await upload(client, token, fake_webm(40_000))
    submission_id = expect(await client.get(f"/r/{token}/api/session"))["submission_id"]

    response = await client.delete(f"/v1/submissions/{submission_id}", headers=tenant.headers)
    assert response.status_code == 204
    again = await client.delete(f"/v1/submissions/{submission_id}", headers=tenant.headers)
    assert again.status_code == 204
    tombstone = expect(await client.get(f"/v1/submissions/{submission_id}", headers=tenant.headers))
    assert tombstone["status"] == "withdrawn"
    assert tombstone["customer"] == {
        "email": f"{submission_id}@erased.invalid",
        "name": None,
        "phone": None,
    }
    assert tombstone["consent"] is None and tombstone["clips"] == [] and tombstone["link"] is None
    assert not [p for p in (tmp_path / "media").rglob("*") if p.is_file()]
    assert (await event_types(ravepilot, tenant)).count("submission.withdrawn") == 1
    stored = await ravepilot.storage.list_events(tenant.workspace_id)
    assert not [e.type for e in stored if b"marjorie" in e.payload.lower()]  # name and email
    assert_error(await client.get(f"/r/{token}/api/session"), 404)


async def test_review_needs_the_review_scope_and_a_finished_submission(
    client: Client, tenant: Tenant, ravepilot: RavePilot
) -> None:
    token = await invite(client, tenant)
    await consent(client, token)
    await upload(client, token, fake_webm(10_000))
    session = expect(await client.get(f"/r/{token}/api/session"))
    clip_id = session["clips"][0]["id"]
    body = assert_error(
        await client.post(f"/v1/clips/{clip_id}/approve", headers=tenant.headers), 409
    )
    assert "not finished" in body["error"]
    _, reader = await ravepilot.api_keys.create(tenant.workspace_id, scopes=["submissions"])
    reader_headers = {"Authorization": f"Bearer {reader}"}
    denied = await client.post(f"/v1/clips/{clip_id}/approve", headers=reader_headers)
    assert "review" in assert_error(denied, 403)["error"]
    erase = await client.delete(
        f"/v1/submissions/{session['submission_id']}", headers=reader_headers
    )
    assert_error(erase, 403)
    assert_error(await client.post("/v1/clips/clip_nope/approve", headers=tenant.headers), 404)


async def test_unknown_tokens_and_forged_playback_links_are_404(client: Client) -> None:
    assert_error(await client.get("/r/not-a-token/api/session"), 404)
    assert_error(await client.post("/r/not-a-token/uploads/", headers=TUS), 404)
    forged = await client.get("/media/ws_1/sub_1/upl_1?expires=9999999999&signature=00")
    assert_error(forged, 404)
    superscript = await client.get("/media/ws_1/sub_1/upl_1?expires=%C2%B2&signature=00")
    assert_error(superscript, 404)  # a digit to str.isdigit, not to int()


async def test_the_portal_is_rate_limited_per_link(tmp_path: Path) -> None:
    async with serve_tenant(tmp_path, "acme") as (client, tenant):
        token = await invite(client, tenant)
    settings = Settings(data_dir=tmp_path, portal_rate_limit=3)
    from tests.server.conftest import open_ravepilot

    async with (
        open_ravepilot(tmp_path) as ravepilot,
        serve(create_app(settings, ravepilot=ravepilot)) as limited,
    ):
        for _ in range(3):
            expect(await limited.get(f"/r/{token}/api/session"))
        refused = await limited.get(f"/r/{token}/api/session")
        assert_error(refused, 429)
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
