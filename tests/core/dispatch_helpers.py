"""Webhook receivers on loopback for the dispatch tests: well-behaved, slow, and broken ones."""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field

import anyio
from aiohttp import web

from ravepilot_core import LinkRequest, RavePilot

__all__ = [
    "Hit",
    "RawServer",
    "Receiver",
    "emit",
    "open_raw_server",
    "open_receiver",
    "refused_port",
]


@dataclass
class Hit:
    """One request a receiver got."""

    headers: dict[str, str]
    body: bytes
    started: float  # time.monotonic() when it arrived
    finished: float | None = None  # when the answer was sent

    @property
    def delivery_id(self) -> str:
        return self.headers["X-RavePilot-Delivery"]

    @property
    def event(self) -> str:
        return self.headers["X-RavePilot-Event"]


Responder = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Receiver:
    """An aiohttp.web receiver whose answer a test sets: status, body, headers and a delay."""

    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering
    responder: Responder | None = None  # replaces the canned answer when set
    hits: list[Hit] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    url: str = ""
    _changed: anyio.Event = field(default_factory=anyio.Event)
    _closing: anyio.Event = field(default_factory=anyio.Event)

    def answer(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer every later request this way."""
        self.status, self.body, self.headers, self.delay = status, body, headers or {}, delay
        self.responder = None

    def delivery_ids(self) -> list[str]:
        return [hit.delivery_id for hit in self.hits]

    def finished(self) -> list[Hit]:
        return [hit for hit in self.hits if hit.finished is not None]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Return once ``predicate()`` holds; re-checked whenever a request starts or ends."""
        with anyio.fail_after(timeout):
            while not predicate():
                await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        hit = Hit(
            headers=dict(request.headers), body=await request.read(), started=time.monotonic()
        )
        self.hits.append(hit)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self._notify()
        try:
            if self.responder is not None:
                return await self.responder(request)
            if self.delay:
                # Cut short when the test ends, so shutting the server down never waits.
                with anyio.move_on_after(self.delay):
                    await self._closing.wait()
            return web.Response(status=self.status, body=self.body, headers=self.headers)
        finally:
            self.in_flight -= 1
            hit.finished = time.monotonic()
            self._notify()


@asynccontextmanager
async def open_receiver(receiver: Receiver | None = None) -> AsyncIterator[Receiver]:
    """Serve ``receiver`` on 127.0.0.1 (a free port) until the block ends."""
    receiver = receiver or Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver._handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    receiver.url = f"http://{host}:{port}/hook"
    try:
        yield receiver
    finally:
        receiver._closing.set()
        await runner.cleanup()


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    """Read one HTTP/1.1 request with a Content-Length body; return the body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return await reader.readexactly(length)


@dataclass
class RawServer:
    """A TCP server that reads each request in full, then misbehaves as ``mode`` says.

    - ``reset``: abort the connection with a TCP RST, answering nothing;
    - ``partial_headers``: send a 200 status line and part of the headers, then close;
    - ``partial_body``: send a complete 200 head with ``Content-Length: 5000`` and 100 bytes of
      body, then close.
    """

    mode: str
    requests: int = 0
    url: str = ""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _read_request(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        self.requests += 1
        if self.mode == "reset":
            sock = writer.get_extra_info("socket")
            # Linger 0: close() sends RST instead of FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        if self.mode == "partial_headers":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Len")
        elif self.mode == "partial_body":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 100)
        else:
            raise AssertionError(f"unknown mode {self.mode!r}")
        await writer.drain()
        writer.close()


@asynccontextmanager
async def open_raw_server(mode: str) -> AsyncIterator[RawServer]:
    """Serve a misbehaving :class:`RawServer` on 127.0.0.1 until the block ends."""
    raw = RawServer(mode)
    server = await asyncio.start_server(raw._serve, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    raw.url = f"http://{host}:{port}/hook"
    try:
        yield raw
    finally:
        server.close()
        await server.wait_closed()


@contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nothing else takes it), not listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


_customers = itertools.count()


async def emit(rp: RavePilot, workspace_id: str, count: int = 1, *, tag: str = "c") -> None:
    """Emit ``count`` ``invitation.created`` events (one new customer each)."""
    for _ in range(count):
        email = f"{tag}{next(_customers)}@example.com"
        await rp.invitations.create(workspace_id, LinkRequest(customer_email=email))
