"""Schemathesis over our own OpenAPI document against a real uvicorn server on loopback.

Bounded examples per operation; any 5xx, a response that breaks the documented schema or status
codes, or a schema-invalid request that is accepted fails the test.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from litestar.serialization import decode_json, encode_json
from schemathesis.specs.openapi.checks import positive_data_acceptance

from ravepilot_core import RavePilot, Settings
from ravepilot_server import create_app
from ravepilot_server.cli import initialise


class RunningServer:
    """uvicorn in a thread on a free loopback port; stops when the test module ends."""

    def __init__(self, settings: Settings) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        config = uvicorn.Config(create_app(settings), log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]})

    def __enter__(self) -> RunningServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.socket.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def server_and_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    app_settings = Settings(data_dir=data_dir, allow_private_webhooks=True)

    async def first_start() -> str:
        async with await RavePilot.from_settings(app_settings) as ravepilot:
            key = await initialise(ravepilot)
            assert key is not None
            return key

    key = anyio.run(first_start)
    with RunningServer(app_settings) as server:
        yield server.url, key


# The document the server publishes at /schema/openapi.json, built without starting anything
# (create_app has no side effects), so the cases can be generated at collection time.
schema = schemathesis.openapi.from_dict(
    decode_json(encode_json(create_app(Settings()).openapi_schema.to_schema()))
)


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_errors_and_responses_match_the_schema(
    case: schemathesis.Case, server_and_key: tuple[str, str]
) -> None:
    base_url, key = server_and_key
    case.call_and_validate(
        base_url=base_url,
        headers={"Authorization": f"Bearer {key}"},
        # Our validation is deliberately stricter than JSON Schema can say (a valid email, a real
        # North American number), so a schema-valid body may still get a 400. Every other check
        # stays on, including that schema-invalid bodies are rejected and auth is enforced.
        excluded_checks=[positive_data_acceptance],
    )
