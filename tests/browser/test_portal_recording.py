"""A customer records on the portal in a real Chromium: the whole flow, a dropped connection in
the middle of an upload, a reload with a take not yet sent, and the file-upload fallback."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import (
    CHROMIUM,
    Console,
    Hooks,
    Media,
    Server,
    chromium_args,
    open_page,
)
from tests.browser.steps import (
    UPLOAD_TIMEOUT_MS,
    accept,
    give_consent,
    open_portal,
    pending_takes,
    record,
    screenshot,
    upload_item,
    wait_for_camera,
    wait_for_step,
)

pytestmark = pytest.mark.slow

CHUNK = 16 * 1024  # a clip of a few seconds spans several PATCH requests
OUTAGE_SECONDS = 2.5


def wait_for_events(hooks: Hooks, submission_id: str, expected: Counter[str]) -> Counter[str]:
    deadline = time.monotonic() + 30
    while True:
        seen = Counter(hooks.for_submission(submission_id))
        if all(seen[name] >= count for name, count in expected.items()):
            return seen
        assert time.monotonic() < deadline, f"webhooks so far: {seen}"
        time.sleep(0.1)


def wait_for_clips(server: Server, submission_id: str) -> list[dict[str, Any]]:
    """The submission's clips once none is still uploading or being processed."""
    deadline = time.monotonic() + 90
    while True:
        clips: list[dict[str, Any]] = server.submission(submission_id)["clips"]
        if all(clip["status"] in ("ready", "failed") for clip in clips):
            return clips
        assert time.monotonic() < deadline, clips
        time.sleep(0.2)


class UploadWatch:
    """Playwright routing on the tus endpoint: counts requests and cuts the network on cue.

    ``cut_at``: the PATCH with this number reaches the server, which stores it, but its answer
    is lost (a connection reset); for ``OUTAGE_SECONDS`` after that every PATCH fails as if the
    network were down. The client has to ask the server (HEAD) where to go on. ``block_after``:
    after that many PATCH requests every request fails (the network is gone for good).
    """

    def __init__(self, cut_at: int | None = None, block_after: int | None = None) -> None:
        self.cut_at = cut_at
        self.block_after = block_after
        self.requests: list[tuple[str, str | None]] = []  # (method, Upload-Offset)
        self.statuses: list[tuple[str, int]] = []
        self.aborted = 0
        self.outage_until = 0.0
        self.offset_lost: int | None = None  # the PATCH offset whose answer was lost

    def patches(self) -> list[int]:
        return [int(offset or 0) for method, offset in self.requests if method == "PATCH"]

    def handle(self, route: Any, request: Any) -> None:
        offset = request.headers.get("upload-offset")
        self.requests.append((request.method, offset))
        if self.block_after is not None and len(self.patches()) > self.block_after:
            self.aborted += 1
            route.abort("internetdisconnected")
            return
        if request.method == "PATCH":
            number = len(self.patches())
            if number == self.cut_at:
                response = route.fetch()  # the server takes the chunk...
                assert response.status == 204, response.text()
                self.offset_lost = int(offset or 0)
                self.aborted += 1
                self.outage_until = time.monotonic() + OUTAGE_SECONDS
                route.abort("connectionreset")  # ...and the answer never arrives
                return
            if time.monotonic() < self.outage_until:
                self.aborted += 1
                route.abort("internetdisconnected")
                return
        route.continue_()

    def on_response(self, response: Any) -> None:
        if "/uploads/" in response.url:
            self.statuses.append((response.request.method, response.status))


def test_record_two_prompts_end_to_end(
    server: Server, hooks: Hooks, page: Any, console: Console, artifacts: Path
) -> None:
    collectors = server.api.get("/v1/collectors").json()["data"]
    primary = next(c for c in collectors if c["primary"])
    script = [
        {"key": "love", "prompt": "What do you love about our coffee?", "max_seconds": 5},
        {"key": "morning", "prompt": "How does it fit into your morning?", "max_seconds": 5},
    ]
    changed = server.api.patch(
        f"/v1/collectors/{primary['id']}",
        json={
            "script": script,
            # A light brand colour: the page has to pick dark text for its buttons.
            "brand": {"name": "Acme Coffee", "primary_color": "#FFD60A"},
        },
    )
    assert changed.status_code == 200, changed.text
    invitation = server.invite()
    submission_id = invitation["submission"]["id"]
    watch = UploadWatch(cut_at=2)
    page.route("**/uploads/**", watch.handle)
    page.on("response", watch.on_response)

    open_portal(page, invitation["link"], chunk_size=CHUNK)
    wait_for_step(page, "welcome")
    assert page.get_by_role("heading", name="Hi Marjorie Ellison!").is_visible()
    screenshot(page, artifacts, "01-welcome")
    page.get_by_role("button", name="Get started").click()
    wait_for_step(page, "consent")
    # The exact consent text of the collector is what the customer agrees to.
    assert page.locator("#consent-text").inner_text().strip() == primary["consent_text"]
    # Continuing without ticking the box is refused, with a message tied to the checkbox.
    page.get_by_role("button", name="Agree and continue").click()
    assert page.locator("#consent-error").is_visible()
    assert page.locator("#consent-check").get_attribute("aria-invalid") == "true"
    screenshot(page, artifacts, "02-consent")
    page.get_by_label("I have read and agree to the text above.").check()
    page.get_by_role("button", name="Agree and continue").click()

    # Prompt 1: focus lands on the step's heading; the camera starts; the limit stops the take.
    wait_for_step(page, "record")
    assert page.evaluate("document.activeElement.id") == "record-heading"
    assert page.get_by_role("heading", name="Question 1 of 2").is_visible()
    wait_for_camera(page)
    screenshot(page, artifacts, "03-camera-ready")
    page.get_by_role("button", name="Start recording").click()
    page.locator("#recording-badge").wait_for(state="visible", timeout=15_000)
    screenshot(page, artifacts, "04-recording")
    assert "left" in page.locator("#time-left").inner_text()
    page.get_by_role("button", name="Use this video").wait_for(state="visible", timeout=15_000)
    assert "Time's up" in page.locator("#status").inner_text()
    screenshot(page, artifacts, "05-review-take")
    accept(page)

    # Prompt 2, while the first take uploads: stop by hand, retake, and keep the second take.
    page.get_by_role("heading", name="Question 2 of 2").wait_for()
    record(page, stop_after_ms=1500)
    page.get_by_role("button", name="Record again").click()
    record(page, stop_after_ms=2500)
    screenshot(page, artifacts, "06-second-prompt")
    accept(page)

    wait_for_step(page, "upload")
    screenshot(page, artifacts, "07-upload")
    wait_for_step(page, "thanks", timeout=UPLOAD_TIMEOUT_MS)
    screenshot(page, artifacts, "08-thank-you")

    # The connection really dropped mid-upload, and the client resumed from the server's count.
    assert watch.aborted >= 1, watch.requests
    assert watch.offset_lost is not None
    after_cut = watch.requests[watch.requests.index(("PATCH", str(watch.offset_lost))) :]
    assert ("HEAD", None) in after_cut, watch.requests  # it asked the server where to go on
    assert watch.offset_lost + CHUNK in watch.patches(), watch.requests  # not re-sent from before
    assert ("PATCH", 409) not in watch.statuses, watch.statuses
    assert len(watch.patches()) > 4, watch.requests

    sizes = {
        key: int(upload_item(page, key).get_attribute("data-bytes") or 0)
        for key in ("love", "morning")
    }
    submission = server.submission(submission_id)
    assert submission["status"] == "submitted", submission
    assert submission["consent"]["text"] == primary["consent_text"]
    clips = {clip["script_key"]: clip for clip in submission["clips"]}
    assert set(clips) == {"love", "morning"}, submission["clips"]
    for key, size in sizes.items():
        assert size > CHUNK
        # Every byte arrived exactly once: nothing lost in the cut, nothing sent twice.
        assert clips[key]["size_bytes"] == size, (key, clips[key], size)
    assert pending_takes(page) == []  # nothing left waiting in IndexedDB
    # The server can read what Chromium recorded: both clips are normalised to MP4.
    for clip in wait_for_clips(server, submission_id):
        assert (clip["status"], clip["mime_type"]) == ("ready", "video/mp4"), clip

    seen = wait_for_events(
        hooks,
        submission_id,
        Counter({"submission.started": 1, "clip.uploaded": 2, "submission.submitted": 1}),
    )
    assert seen["clip.uploaded"] == 2 and seen["submission.submitted"] == 1, seen
    assert not [line for line in console.lines if line.startswith("pageerror")], console


def test_a_take_survives_a_reload_and_resumes(server: Server, page: Any, console: Console) -> None:
    collector_id = server.collector(
        script=[{"key": "story", "prompt": "Tell us your story.", "max_seconds": 5}]
    )
    invitation = server.invite(collector_id, name="Ana")
    # The creation and the first chunk go through; then the network is gone.
    watch = UploadWatch(block_after=1)
    page.route("**/uploads/**", watch.handle)

    open_portal(page, invitation["link"], chunk_size=CHUNK)
    give_consent(page)
    record(page)
    accept(page)
    wait_for_step(page, "upload")
    page.locator("#upload-list li[data-state='retrying']").wait_for(timeout=30_000)
    assert page.locator("#offline-notice").is_visible()
    (take,) = pending_takes(page)
    assert take["scriptKey"] == "story" and take["uploadUrl"], take
    assert take["blobSize"] > CHUNK

    # A reload with the network back: the take comes back from IndexedDB and the upload resumes.
    page.unroute("**/uploads/**")
    resumed = UploadWatch()
    page.route("**/uploads/**", resumed.handle)
    page.reload()
    page.locator("main[data-ready='true']").wait_for()
    assert "had not been sent yet" in page.locator("#status").inner_text()
    wait_for_step(page, "thanks", timeout=UPLOAD_TIMEOUT_MS)

    assert [method for method, _ in resumed.requests][:1] == ["HEAD"], resumed.requests
    assert "POST" not in [method for method, _ in resumed.requests]  # the same upload, resumed
    assert resumed.patches()[0] == CHUNK, resumed.requests
    submission = server.submission(invitation["submission"]["id"])
    assert submission["status"] == "submitted"
    (clip,) = submission["clips"]
    assert clip["script_key"] == "story" and clip["size_bytes"] == take["blobSize"]
    assert pending_takes(page) == []
    assert not [line for line in console.lines if line.startswith("pageerror")], console


def test_upload_a_file_instead_without_a_camera(
    server: Server, playwright_instance: Any, media: Media, artifacts: Path
) -> None:
    collector_id = server.collector(
        script=[{"key": "why", "prompt": "Why did you choose us?", "max_seconds": 30}]
    )
    invitation = server.invite(collector_id, name="Bo")
    # No fake devices and every permission prompt denied: getUserMedia fails.
    browser = playwright_instance.chromium.launch(
        executable_path=CHROMIUM, args=chromium_args(None)
    )
    console = Console()
    try:
        context, page = open_page(browser, console)
        open_portal(page, invitation["link"])
        give_consent(page)
        problem = page.locator("#camera-problem")
        problem.wait_for(state="visible")
        assert "upload a video file instead" in problem.inner_text()
        file_input = page.get_by_label("Choose a video file")
        assert file_input.is_visible()
        assert (
            page.get_by_role("button", name="Upload a file instead").get_attribute("aria-expanded")
            == "true"
        )
        screenshot(page, artifacts, "09-no-camera-fallback")
        file_input.set_input_files(str(media.mp4))
        accept(page)
        wait_for_step(page, "thanks", timeout=UPLOAD_TIMEOUT_MS)
        context.close()
    finally:
        browser.close()
    submission = server.submission(invitation["submission"]["id"])
    assert submission["status"] == "submitted"
    (clip,) = submission["clips"]
    assert clip["script_key"] == "why"
    assert clip["size_bytes"] == media.mp4.stat().st_size
    (clip,) = wait_for_clips(server, invitation["submission"]["id"])
    assert (clip["status"], clip["mime_type"]) == ("ready", "video/mp4"), clip
    assert not [line for line in console.lines if line.startswith("pageerror")], console
