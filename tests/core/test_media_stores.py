"""The MediaStore contract on the file and memory stores, and what only the file store does."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ravepilot_core.backends import installed_backends, open_backend
from ravepilot_core.errors import ConfigurationError, MediaNotFound
from ravepilot_core.filemedia import FileMediaStore, check_media_key, open_file_media
from ravepilot_core.protocols import MediaStore
from ravepilot_core.testing import MediaStoreContract, MemoryMediaStore, open_memory_media
from ravepilot_core.testing.media_contract import chunks_of, media_key, read_all


class TestFileMediaStore(MediaStoreContract):
    @pytest.fixture
    async def media_store(self, tmp_path: Path) -> AsyncIterator[MediaStore]:
        store = open_file_media(f"file://{tmp_path}/media")
        yield store
        await store.close()


class TestMemoryMediaStore(MediaStoreContract):
    @pytest.fixture
    async def media_store(self) -> AsyncIterator[MediaStore]:
        store = open_memory_media("memory://")
        yield store
        await store.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FileMediaStore]:
    store = open_file_media(f"file://{tmp_path}/media")
    yield store
    await store.close()


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# Keys


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("../secret", "the name '..'"),
        ("ws_1/../../etc/passwd", "the name '..'"),
        ("/etc/passwd", "starts with '/'"),
        ("ws_1//clip.webm", "empty name"),
        ("ws_1\\clip.webm", "backslash"),
        ("ws_1/clip webm", "'clip webm'"),
        ("ws_1/clip\x00.webm", "'clip\\x00.webm'"),
        ("ws_1/.uploads/x", "'.uploads'"),
        ("ws_1/clïp.webm", "'clïp.webm'"),
        ("", "empty"),
        ("ws_1/", "ends with '/'"),
        ("x" * 1025, "longer than 1024"),
    ],
)
def test_bad_keys_are_refused_saying_why(key: str, problem: str) -> None:
    with pytest.raises(ValueError, match="invalid media key") as caught:
        check_media_key(key)
    assert problem in str(caught.value)


def test_prefixes_are_keys_ending_in_a_slash() -> None:
    check_media_key("ws_1/sub_1/", allow_prefix=True)
    check_media_key("ws_1/sub_1/clip_1.webm", allow_prefix=True)
    for prefix in ("/", "../", "ws_1//", "/ws_1/"):
        with pytest.raises(ValueError):
            check_media_key(prefix, allow_prefix=True)


@pytest.mark.anyio
async def test_traversal_never_touches_the_filesystem(tmp_path: Path) -> None:
    store = open_file_media(f"file://{tmp_path}/media")
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"keep me")
    with pytest.raises(ValueError, match=r"invalid media key '\.\./victim\.txt'"):
        await store.put("../victim.txt", chunks_of(b"overwritten"))
    with pytest.raises(ValueError):
        await store.delete(["../"])
    with pytest.raises(ValueError):
        await read_all(store, "../victim.txt")
    assert victim.read_bytes() == b"keep me"
    assert _files(tmp_path / "media") == []


# Files on disk


@pytest.mark.anyio
async def test_uploads_live_apart_and_finish_by_renaming(store: FileMediaStore) -> None:
    key = "ws_1/sub_1/clip_1.webm"
    await store.append(key, 0, chunks_of(b"0123456789"))
    assert _files(store.root) == [".uploads/ws_1/sub_1/clip_1.webm"]
    await store.finish_upload(key, 8)
    assert _files(store.root) == [key]
    assert (store.root / key).read_bytes() == b"01234567"
    assert not (store.root / ".uploads" / "ws_1").exists(), "empty upload directories are pruned"


@pytest.mark.anyio
async def test_deleted_files_are_really_gone(store: FileMediaStore) -> None:
    for key in ("ws_1/sub_1/clip_1.webm", "ws_1/sub_1/renders/r_1.mp4", "ws_1/sub_10/clip.webm"):
        await store.put(key, chunks_of(b"x"))
    await store.append("ws_1/sub_1/clip_2.webm", 0, chunks_of(b"partial"))
    await store.append("ws_1/sub_10/clip_2.webm", 0, chunks_of(b"partial"))
    await store.delete(["ws_1/sub_1/"])
    assert _files(store.root) == [".uploads/ws_1/sub_10/clip_2.webm", "ws_1/sub_10/clip.webm"]
    assert not (store.root / "ws_1" / "sub_1").exists()
    await store.delete(["ws_1/sub_10/clip.webm", "ws_1/sub_10/clip_2.webm"])
    assert _files(store.root) == []


@pytest.mark.anyio
async def test_deleting_a_directory_as_a_key_deletes_nothing(store: FileMediaStore) -> None:
    await store.put("ws_1/sub_1/clip_1.webm", chunks_of(b"x"))
    await store.delete(["ws_1/sub_1", "ws_1/sub_1/clip_1.webm/more"])
    assert _files(store.root) == ["ws_1/sub_1/clip_1.webm"]
    assert await store.size("ws_1/sub_1") is None
    with pytest.raises(MediaNotFound):
        await read_all(store, "ws_1/sub_1")


@pytest.mark.anyio
async def test_a_failed_put_leaves_the_old_object_and_no_partial_file(
    store: FileMediaStore,
) -> None:
    key = "ws_1/sub_1/render_1.mp4"
    await store.put(key, chunks_of(b"old"))
    with pytest.raises(OSError, match="broken pipe"):
        await store.put(key, chunks_of(b"new", fail=OSError("broken pipe")))
    assert _files(store.root) == [key]
    assert (store.root / key).read_bytes() == b"old"


@pytest.mark.anyio
async def test_a_refused_append_leaves_no_file(store: FileMediaStore) -> None:
    with pytest.raises(ValueError, match="it holds 0 bytes"):
        await store.append("ws_1/sub_1/clip_1.webm", 5, chunks_of(b"x"))
    assert [p.name for p in store.root.rglob("*")] == [".uploads"]


@pytest.mark.anyio
async def test_playback_url_is_none(store: FileMediaStore) -> None:
    await store.put("ws_1/sub_1/clip_1.webm", chunks_of(b"x"))
    expires_at = datetime.now(UTC) + timedelta(hours=1)
    assert await store.playback_url("ws_1/sub_1/clip_1.webm", expires_at=expires_at) is None


# Opening


@pytest.mark.anyio
async def test_open_backend_finds_the_file_store_and_creates_its_directory(
    tmp_path: Path,
) -> None:
    root = tmp_path / "data" / "media"
    store = await open_backend("media", f"file://{root}")
    assert isinstance(store, FileMediaStore)
    assert isinstance(store, MediaStore)
    assert store.root == root
    assert root.is_dir()
    key = media_key()
    await store.put(key, chunks_of(b"found"))
    assert (root / key).read_bytes() == b"found"


@pytest.mark.anyio
async def test_open_backend_finds_the_memory_store() -> None:
    store = await open_backend("media", "memory://")
    assert isinstance(store, MemoryMediaStore)
    assert isinstance(store, MediaStore)


def test_both_stores_are_listed_as_installed() -> None:
    media = {b.scheme: b for b in installed_backends() if b.kind == "media"}
    assert media["file"].target == "ravepilot_core.filemedia:open_file_media"
    assert media["memory"].target == "ravepilot_core.testing.memory_media:open_memory_media"
    assert media["file"].distribution == "ravepilot"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("file://", "needs a directory"),
        ("file:///tmp/media?mode=fast", "needs a directory and nothing else"),
        ("memory://", "not a file:// URL"),
    ],
)
def test_bad_file_urls(url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        open_file_media(url)


def test_a_directory_that_cannot_be_created_is_a_configuration_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    with pytest.raises(ConfigurationError, match="cannot create the media directory"):
        open_file_media(f"file://{blocker}/media")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_directory_is_a_configuration_error(tmp_path: Path) -> None:
    root = tmp_path / "media"
    root.mkdir(mode=0o500)
    try:
        with pytest.raises(ConfigurationError, match="not writable"):
            open_file_media(f"file://{root}")
    finally:
        root.chmod(0o700)


def test_a_memory_store_refuses_other_urls() -> None:
    with pytest.raises(ConfigurationError, match="not a memory:// URL"):
        open_memory_media("file:///tmp")
