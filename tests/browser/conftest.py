"""The customer portal in a real Chromium against a real ``ravepilot serve`` process.

One server (on a temporary data dir, with a webhook receiver on loopback) serves every browser
test of the session; each test makes its own collector and invitation, and its own browser
context, so tests share nothing but the process. Camera and microphone are Chromium's fake
devices fed with media made here by ffmpeg and flite; screenshots go to tests/.artifacts/browser.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from ravepilot_core import Settings
from tests.conftest import require
from tests.loopback import QuietHandler, http_server
from tests.media import speech as make_speech
from tests.processes import ROOT, free_port, ravepilot_env

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
INSTALL_HINT = "apt-get install chromium ffmpeg flite"
ARTIFACTS = ROOT / "tests" / ".artifacts" / "browser"
CLI = [sys.executable, "-m", "ravepilot_server.cli"]
SECRET_KEY = "browser-test-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
TESTSRC = ("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10")
SPEECH = "I love this coffee. It gets me through every morning."  # voice rms: clear speech


def require_browser_tools() -> None:
    """Skip (or, under RAVEPILOT_TEST_REQUIRE_ALL=1, fail) without Chromium, ffmpeg or flite."""
    for tool in ("chromium", "ffmpeg", "flite"):
        found = Path(CHROMIUM).exists() if tool == "chromium" else shutil.which(tool) is not None
        require(found, f"no {tool} for the portal's browser tests: {INSTALL_HINT}")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        require(False, "no playwright for the browser tests: pip install -e '.[test]'")


@dataclass
class Media:
    """Test media: the fake camera's video, the fake microphone's speech and an mp4 to upload."""

    video: Path
    audio: Path
    mp4: Path


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    require_browser_tools()
    directory = tmp_path_factory.mktemp("media")
    made = Media(
        video=directory / "camera.y4m", audio=directory / "speech.wav", mp4=directory / "answer.mp4"
    )
    ffmpeg = ["ffmpeg", "-loglevel", "error", "-y"]
    # Small and short: Chromium loops the file, and a big .y4m is slow to read.
    subprocess.run(
        [*ffmpeg, *TESTSRC, "-t", "2", "-pix_fmt", "yuv420p", str(made.video)],
        check=True,
        timeout=60,
    )
    speech = make_speech(directory / "speech-16k.wav", SPEECH)
    subprocess.run(
        [*ffmpeg, "-i", str(speech), "-ar", "48000", "-ac", "1", str(made.audio)],
        check=True,
        timeout=60,
    )
    subprocess.run(
        [
            *ffmpeg,
            *TESTSRC,
            "-i",
            str(speech),
            *("-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"),
            *("-movflags", "+faststart", str(made.mp4)),
        ],
        check=True,
        timeout=60,
    )
    return made


@dataclass
class Hooks:
    """Webhook requests the receiver got: (event type, parsed body), in arrival order."""

    url: str = ""
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def for_submission(self, submission_id: str) -> list[str]:
        """The event types whose data is, or belongs to, ``submission_id``."""
        with self.lock:
            return [
                event_type
                for event_type, body in self.received
                if submission_id in (body["data"].get("id"), body["data"].get("submission_id"))
            ]


@pytest.fixture(scope="session")
def hooks() -> Iterator[Hooks]:
    """A webhook receiver on loopback that keeps each event's type and body."""
    state = Hooks()

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with state.lock:
                state.received.append(
                    (self.headers.get("X-RavePilot-Event", ""), json.loads(body or b"{}"))
                )
            self.send_response(204)
            self.end_headers()

    with http_server(Handler) as base_url:
        state.url = f"{base_url}/hook"
        yield state


@dataclass
class Server:
    """The running server, an API client with an all-scope key, and helpers for the tests."""

    base_url: str
    api: httpx.Client
    log: Path

    def collector(self, **fields: Any) -> str:
        """Create a collector (name, brand, script, locale...) and return its id."""
        response = self.api.post("/v1/collectors", json={"name": "Portal test", **fields})
        assert response.status_code == 201, response.text
        collector_id: str = response.json()["id"]
        return collector_id

    def invite(self, collector_id: str | None = None, name: str = "Marjorie Ellison") -> Any:
        """Create an invitation (no email) and return the API's answer."""
        number = time.monotonic_ns()
        body: dict[str, Any] = {
            "customer_email": f"customer{number}@example.com",
            "customer_name": name,
            "send_email": False,
        }
        if collector_id:
            body["collector_id"] = collector_id
        response = self.api.post("/v1/invitations", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def submission(self, submission_id: str) -> Any:
        response = self.api.get(f"/v1/submissions/{submission_id}")
        assert response.status_code == 200, response.text
        return response.json()


def _cli(args: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(
        CLI + args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, hooks: Hooks) -> Iterator[Server]:
    """``ravepilot serve`` on a fresh data dir; a workspace and key made with the CLI."""
    require_browser_tools()
    directory = tmp_path_factory.mktemp("server")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    settings = Settings(
        data_dir=directory / "data", secret_key=SECRET_KEY, allow_private_webhooks=True
    )
    env = ravepilot_env(settings)
    env["RAVEPILOT_PUBLIC_URL"] = base_url
    # The workspace exists before the first start, so serve creates nothing and prints no key.
    _cli(["workspaces", "create", "default", "--name", "Acme Coffee"], env)
    key = _cli(["keys", "create", "--workspace", "default", "--name", "browser tests"], env)
    log = directory / "serve.log"
    with log.open("ab") as output:
        process = subprocess.Popen(
            [*CLI, "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    api = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "serve exited:\n" + log.read_text()
            try:
                if api.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not start:\n" + log.read_text()
            time.sleep(0.1)
        created = api.post("/v1/webhooks", json={"url": hooks.url, "events": ["*"]})
        assert created.status_code == 201, created.text
        yield Server(base_url=base_url, api=api, log=log)
    finally:
        api.close()
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def chromium_args(media: Media | None) -> list[str]:
    """Fake camera and microphone fed from ``media``, or none at all (``None``)."""
    if media is None:
        return ["--deny-permission-prompts"]
    return [
        "--use-fake-ui-for-media-stream",  # grant camera and microphone without a prompt
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={media.video}",
        f"--use-file-for-fake-audio-capture={media.audio}",
        "--autoplay-policy=no-user-gesture-required",
    ]


# Playwright's sync API keeps an event loop running in this thread while it is open, and the
# anyio tests of other packages cannot start theirs meanwhile: so it lives one module at a time.
@pytest.fixture(scope="module")
def playwright_instance() -> Iterator[Any]:
    require_browser_tools()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as instance:
        yield instance


@pytest.fixture(scope="module")
def browser(playwright_instance: Any, media: Media) -> Iterator[Any]:
    """Chromium with fake camera and microphone."""
    browser = playwright_instance.chromium.launch(
        executable_path=CHROMIUM, args=chromium_args(media)
    )
    yield browser
    browser.close()


@dataclass
class Console:
    """What a page said on its console and the errors it threw, to show when a test fails."""

    lines: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(self.lines[-50:])


def open_page(browser: Any, console: Console) -> tuple[Any, Any]:
    """A fresh context (own IndexedDB) at phone size; returns (context, page)."""
    context = browser.new_context(viewport={"width": 360, "height": 780})
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.on("console", lambda message: console.lines.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: console.lines.append(f"pageerror: {error}"))
    return context, page


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
def page(browser: Any, console: Console) -> Iterator[Any]:
    context, page = open_page(browser, console)
    yield page
    context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
