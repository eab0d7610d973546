"""The media pipeline end to end over HTTP: upload, normalise, transcribe, approve, render."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from ravepilot_core import Settings
from ravepilot_core.backends import open_backend
from ravepilot_core.ffmpeg import probe
from ravepilot_core.models import Review
from ravepilot_server import create_app
from tests.media import recording, speech
from tests.server.conftest import Tenant, make_tenant, open_ravepilot, serve_tenant
from tests.server.helpers import Client, assert_error, expect, serve
from tests.server.test_portal_flow import consent, invite, processed, upload, use_two_prompts

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SAID = "I love this coffee. It gets me through every morning."
KEYWORDS = {"coffee", "morning"}
SIZES = {"9:16": (1080, 1920), "1:1": (1080, 1080), "16:9": (1920, 1080)}


async def wait_for(client: Client, tenant: Tenant, path: str, done: Any) -> dict[str, Any]:
    with anyio.fail_after(180):
        while True:
            body = expect(await client.get(path, headers=tenant.headers))
            if done(body):
                return body
            await anyio.sleep(0.2)


async def request_render(
    client: Client, tenant: Tenant, submission_id: str, render_format: str
) -> dict[str, Any]:
    """Ask for a render of the submission's approved clips; it is queued (202)."""
    response = await client.post(
        f"/v1/submissions/{submission_id}/renders",
        json={"format": render_format},
        headers=tenant.headers,
    )
    return expect(response, 202)


async def test_upload_to_rendered_ads_in_every_format(tmp_path: Path) -> None:
    spoken = speech(tmp_path / "said.wav", SAID)
    clip = recording(tmp_path / "take.webm", seconds=4.0, size="640x360", audio=spoken)
    transcriber = await open_backend("transcriber", "sphinx://")
    renderer = await open_backend("renderer", "ffmpeg://")
    async with serve_tenant(tmp_path, "acme", transcriber=transcriber, renderer=renderer) as (
        client,
        tenant,
    ):
        await use_two_prompts(client, tenant)
        token = await invite(client, tenant)
        await consent(client, token)
        await upload(client, token, clip.read_bytes(), "intro")
        session = expect(await client.post(f"/r/{token}/api/finish"))
        submission_id = session["submission_id"]

        submission = await processed(client, tenant, submission_id)
        (ready,) = submission["clips"]
        assert ready["status"] == "ready" and 3900 <= ready["duration_ms"] <= 4100, ready
        ready = await wait_for(
            client,
            tenant,
            f"/v1/submissions/{submission_id}",
            lambda s: s["clips"][0]["transcript"] is not None,
        )
        transcript = ready["clips"][0]["transcript"]
        assert KEYWORDS <= set(transcript["text"].lower().split()), transcript["text"]
        vtt = await client.get(
            f"/v1/clips/{ready['clips'][0]['id']}/captions.vtt", headers=tenant.headers
        )
        assert vtt.text.startswith("WEBVTT") and "coffee" in vtt.text.lower()

        clip_id = ready["clips"][0]["id"]
        expect(await client.post(f"/v1/clips/{clip_id}/approve", headers=tenant.headers))
        renders = [await request_render(client, tenant, submission_id, fmt) for fmt in SIZES]
        assert {r["status"] for r in renders} == {"queued"}
        for render in renders:
            done = await wait_for(
                client,
                tenant,
                f"/v1/renders/{render['id']}",
                lambda r: r["status"] in ("succeeded", "failed"),
            )
            assert done["status"] == "succeeded", done["error"]
            assert done["clip_ids"] == [clip_id]
            url = done["playback"]["url"].removeprefix("https://reviews.example.test")
            video = tmp_path / f"{render['id']}.mp4"
            video.write_bytes((await client.get(url)).content)
            found = await probe(video)
            assert (found.width, found.height) == SIZES[done["format"]]
            assert (found.video_codec, found.audio_codec) == ("h264", "aac")
            assert found.duration_ms is not None and abs(found.duration_ms - 4000) <= 200
        submission = expect(
            await client.get(f"/v1/submissions/{submission_id}", headers=tenant.headers)
        )
        assert submission["status"] == "rendered" and len(submission["renders"]) == 3
        # A render used the clip: its decision is settled now.
        assert_error(await client.post(f"/v1/clips/{clip_id}/reject", headers=tenant.headers), 409)


async def test_silent_and_too_short_clips_fail_with_a_reason(tmp_path: Path) -> None:
    silent = recording(tmp_path / "silent.webm", seconds=2.0, tone=False)
    short = recording(tmp_path / "short.webm", seconds=0.6)
    async with serve_tenant(tmp_path, "acme") as (client, tenant):
        await use_two_prompts(client, tenant)
        token = await invite(client, tenant)
        await consent(client, token)
        await upload(client, token, silent.read_bytes(), "intro")
        await upload(client, token, short.read_bytes(), "story")
        submission_id = expect(await client.get(f"/r/{token}/api/session"))["submission_id"]
        clips = {
            c["script_key"]: c for c in (await processed(client, tenant, submission_id))["clips"]
        }
        assert clips["intro"]["status"] == "failed" and "silent" in clips["intro"]["error"]
        assert clips["story"]["status"] == "failed" and "at least 1 s" in clips["story"]["error"]
        expect(await client.post(f"/r/{token}/api/finish"))
        approve = await client.post(
            f"/v1/clips/{clips['intro']['id']}/approve", headers=tenant.headers
        )
        expect(approve)
        refused = await client.post(
            f"/v1/submissions/{submission_id}/renders",
            json={"format": "1:1"},
            headers=tenant.headers,
        )
        assert "only ready clips" in assert_error(refused, 409)["error"]


class CrashingRenderer:
    """A renderer that dies the way a broken plugin would."""

    async def render(self, request: Any, output: Path) -> int:
        output.write_bytes(b"half a file")
        raise RuntimeError("the GPU fell off the bus")

    async def close(self) -> None:
        pass


async def test_a_crashing_renderer_fails_the_render_with_its_reason(tmp_path: Path) -> None:
    clip = recording(tmp_path / "take.webm", seconds=2.0)
    async with serve_tenant(tmp_path, "acme", renderer=CrashingRenderer()) as (client, tenant):
        token = await invite(client, tenant)
        await consent(client, token)
        await upload(client, token, clip.read_bytes(), "intro")
        submission_id = expect(await client.post(f"/r/{token}/api/finish"))["submission_id"]
        clip_id = (await processed(client, tenant, submission_id))["clips"][0]["id"]
        expect(await client.post(f"/v1/clips/{clip_id}/approve", headers=tenant.headers))
        render = await request_render(client, tenant, submission_id, "9:16")
        failed = await wait_for(
            client, tenant, f"/v1/renders/{render['id']}", lambda r: r["status"] == "failed"
        )
        assert failed["error"] == "the GPU fell off the bus" and failed["playback"] is None
        assert not list((tmp_path / "media").rglob("renders/*"))  # no half-written file shown


class RecordingRenderer:
    """A renderer that notes what it is handed and writes a stand-in cut."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any, int]] = []

    async def render(self, request: Any, output: Path) -> int:
        for clip in request.clips:  # looked at now: the job's scratch directory goes away
            path = Path(clip.path)
            self.seen.append((path.suffix, await probe(path), clip.duration_ms))
        output.write_bytes(b"a cut")
        return sum(c.duration_ms for c in request.clips)

    async def close(self) -> None:
        """Nothing to release."""


async def test_renders_are_cut_from_the_original_not_the_720p_playback_copy(
    tmp_path: Path,
) -> None:
    clip = recording(tmp_path / "take.webm", seconds=2.0, size="1080x1920")
    renderer = RecordingRenderer()
    async with serve_tenant(tmp_path, "acme", renderer=renderer) as (client, tenant):
        token = await invite(client, tenant)
        await consent(client, token)
        await upload(client, token, clip.read_bytes(), "intro")
        submission_id = expect(await client.post(f"/r/{token}/api/finish"))["submission_id"]
        ready = (await processed(client, tenant, submission_id))["clips"][0]
        copy = tmp_path / "copy.mp4"
        url = ready["playback"]["url"].removeprefix("https://reviews.example.test")
        copy.write_bytes((await client.get(url)).content)
        played = await probe(copy)
        assert (played.width, played.height) == (720, 1280)  # the playback copy is capped
        expect(await client.post(f"/v1/clips/{ready['id']}/approve", headers=tenant.headers))
        render = await request_render(client, tenant, submission_id, "9:16")
        done = await wait_for(
            client, tenant, f"/v1/renders/{render['id']}", lambda r: r["status"] == "succeeded"
        )
        assert done["duration_ms"] == ready["duration_ms"]
    ((suffix, found, duration_ms),) = renderer.seen
    assert suffix == ".mkv"  # the browser's webm, its streams copied as they were
    assert (found.video_codec, found.audio_codec) == ("vp8", "opus")
    assert (found.width, found.height) == (1080, 1920)  # full size
    assert duration_ms == ready["duration_ms"]


async def test_auto_render_queues_the_collectors_formats(tmp_path: Path) -> None:
    clip = recording(tmp_path / "take.webm", seconds=2.0)
    async with serve_tenant(tmp_path, "acme") as (client, tenant):
        collectors = expect(await client.get("/v1/collectors", headers=tenant.headers))["data"]
        expect(
            await client.patch(
                f"/v1/collectors/{collectors[0]['id']}",
                json={"auto_render": True, "render_formats": ["9:16", "1:1"]},
                headers=tenant.headers,
            )
        )
        token = await invite(client, tenant)
        await consent(client, token)
        await upload(client, token, clip.read_bytes(), "intro")
        submission_id = expect(await client.post(f"/r/{token}/api/finish"))["submission_id"]
        clip_id = (await processed(client, tenant, submission_id))["clips"][0]["id"]
        expect(await client.post(f"/v1/clips/{clip_id}/approve", headers=tenant.headers))
        submission = expect(
            await client.get(f"/v1/submissions/{submission_id}", headers=tenant.headers)
        )
        assert sorted(r["format"] for r in submission["renders"]) == ["1:1", "9:16"]


async def test_a_clip_rejected_after_the_render_was_queued_fails_the_render(
    tmp_path: Path,
) -> None:
    clip = recording(tmp_path / "take.webm", seconds=2.0)
    async with open_ravepilot(tmp_path, renderer=CrashingRenderer()) as ravepilot:
        tenant = await make_tenant(ravepilot, "acme")
        app = create_app(Settings(data_dir=tmp_path), ravepilot=ravepilot, run_worker=False)
        async with serve(app) as client:
            token = await invite(client, tenant)
            await consent(client, token)
            await upload(client, token, clip.read_bytes(), "intro")
            submission_id = expect(await client.post(f"/r/{token}/api/finish"))["submission_id"]
            await ravepilot.worker().run_due()  # ingest, by hand: the test orders the steps
            clip_id = (await processed(client, tenant, submission_id))["clips"][0]["id"]
            expect(await client.post(f"/v1/clips/{clip_id}/approve", headers=tenant.headers))
            render = await request_render(client, tenant, submission_id, "1:1")
            # A rejection that raced the render request: both passed their checks.
            stored = await ravepilot.storage.get_clip(tenant.workspace_id, clip_id)
            assert stored is not None
            rejected = msgspec.structs.replace(stored, review=Review(status="rejected"))
            await ravepilot.storage.review_clip(rejected)
            await ravepilot.worker().run_due()
            failed = expect(await client.get(f"/v1/renders/{render['id']}", headers=tenant.headers))
            assert failed["status"] == "failed"
            assert failed["error"] == f"clip {clip_id} is rejected, no longer approved"
