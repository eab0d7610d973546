"""A webhook receiver for tests that run the worker in another process.

Run it as ``python -m tests.webhook_sink --port N --log FILE``. It listens on 127.0.0.1, answers
every POST with 200 and appends the request's ``X-RavePilot-Delivery`` header to ``FILE``, one
id per line, written as the request arrives (before the optional random delay and the answer),
so the file says what reached the receiver even when the sender dies before reading the answer.

``--port 0`` picks a free port. Once listening, it prints ``listening on 127.0.0.1:<port>`` on
stdout. SIGTERM or SIGINT stops it cleanly (exit code 0).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
from pathlib import Path

from aiohttp import web

__all__ = ["main"]

DELIVERY_HEADER = "X-RavePilot-Delivery"


def make_app(log_fd: int, max_delay: float) -> web.Application:
    """An app that logs each delivery id to ``log_fd`` and answers 200."""

    async def receive(request: web.Request) -> web.Response:
        delivery_id = request.headers.get(DELIVERY_HEADER, "-")
        await request.read()
        # One write(2) per line on an O_APPEND descriptor: no buffering to lose, no interleaving.
        os.write(log_fd, f"{delivery_id}\n".encode())
        if max_delay > 0:
            await asyncio.sleep(random.uniform(0, max_delay))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", receive)
    return app


async def serve(port: int, log: Path, max_delay: float) -> None:
    """Serve until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    runner = web.AppRunner(make_app(log_fd, max_delay), access_log=None)
    try:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        host, bound = runner.addresses[0][:2]
        print(f"listening on {host}:{bound}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
        os.close(log_fd)


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--log", type=Path, required=True, help="file to append delivery ids to")
    parser.add_argument(
        "--max-delay-ms",
        type=float,
        default=0.0,
        help="answer after a random delay of up to this many milliseconds",
    )
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port, args.log, args.max_delay_ms / 1000))


if __name__ == "__main__":
    main()
