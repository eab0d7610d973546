"""What the contract does not cover: the staged parts, presigned URLs, errors, discovery."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import obstore
import pytest
from conftest import BUCKET
from moto_server import WATCHDOG, MotoServer, free_port

import ravepilot_s3
from ravepilot_core.backends import installed_backends, open_backend
from ravepilot_core.errors import BackendError
from ravepilot_core.protocols import MediaStore
from ravepilot_core.testing.media_contract import chunks_of, media_key, read_all
from ravepilot_s3 import PART_SIZE, S3MediaStore, open_s3_media

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024


async def _parts(store: S3MediaStore, key: str) -> list[tuple[int, int]]:
    """(offset, size) of each object under the upload's staging prefix, by name."""
    listed = await obstore.list(store.store, prefix=f".uploads/{key}/").collect_async()
    return sorted((int(m["path"].rpartition("/")[2]), m["size"]) for m in listed)


async def _staged(store: S3MediaStore) -> list[str]:
    return [m["path"] for m in await obstore.list(store.store, prefix=".uploads/").collect_async()]


# Staged parts


async def test_an_append_is_written_as_parts_of_at_most_part_size(s3_store: S3MediaStore) -> None:
    key = media_key()
    data = os.urandom(2 * PART_SIZE + 3 * MiB)
    size = await s3_store.append(
        key, 0, chunks_of(*[data[i : i + MiB] for i in range(0, len(data), MiB)])
    )
    assert size == len(data)
    assert await _parts(s3_store, key) == [
        (0, PART_SIZE),
        (PART_SIZE, PART_SIZE),
        (2 * PART_SIZE, 3 * MiB),
    ]
    # Part names are 20-digit offsets, so they sort by offset as text too.
    names = [path.rpartition("/")[2] for path in await _staged(s3_store)]
    assert names == sorted(names) and all(len(name) == 20 for name in names)


async def test_each_append_adds_its_own_parts(s3_store: S3MediaStore) -> None:
    key = media_key()
    assert await s3_store.append(key, 0, chunks_of(b"a" * 1000)) == 1000
    assert await s3_store.append(key, 1000, chunks_of(b"b" * 500, b"c" * 500)) == 2000
    assert await _parts(s3_store, key) == [(0, 1000), (1000, 1000)]


async def test_chunks_that_fail_are_saved_up_to_the_failure(s3_store: S3MediaStore) -> None:
    key = media_key()
    with pytest.raises(ConnectionResetError):
        await s3_store.append(key, 0, chunks_of(b"x" * 3000, fail=ConnectionResetError()))
    assert await _parts(s3_store, key) == [(0, 3000)]


async def test_resuming_inside_a_part_rewrites_it_and_drops_the_rest(
    s3_store: S3MediaStore,
) -> None:
    key = media_key()
    data = os.urandom(PART_SIZE + 2 * MiB)
    await s3_store.append(key, 0, chunks_of(data))
    assert await s3_store.append(key, 5 * MiB, chunks_of(b"tail")) == 5 * MiB + 4
    assert await _parts(s3_store, key) == [(0, 5 * MiB), (5 * MiB, 4)]
    await s3_store.finish_upload(key, 5 * MiB + 4)
    assert await read_all(s3_store, key) == data[: 5 * MiB] + b"tail"


async def test_resuming_at_a_part_boundary_drops_the_later_parts(s3_store: S3MediaStore) -> None:
    key = media_key()
    await s3_store.append(key, 0, chunks_of(b"a" * 100))
    await s3_store.append(key, 100, chunks_of(b"b" * 100))
    await s3_store.append(key, 200, chunks_of(b"c" * 100))
    assert await s3_store.append(key, 100, chunks_of(b"d")) == 101
    assert await _parts(s3_store, key) == [(0, 100), (100, 1)]


async def test_debris_after_a_gap_is_not_part_of_the_upload(s3_store: S3MediaStore) -> None:
    key = media_key()
    await s3_store.append(key, 0, chunks_of(b"a" * 100))
    # What an interrupted bulk delete or a crash could leave: a part past a gap, a stray name.
    staging = f".uploads/{key}/"
    await obstore.put_async(s3_store.store, f"{staging}{500:020d}", b"stale")
    await obstore.put_async(s3_store.store, f"{staging}stray", b"?")
    with pytest.raises(ValueError, match="it holds 100"):
        await s3_store.append(key, 200, chunks_of(b"x"))
    assert await s3_store.append(key, 100, chunks_of(b"b" * 400)) == 500
    assert await _parts(s3_store, key) == [(0, 100), (100, 400)]
    await s3_store.finish_upload(key, 500)
    assert await read_all(s3_store, key) == b"a" * 100 + b"b" * 400


async def test_finish_and_abort_leave_no_parts(s3_store: S3MediaStore) -> None:
    finished, aborted = media_key(), media_key()
    for key in (finished, aborted):
        await s3_store.append(key, 0, chunks_of(os.urandom(PART_SIZE + 1)))
    await s3_store.finish_upload(finished, PART_SIZE)
    await s3_store.abort_upload(aborted)
    assert await _staged(s3_store) == []
    assert await s3_store.size(finished) == PART_SIZE
    assert await s3_store.size(aborted) is None


async def test_a_failed_put_raises_the_callers_error_and_stores_nothing(
    s3_store: S3MediaStore,
) -> None:
    key = media_key("render", ext="mp4")
    failing = chunks_of(os.urandom(PART_SIZE + MiB), fail=ConnectionResetError("gone"))
    with pytest.raises(ConnectionResetError, match="gone"):
        await s3_store.put(key, failing)
    assert await s3_store.size(key) is None


async def test_objects_and_parts_live_under_the_url_prefix(
    s3_store: S3MediaStore, moto: MotoServer, prefix: str
) -> None:
    key = "ws_1/sub_1/clip_1.webm"
    await s3_store.put(key, chunks_of(b"object"))
    await s3_store.append(key, 0, chunks_of(b"upload"))
    whole_bucket = open_s3_media(f"s3://{BUCKET}?endpoint_url={moto.endpoint}")
    listed = await obstore.list(whole_bucket.store, prefix=prefix).collect_async()
    assert sorted(m["path"] for m in listed) == [
        f"{prefix}/.uploads/{key}/{0:020d}",
        f"{prefix}/{key}",
    ]


# Errors


async def test_a_missing_bucket_is_a_backend_error(moto: MotoServer) -> None:
    store = open_s3_media(f"s3://no-such-bucket?endpoint_url={moto.endpoint}")
    with pytest.raises(BackendError, match=r"S3 failed to write the object .*NoSuchBucket"):
        await store.put(media_key(), chunks_of(b"x"))
    with pytest.raises(BackendError, match=r"S3 failed to list the parts of upload .*NoSuchBucket"):
        await store.append(media_key(), 0, chunks_of(b"x"))


# Presigned URLs


async def test_a_presigned_url_lasts_until_expires_at(s3_store: S3MediaStore) -> None:
    key = media_key()
    await s3_store.put(key, chunks_of(b"clip"))
    url = await s3_store.playback_url(key, expires_at=datetime.now(UTC) + timedelta(minutes=15))
    assert url is not None
    query = parse_qs(urlsplit(url).query)
    # moto serves presigned URLs after they expire, so the lifetime is checked where S3 reads it.
    assert int(query["X-Amz-Expires"][0]) in (899, 900)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert urlsplit(url).path.endswith(f"/{key}")
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert await response.read() == b"clip"


async def test_a_tampered_presigned_url_is_refused(s3_store: S3MediaStore) -> None:
    # What a moto without signature checks cannot show is at least not claimed: the signature
    # covers the key, so a URL for one clip is no URL for another.
    key = media_key()
    await s3_store.put(key, chunks_of(b"clip"))
    expires_at = datetime.now(UTC) + timedelta(minutes=5)
    first = await s3_store.playback_url(key, expires_at=expires_at)
    other = await s3_store.playback_url(media_key(), expires_at=expires_at)
    assert first is not None and other is not None
    assert (
        parse_qs(urlsplit(first).query)["X-Amz-Signature"]
        != (parse_qs(urlsplit(other).query)["X-Amz-Signature"])
    )


@pytest.mark.parametrize(
    ("expires_at", "problem"),
    [
        (datetime.now(UTC) - timedelta(seconds=1), "not in the future"),
        (datetime.now(UTC) + timedelta(days=8), "at most 7 days"),
        (datetime.now() + timedelta(hours=1), "aware"),
    ],
)
async def test_unsignable_lifetimes_are_refused(
    s3_store: S3MediaStore, expires_at: datetime, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        await s3_store.playback_url(media_key(), expires_at=expires_at)


# Discovery and the test server itself


async def test_open_backend_finds_the_s3_store(s3_url: str) -> None:
    store = await open_backend("media", s3_url)
    assert isinstance(store, S3MediaStore)
    assert isinstance(store, MediaStore)
    await store.close()


def test_installed_backends_lists_s3_from_this_distribution() -> None:
    (info,) = [b for b in installed_backends() if b.kind == "media" and b.scheme == "s3"]
    assert info.distribution == "ravepilot-s3"
    assert info.target == "ravepilot_s3:open_s3_media"


def test_all_is_sorted_and_complete() -> None:
    assert ravepilot_s3.__all__ == sorted(ravepilot_s3.__all__)
    public = {name for name in vars(ravepilot_s3) if not name.startswith("_")}
    assert public - {"annotations", "failures", "settings", "store"} == set(ravepilot_s3.__all__)


# Stands in for a pytest that is killed: starts the runner, waits until moto answers, prints the
# runner's pid and dies without stopping it.
STAND_IN = """
import os, subprocess, sys, time, urllib.request
runner = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(os.getpid()), sys.argv[2]],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for _ in range(200):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[2]}/moto-api/", timeout=1)
        break
    except OSError:
        time.sleep(0.1)
print(runner.pid, flush=True)
os._exit(0)
"""


def test_the_moto_server_exits_when_its_parent_dies(moto: MotoServer) -> None:
    stand_in = subprocess.run(
        [sys.executable, "-c", STAND_IN, WATCHDOG, str(free_port())],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    runner = int(stand_in.stdout)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _running(runner):
        time.sleep(0.1)
    assert not _running(runner), "the moto runner outlived its parent"


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for a parent that does not reap is not running)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"
