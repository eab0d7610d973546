"""tus 1.0.0 conformance: the official Python client, tuspy, against a real ``ravepilot serve``.

One server process (fresh data dir, loopback, free port; workspace and key made with the CLI)
serves every test of this module; each test makes its own invitation and gives consent over
HTTP. tuspy is synchronous (``requests``), so its calls run in a worker thread while the event
loop serves the cutting proxy of the resume test. The server runs with ``--no-worker``: nothing
here needs background jobs (the test files are not real videos, which ingest would reject), and
the stored originals are compared byte for byte with the files sent.
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlsplit

import anyio
import httpx
import pytest
from anyio.abc import Process, SocketAttribute, SocketStream

from ravepilot_core import Settings
from tests.conftest import require
from tests.processes import ROOT, free_port, ravepilot_env, running, stopped

try:
    from tusclient import client as tus_client
    from tusclient.exceptions import TusCommunicationError, TusUploadFailed
except ImportError:  # the skip (or failure under RAVEPILOT_TEST_REQUIRE_ALL) happens per test
    tus_client = None

pytestmark = pytest.mark.anyio

CLI = [sys.executable, "-m", "ravepilot_server.cli"]
SECRET_KEY = "tus-conformance-test-secret-key-0123456789abcdefghijklmnop"
TUS = {"Tus-Resumable": "1.0.0"}
WEBM_MAGIC = b"\x1a\x45\xdf\xa3"
CHUNK = 256 * 1024
# Six full chunks and a short seventh: the last PATCH is not a multiple of the chunk size.
CLIP_SIZE = 6 * CHUNK + 4321
CUT_AFTER = 100_000  # body bytes of the first PATCH that get through before the drop
TIMEOUT = 30  # seconds; every wait below is bounded by it
T = TypeVar("T")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    # Module scope, so the one server process below can be a module-scoped async fixture.
    return "asyncio"


@dataclass
class Server:
    """The running ``ravepilot serve`` and how to reach it."""

    base_url: str
    key: str
    data_dir: Path
    process: Process
    log: Path

    @property
    def api_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def uploads_url(self, token: str) -> str:
        return f"{self.base_url}/r/{token}/uploads/"


@dataclass
class Portal:
    """One customer's invitation, with consent given."""

    token: str
    submission_id: str


async def _cli(args: list[str], env: dict[str, str]) -> str:
    with anyio.fail_after(120):
        result = await anyio.run_process(CLI + args, cwd=ROOT, env=env, check=False)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode().strip()


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    require(tus_client is not None, "no tuspy, the official tus client: pip install tuspy")
    directory = tmp_path_factory.mktemp("tus")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    settings = Settings(data_dir=directory / "data", secret_key=SECRET_KEY)
    env = ravepilot_env(settings)
    # The workspace exists before the first start, so serve creates nothing and prints no key.
    await _cli(["workspaces", "create", "default"], env)
    key = await _cli(["keys", "create", "--workspace", "default", "--name", "tus tests"], env)
    log = directory / "serve.log"
    command = [*CLI, "serve", "--port", str(port), "--no-worker"]
    async with running(command, env=env, stdout=subprocess.DEVNULL, log=log) as process:
        async with httpx.AsyncClient(base_url=base_url, timeout=5) as probe:

            async def healthy() -> bool:
                try:
                    return (await probe.get("/health")).status_code == 200
                except httpx.TransportError:
                    return False

            with anyio.fail_after(60):
                while not await healthy():
                    assert process.returncode is None, "serve exited:\n" + log.read_text()
                    await anyio.sleep(0.1)
        yield Server(base_url, key, settings.data_dir, process, log)
        # A clean stop on SIGTERM, not the helper's kill. uvicorn shuts down gracefully, then
        # re-raises the signal, so the exit status is -SIGTERM: the log tells a clean stop.
        assert await stopped(process, signal.SIGTERM, log) in (0, -signal.SIGTERM)
        assert "Application shutdown complete." in log.read_text(), log.read_text()


@pytest.fixture
async def http(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=TIMEOUT) as client:
        yield client


@pytest.fixture
async def portal(server: Server, http: httpx.AsyncClient) -> Portal:
    """A new invitation (no email) with consent given: the portal now takes uploads."""
    response = await http.post(
        "/v1/invitations",
        json={"customer_email": f"tus{os.urandom(6).hex()}@example.com", "send_email": False},
        headers=server.api_headers,
    )
    assert response.status_code == 201, response.text
    invitation = response.json()
    token = invitation["invite_token"]
    consent = await http.post(f"/r/{token}/api/consent", json={"accepted": True})
    assert consent.status_code == 200, consent.text
    assert consent.json()["status"] == "recording"
    return Portal(token=token, submission_id=invitation["submission"]["id"])


@pytest.fixture
def clip(tmp_path: Path) -> Iterator[BinaryIO]:
    """An open file the server takes for webm: it sniffs only the container's magic bytes.

    tuspy gets the file open: given a path, it opens the file again for every request and
    never closes it (ResourceWarnings, errors in this test suite).
    """
    path = tmp_path / "intro.webm"
    path.write_bytes(WEBM_MAGIC + os.urandom(CLIP_SIZE - len(WEBM_MAGIC)))
    with path.open("rb") as stream:
        yield stream


def tuspy_uploader(
    endpoint: str, clip: BinaryIO, *, url: str | None = None, chunk_size: int = CHUNK
) -> Any:
    """A tuspy uploader for ``clip``; with ``url`` it resumes that upload (tuspy HEADs it)."""
    assert tus_client is not None
    metadata = {"script_key": "intro", "filetype": "video/webm", "filename": Path(clip.name).name}
    return tus_client.TusClient(endpoint).uploader(
        file_stream=clip, url=url, chunk_size=chunk_size, metadata=metadata
    )


async def in_thread(call: Callable[[], T]) -> T:
    """Run a blocking tuspy call off the event loop, failing after TIMEOUT.

    ``requests`` (under tuspy) has no timeout of its own: on a hang the thread is abandoned so
    that the test fails instead of waiting forever.
    """
    with anyio.fail_after(TIMEOUT):
        return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)


def sha256(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tcp_queues(local_port: int, remote_port: int) -> tuple[int, int]:
    """Bytes (sent but unacknowledged, received but unread) of a loopback IPv4 TCP socket.

    From ``/proc/net/tcp``, where the kernel lists every socket of the machine, the server's
    included: this is how the test sees what the server process has read.
    """
    wanted = (f"0100007F:{local_port:04X}", f"0100007F:{remote_port:04X}")
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if (fields[1], fields[2]) == wanted:
            unacknowledged, unread = fields[4].split(":")
            return int(unacknowledged, 16), int(unread, 16)
    raise AssertionError(f"no TCP socket 127.0.0.1:{local_port} -> 127.0.0.1:{remote_port}")


def unfinished_bytes(data_dir: Path, upload_id: str) -> int:
    """What the file media store holds of an unfinished upload (under ``<media>/.uploads``)."""
    return sum(p.stat().st_size for p in (data_dir / "media" / ".uploads").rglob(upload_id))


def upload_id(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[1]


async def head_offset(http: httpx.AsyncClient, url: str) -> int:
    response = await http.head(url, headers=TUS)
    assert response.status_code == 200, response.headers
    return int(response.headers["Upload-Offset"])


async def assert_clip_stored(
    server: Server, http: httpx.AsyncClient, portal: Portal, clip: BinaryIO, url: str
) -> None:
    """The session and the API show the clip at the file's size; the store holds its bytes.

    The bytes are read from the file store's directory, not through playback: playback serves
    the normalised mp4 of the ingest job (which this server, without a worker, never runs).
    """
    session = await http.get(f"/r/{portal.token}/api/session")
    assert session.status_code == 200, session.text
    clips = session.json()["clips"]
    assert [(c["script_key"], c["size_bytes"]) for c in clips] == [("intro", CLIP_SIZE)]

    submission = await http.get(
        f"/v1/submissions/{portal.submission_id}", headers=server.api_headers
    )
    assert submission.status_code == 200, submission.text
    (stored,) = submission.json()["clips"]
    assert (stored["size_bytes"], stored["mime_type"]) == (CLIP_SIZE, "video/webm")
    assert stored["status"] in ("processing", "ready"), stored  # not failed, not uploading
    media = server.data_dir / "media"
    (path,) = [p for p in media.rglob(upload_id(url)) if ".uploads" not in p.parts]
    assert sha256(path) == sha256(clip.name)


# -- the protocol basics tuspy relies on ----------------------------------------------------------


async def test_options_advertises_version_extensions_and_max_size(
    server: Server, http: httpx.AsyncClient, portal: Portal
) -> None:
    response = await http.options(f"/r/{portal.token}/uploads/")
    assert response.status_code in (200, 204), response.text
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert "1.0.0" in response.headers["Tus-Version"].replace(" ", "").split(",")
    extensions = set(response.headers["Tus-Extension"].replace(" ", "").split(","))
    assert {"creation", "termination", "expiration"} <= extensions
    assert (
        int(response.headers["Tus-Max-Size"]) == Settings(data_dir=server.data_dir).max_clip_bytes
    )

    # A client speaking another version is told which one is served.
    refused = await http.post(f"/r/{portal.token}/uploads/", headers={"Tus-Resumable": "0.2.2"})
    assert refused.status_code == 412
    assert refused.headers["Tus-Version"] == "1.0.0"


async def test_creation_answers_location_and_upload_expires(
    server: Server, http: httpx.AsyncClient, portal: Portal, clip: BinaryIO
) -> None:
    uploader = tuspy_uploader(server.uploads_url(portal.token), clip)
    url = await in_thread(uploader.create_url)
    assert url.startswith(f"{server.base_url}/r/{portal.token}/uploads/upl_")

    # tuspy does not surface creation's headers: repeat the POST it sent, and HEAD the result.
    created = await http.post(
        f"/r/{portal.token}/uploads/", headers=uploader.get_url_creation_headers()
    )
    assert created.status_code == 201, created.text
    assert created.headers["Tus-Resumable"] == "1.0.0"
    expires = parsedate_to_datetime(created.headers["Upload-Expires"])  # an RFC 7231 date
    now = datetime.now(UTC)
    assert now + timedelta(hours=1) < expires <= now + timedelta(days=7)
    status = await http.head(url, headers=TUS)
    assert status.status_code == 200
    assert (status.headers["Upload-Offset"], status.headers["Upload-Length"]) == (
        "0",
        str(CLIP_SIZE),
    )
    assert status.headers["Cache-Control"] == "no-store"  # offsets must never come from a cache
    assert "Upload-Expires" in status.headers


# -- creation and upload in chunks ----------------------------------------------------------------


async def test_tuspy_uploads_a_clip_in_chunks(
    server: Server, http: httpx.AsyncClient, portal: Portal, clip: BinaryIO
) -> None:
    uploader = tuspy_uploader(server.uploads_url(portal.token), clip)
    offsets: list[int] = []

    def upload_chunk_by_chunk() -> None:
        while uploader.offset < CLIP_SIZE:
            uploader.upload_chunk()  # creates the upload first, then one PATCH per call
            offsets.append(uploader.offset)

    await in_thread(upload_chunk_by_chunk)
    # Each PATCH moved the server's offset by exactly one chunk; the last by the remainder.
    assert offsets == [*range(CHUNK, CLIP_SIZE, CHUNK), CLIP_SIZE]
    assert await head_offset(http, uploader.url) == CLIP_SIZE
    await assert_clip_stored(server, http, portal, clip, uploader.url)


# -- resume after a dropped connection ------------------------------------------------------------


@dataclass
class CuttingProxy:
    """A TCP relay on loopback that drops the first PATCH's connection part-way through its body.

    It forwards ``cut_after`` bytes of that body, waits until the server process has read them
    off its socket (so the drop cannot race the server reading them: a server may hold bytes it
    received in memory for a while before it writes them), then closes both sides. Every other
    connection is relayed untouched. tuspy opens a connection per request (module-level
    ``requests`` calls), so the first request line of each connection is the log of what the
    client did.
    """

    upstream_port: int
    cut_after: int
    requests: list[str] = field(default_factory=list)
    forwarded_before_cut: int = 0
    _cut: bool = False

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        """Relay on a free loopback port until the block ends; yield the proxy's base URL."""
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        async with listener, anyio.create_task_group() as group:
            group.start_soon(listener.serve, self._handle, group)
            yield f"http://127.0.0.1:{listener.extra(SocketAttribute.local_port)}"
            group.cancel_scope.cancel()  # the relays still open (none, normally) end here

    async def _handle(self, client: SocketStream) -> None:
        async with client, await anyio.connect_tcp("127.0.0.1", self.upstream_port) as upstream:
            head = b""
            while b"\r\n\r\n" not in head:
                try:
                    head += await client.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
            self.requests.append(head.split(b" ", 1)[0].decode())
            if self.requests[-1] == "PATCH" and not self._cut:
                self._cut = True
                await self._forward_then_drop(client, upstream, head)
                return
            await upstream.send(head)
            async with anyio.create_task_group() as pipes:
                pipes.start_soon(self._pipe, client, upstream)
                pipes.start_soon(self._pipe, upstream, client)

    async def _forward_then_drop(
        self, client: SocketStream, upstream: SocketStream, head: bytes
    ) -> None:
        headers, _, body = head.partition(b"\r\n\r\n")
        await upstream.send(headers + b"\r\n\r\n")
        while self.forwarded_before_cut < self.cut_after:
            if not body:
                body = await client.receive()
            piece = body[: self.cut_after - self.forwarded_before_cut]
            body = body[len(piece) :]
            await upstream.send(piece)
            self.forwarded_before_cut += len(piece)
        ours = upstream.extra(SocketAttribute.local_port)
        with anyio.fail_after(TIMEOUT):
            # Nothing unacknowledged on our side, nothing unread on the server's.
            while (
                tcp_queues(ours, self.upstream_port)[0] or tcp_queues(self.upstream_port, ours)[1]
            ):
                await anyio.sleep(0.01)
        # Leaving the caller's ``async with`` closes both connections mid-request.

    @staticmethod
    async def _pipe(source: SocketStream, sink: SocketStream) -> None:
        try:
            async for data in source:
                await sink.send(data)
            await sink.send_eof()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # the other side went away; the relay of this connection is over


async def test_tuspy_resumes_after_the_connection_drops_mid_patch(
    server: Server, http: httpx.AsyncClient, portal: Portal, clip: BinaryIO
) -> None:
    upstream_port = urlsplit(server.base_url).port
    assert upstream_port is not None
    require(Path("/proc/net/tcp").exists(), "the resume test reads socket queues on Linux")
    proxy = CuttingProxy(upstream_port, CUT_AFTER)
    async with proxy.running() as proxy_url:
        endpoint = f"{proxy_url}/r/{portal.token}/uploads/"
        first = tuspy_uploader(endpoint, clip)
        with pytest.raises(TusUploadFailed):
            await in_thread(first.upload)
        assert proxy.requests == ["POST", "PATCH"]
        assert first.url.startswith(endpoint)

        # The server finishes the cut request on its side (it saw the disconnect) and records
        # what arrived: the offset moves off zero, and never past what got through.
        direct = first.url.replace(endpoint, server.uploads_url(portal.token))
        kept = 0
        with anyio.move_on_after(TIMEOUT):
            while not (kept := await head_offset(http, direct)):
                await anyio.sleep(0.02)
        assert 0 < kept <= proxy.forwarded_before_cut < CLIP_SIZE, (
            f"the server kept {kept} of the {proxy.forwarded_before_cut} bytes that arrived "
            "before the drop"
        )

        # A new uploader on the same URL, as an app does after a restart: tuspy HEADs the
        # upload, starts from the server's offset and sends only the rest.
        def resume() -> int:
            again = tuspy_uploader(endpoint, clip, url=first.url)
            start: int = again.offset
            again.upload()
            return start

        resumed_from = await in_thread(resume)
        assert resumed_from == kept
        patches = math.ceil((CLIP_SIZE - kept) / CHUNK)  # the rest, one chunk per PATCH
        assert proxy.requests == ["POST", "PATCH", "HEAD", *["PATCH"] * patches]

    assert await head_offset(http, direct) == CLIP_SIZE
    await assert_clip_stored(server, http, portal, clip, first.url)
    assert unfinished_bytes(server.data_dir, upload_id(first.url)) == 0  # moved to the clip


# -- termination ----------------------------------------------------------------------------------


async def test_terminated_upload_is_gone(
    server: Server, http: httpx.AsyncClient, portal: Portal, clip: BinaryIO
) -> None:
    uploader = tuspy_uploader(server.uploads_url(portal.token), clip)
    await in_thread(uploader.upload_chunk)  # creation and the first chunk
    assert await head_offset(http, uploader.url) == CHUNK
    assert unfinished_bytes(server.data_dir, upload_id(uploader.url)) == CHUNK

    # tuspy has no termination call: send the extension's DELETE ourselves.
    deleted = await http.delete(uploader.url, headers=TUS)
    assert deleted.status_code == 204, deleted.text
    assert deleted.headers["Tus-Resumable"] == "1.0.0"
    gone = await http.head(uploader.url, headers=TUS)
    assert gone.status_code == 404
    assert gone.headers["Tus-Resumable"] == "1.0.0"
    with pytest.raises(TusCommunicationError):  # what tuspy sees when it tries to resume it
        await in_thread(uploader.get_offset)
    patched = await http.patch(
        uploader.url,
        content=b"\0" * 16,
        headers={
            **TUS,
            "Upload-Offset": str(CHUNK),
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert patched.status_code == 404
    session = await http.get(f"/r/{portal.token}/api/session")
    assert session.json()["clips"] == []
    assert unfinished_bytes(server.data_dir, upload_id(uploader.url)) == 0  # deleted before 204
