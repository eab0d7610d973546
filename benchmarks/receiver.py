#!/usr/bin/env python
"""A fast loopback webhook receiver for ``benchmarks/dispatch.py``: answers every POST ``200 OK``.

It must cost as little as possible per request, so that it is never what limits a measurement:
a bare asyncio ``Protocol`` with the httptools parser on uvloop (when installed), no framework,
no body parsing. It answers ``HTTP/1.1 200 OK`` with an empty body and keeps the connection
open. For each request it appends (delivery id, receipt time) to a list in memory: the delivery
id from the ``X-RavePilot-Delivery`` header (``-`` when absent, as in the raw-ceiling client's
requests), the time as ``time.time()``, the same wall clock the events' ``created_at`` comes from,
taken when the request has been read in full.

Control requests (GET, answered with JSON) let the benchmark read it:

    GET /_stats       {"requests": N, "receipts": M, "pid": P}
    GET /_receipts    {"receipts": [[delivery_id, unix_seconds], ...]} and forgets them
    GET /_clear       {"cleared": M}: forgets the receipts without sending them

Run on its own (it prints ``READY <port>`` on stdout once listening)::

    python benchmarks/receiver.py --port 0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from typing import Any

import httptools

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
DELIVERY_HEADER = b"x-ravepilot-delivery"


class State:
    """What every connection shares: the counter and the receipts."""

    def __init__(self) -> None:
        self.requests = 0
        self.receipts: list[tuple[str, float]] = []


class Receiver(asyncio.Protocol):
    """One keep-alive connection. httptools calls the ``on_*`` methods as it parses."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.delivery = "-"
        self.url = b""

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
            self.transport.close()

    # -- httptools callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.delivery = "-"
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # Header names arrive as sent; lower() only the one that might be ours (cheap check first).
        if len(name) == len(DELIVERY_HEADER) and name.lower() == DELIVERY_HEADER:
            self.delivery = value.decode("ascii", "replace")

    def on_message_complete(self) -> None:
        assert self.transport is not None
        if self.url.startswith(b"/_"):
            self.transport.write(self._control())
            return
        state = self.state
        state.requests += 1
        # A tuple append is the whole per-request cost of recording (~50 ns).
        state.receipts.append((self.delivery, time.time()))
        self.transport.write(OK)
        if not self.parser.should_keep_alive():
            self.transport.close()

    def _control(self) -> bytes:
        state = self.state
        payload: dict[str, Any]
        if self.url.startswith(b"/_receipts"):
            payload = {"receipts": state.receipts}
            state.receipts = []
        elif self.url.startswith(b"/_clear"):
            payload = {"cleared": len(state.receipts)}
            state.receipts = []
        elif self.url.startswith(b"/_stats"):
            payload = {
                "requests": state.requests,
                "receipts": len(state.receipts),
                "pid": os.getpid(),
            }
        else:
            body = b'{"error":"unknown control path"}'
            return b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        body = json.dumps(payload, separators=(",", ":")).encode()
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    state = State()
    # A deep backlog: the clients open up to a few hundred connections at once.
    server = await loop.create_server(lambda: Receiver(state), host, port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    print(f"READY {bound}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fast loopback webhook receiver (200 OK).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
