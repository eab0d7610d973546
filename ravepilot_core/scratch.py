"""Scratch space for media jobs: a private temporary directory, and copies in and out of it.

ffmpeg and transcribers want local files, while media lives in a :class:`MediaStore` that may be
an object store; jobs copy what they need into a scratch directory (streamed, never whole in
memory) and put their results back. The directory is removed however the job ends.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from ravepilot_core.protocols import MediaStore

__all__ = ["download", "scratch_directory", "upload"]

_PIECE = 1024 * 1024


@asynccontextmanager
async def scratch_directory() -> AsyncIterator[Path]:
    """Yield a new private directory, removed with everything in it on exit."""
    path = Path(await anyio.to_thread.run_sync(tempfile.mkdtemp, "", "ravepilot-"))
    try:
        yield path
    finally:
        await anyio.to_thread.run_sync(shutil.rmtree, path, True)


async def download(media: MediaStore, key: str, target: Path) -> Path:
    """Copy the object ``key`` to the local file ``target``; return ``target``."""
    async with await anyio.open_file(target, "wb") as handle:
        async for chunk in media.read(key):
            await handle.write(chunk)
    return target


async def _pieces(source: Path) -> AsyncIterator[bytes]:
    async with await anyio.open_file(source, "rb") as handle:
        while chunk := await handle.read(_PIECE):
            yield chunk


async def upload(media: MediaStore, key: str, source: Path) -> int:
    """Store the local file ``source`` as the object ``key``; return its size."""
    return await media.put(key, _pieces(source))
