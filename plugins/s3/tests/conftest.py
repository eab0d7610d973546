"""One moto S3 server and bucket per session; each test gets its own prefix in that bucket."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator

import pytest
from moto_server import INSTALL_HINT, MotoServer, moto_installed, start_moto

from ravepilot_core.testing.components import require_component
from ravepilot_s3 import S3MediaStore, open_s3_media

BUCKET = "ravepilot-test"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # obstore runs its futures on asyncio


@pytest.fixture(scope="session")
def aws_environment() -> Iterator[None]:
    """Dummy credentials, and none of the developer's own AWS settings leaking in."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("AWS_"):
                patch.delenv(name)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        yield


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory, aws_environment: None) -> Iterator[MotoServer]:
    """A moto S3 server on 127.0.0.1 with the bucket :data:`BUCKET`, stopped at the end."""
    require_component(moto_installed(), INSTALL_HINT)
    try:
        server = start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    except RuntimeError as exc:
        require_component(False, f"moto_server could not be started: {exc}")
        raise
    try:
        server.create_bucket(BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture
def prefix() -> str:
    """This test's own prefix in the bucket."""
    return f"test-{secrets.token_hex(6)}"


@pytest.fixture
def s3_url(moto: MotoServer, prefix: str) -> str:
    """The media URL of this test's prefix."""
    return f"s3://{BUCKET}/{prefix}?endpoint_url={moto.endpoint}&region=us-east-1"


@pytest.fixture
async def s3_store(s3_url: str) -> AsyncIterator[S3MediaStore]:
    """A store under this test's prefix."""
    store = open_s3_media(s3_url)
    yield store
    await store.close()
