"""The MediaStore contract suite: a pytest class any media store subclasses to prove it behaves.

One fixture, ``media_store``, gives a fresh, empty store (or one whose keys cannot clash with
other tests', e.g. under a unique bucket prefix) and closes it afterwards::

    import pytest
    from ravepilot_core.testing import MediaStoreContract

    class TestMyMediaStore(MediaStoreContract):
        @pytest.fixture
        async def media_store(self, tmp_path):
            store = open_my_media(f"mine://{tmp_path}")
            yield store
            await store.close()

A store whose :meth:`~ravepilot_core.protocols.MediaStore.playback_url` returns a URL must serve
the object's bytes there to a plain HTTP GET, ranges included.
"""

# The tests are public methods whose names say what they check; docstrings would only repeat them.
# ruff: noqa: D102

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta

import anyio
import anyio.lowlevel
import pytest

from ravepilot_core.errors import MediaNotFound
from ravepilot_core.protocols import MediaStore

__all__ = ["MediaStoreContract", "chunks_of", "media_key", "read_all"]

MiB = 1024 * 1024


def media_key(name: str = "clip", *, submission: str | None = None, ext: str = "webm") -> str:
    """A unique key shaped like RavePilot's: ``ws_…/sub_…/<name>_….<ext>``."""
    submission = submission or f"ws_{secrets.token_hex(4)}/sub_{secrets.token_hex(4)}"
    return f"{submission}/{name}_{secrets.token_hex(4)}.{ext}"


async def chunks_of(*pieces: bytes, fail: BaseException | None = None) -> AsyncIterator[bytes]:
    """Yield ``pieces`` one by one, letting the loop run between them; then raise ``fail``."""
    for piece in pieces:
        await anyio.lowlevel.checkpoint()
        yield piece
    if fail is not None:
        raise fail


async def read_all(store: MediaStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    """Collect what ``store.read`` yields."""
    return b"".join([piece async for piece in store.read(key, start, end)])


def _split(data: bytes, size: int) -> Iterable[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


class MediaStoreContract:
    """Behaviour every :class:`~ravepilot_core.protocols.MediaStore` must have.

    Subclass it in a class named ``Test...`` and override ``media_store``.
    """

    pytestmark = pytest.mark.anyio

    @pytest.fixture
    def media_store(self) -> MediaStore:
        """Override this fixture: yield a fresh media store and close it after the test."""
        raise NotImplementedError("subclass MediaStoreContract and override `media_store`")

    async def test_is_a_media_store(self, media_store: MediaStore) -> None:
        assert isinstance(media_store, MediaStore)

    # -- uploads -------------------------------------------------------------------------------
    async def test_append_from_zero_then_resume_at_the_returned_offset(
        self, media_store: MediaStore
    ) -> None:
        key = media_key()
        assert await media_store.append(key, 0, chunks_of(b"hello ", b"wor")) == 9
        assert await media_store.append(key, 9, chunks_of(b"ld", b"!")) == 12
        await media_store.finish_upload(key, 12)
        assert await read_all(media_store, key) == b"hello world!"
        assert await media_store.size(key) == 12

    async def test_append_below_the_stored_size_discards_the_excess(
        self, media_store: MediaStore
    ) -> None:
        key = media_key()
        await media_store.append(key, 0, chunks_of(b"0123456789"))
        # The caller recorded only 4 bytes (say, it crashed before saving the answer).
        assert await media_store.append(key, 4, chunks_of(b"abc")) == 7
        assert await media_store.append(key, 7, chunks_of()) == 7
        await media_store.finish_upload(key, 7)
        assert await read_all(media_store, key) == b"0123abc"

    async def test_append_from_zero_restarts_the_upload(self, media_store: MediaStore) -> None:
        key = media_key()
        await media_store.append(key, 0, chunks_of(b"first take"))
        assert await media_store.append(key, 0, chunks_of(b"second")) == 6
        await media_store.finish_upload(key, 6)
        assert await read_all(media_store, key) == b"second"

    async def test_append_beyond_the_stored_size_is_refused(self, media_store: MediaStore) -> None:
        key = media_key()
        with pytest.raises(ValueError):
            await media_store.append(key, 5, chunks_of(b"x"))
        await media_store.append(key, 0, chunks_of(b"abc"))
        with pytest.raises(ValueError):
            await media_store.append(key, 4, chunks_of(b"x"))
        assert await media_store.append(key, 3, chunks_of(b"d")) == 4

    async def test_chunks_that_stop_early_keep_what_arrived(self, media_store: MediaStore) -> None:
        key = media_key()
        # The client went away after two of its chunks: the body iterator just ends.
        assert await media_store.append(key, 0, chunks_of(b"abc", b"def")) == 6
        assert await media_store.append(key, 6, chunks_of(b"ghi")) == 9
        await media_store.finish_upload(key, 9)
        assert await read_all(media_store, key) == b"abcdefghi"

    async def test_chunks_that_fail_keep_what_they_yielded(self, media_store: MediaStore) -> None:
        key = media_key()
        first = os.urandom(300_000)
        with pytest.raises(OSError, match="connection reset"):
            await media_store.append(key, 0, chunks_of(first, fail=OSError("connection reset")))
        # The caller counted every byte the store took from it, and resumes there.
        rest = os.urandom(1000)
        assert await media_store.append(key, len(first), chunks_of(rest)) == len(first) + 1000
        await media_store.finish_upload(key, len(first) + 1000)
        assert await read_all(media_store, key) == first + rest

    async def test_finish_truncates_to_size_and_ends_the_upload(
        self, media_store: MediaStore
    ) -> None:
        key = media_key()
        await media_store.append(key, 0, chunks_of(b"0123456789"))
        await media_store.finish_upload(key, 6)
        assert await read_all(media_store, key) == b"012345"
        assert await media_store.size(key) == 6
        with pytest.raises(MediaNotFound):  # the upload is gone, so it cannot finish twice
            await media_store.finish_upload(key, 6)
        with pytest.raises(ValueError):  # nor be appended to where it stopped
            await media_store.append(key, 10, chunks_of(b"x"))
        # Appending again starts a new upload; the object stays until that one finishes.
        assert await media_store.append(key, 0, chunks_of(b"retake")) == 6
        assert await read_all(media_store, key) == b"012345"
        await media_store.finish_upload(key, 6)
        assert await read_all(media_store, key) == b"retake"

    async def test_finish_more_than_was_uploaded_is_refused(self, media_store: MediaStore) -> None:
        key = media_key()
        await media_store.append(key, 0, chunks_of(b"abc"))
        with pytest.raises(ValueError):
            await media_store.finish_upload(key, 4)
        assert await media_store.size(key) is None

    async def test_an_empty_upload_finishes_as_an_empty_object(
        self, media_store: MediaStore
    ) -> None:
        key = media_key()
        assert await media_store.append(key, 0, chunks_of()) == 0
        await media_store.finish_upload(key, 0)
        assert await media_store.size(key) == 0
        assert await read_all(media_store, key) == b""

    async def test_finishing_a_missing_upload_is_media_not_found(
        self, media_store: MediaStore
    ) -> None:
        with pytest.raises(MediaNotFound):
            await media_store.finish_upload(media_key(), 10)

    async def test_an_unfinished_upload_is_not_an_object(self, media_store: MediaStore) -> None:
        key = media_key()
        await media_store.append(key, 0, chunks_of(b"abc"))
        assert await media_store.size(key) is None
        with pytest.raises(MediaNotFound):
            await read_all(media_store, key)

    async def test_abort_removes_the_upload_and_is_idempotent(
        self, media_store: MediaStore
    ) -> None:
        key = media_key()
        await media_store.put(key, chunks_of(b"finished"))
        await media_store.append(key, 0, chunks_of(b"abc"))
        await media_store.abort_upload(key)
        await media_store.abort_upload(key)
        await media_store.abort_upload(media_key())  # never existed
        with pytest.raises(MediaNotFound):
            await media_store.finish_upload(key, 3)
        assert await read_all(media_store, key) == b"finished"  # the object is not the upload
        assert await media_store.append(key, 0, chunks_of(b"xy")) == 2

    async def test_uploads_of_different_keys_are_independent(self, media_store: MediaStore) -> None:
        keys = [media_key(f"clip{i}", submission="ws_1/sub_1") for i in range(3)]
        async with anyio.create_task_group() as tg:
            for i, key in enumerate(keys):
                tg.start_soon(media_store.append, key, 0, chunks_of(*[bytes([i])] * 50))
        for key in keys:
            await media_store.finish_upload(key, 50)
        assert [await read_all(media_store, key) for key in keys] == [
            bytes([i]) * 50 for i in range(3)
        ]

    # -- objects -------------------------------------------------------------------------------
    async def test_put_stores_and_replaces(self, media_store: MediaStore) -> None:
        key = media_key("render", ext="mp4")
        assert await media_store.put(key, chunks_of(b"version ", b"one")) == 11
        assert await media_store.put(key, chunks_of(b"v2")) == 2
        assert await read_all(media_store, key) == b"v2"
        assert await media_store.size(key) == 2
        assert await media_store.put(key, chunks_of()) == 0
        assert await media_store.size(key) == 0

    async def test_read_ranges(self, media_store: MediaStore) -> None:
        key = media_key()
        data = bytes(range(256)) * 4
        await media_store.put(key, chunks_of(data))
        assert await read_all(media_store, key, 0) == data
        assert await read_all(media_store, key, 100) == data[100:]
        assert await read_all(media_store, key, 0, 10) == data[:10]
        assert await read_all(media_store, key, 10, 20) == data[10:20]
        assert await read_all(media_store, key, 1000, 5000) == data[1000:]
        assert await read_all(media_store, key, 5, 5) == b""
        assert await read_all(media_store, key, 1024) == b""
        assert await read_all(media_store, key, 2000, 3000) == b""

    async def test_read_yields_pieces(self, media_store: MediaStore) -> None:
        key = media_key()
        await media_store.put(key, chunks_of(*_split(os.urandom(4 * MiB), MiB)))
        sizes = [len(piece) async for piece in media_store.read(key)]
        assert sum(sizes) == 4 * MiB
        assert max(sizes) <= 2 * MiB, "read() must not hand over the object whole"

    async def test_missing_objects(self, media_store: MediaStore) -> None:
        key = media_key()
        assert await media_store.size(key) is None
        with pytest.raises(MediaNotFound):
            await read_all(media_store, key)
        with pytest.raises(MediaNotFound):
            await read_all(media_store, key, 5, 10)

    async def test_a_large_object_round_trips_byte_exactly(self, media_store: MediaStore) -> None:
        key = media_key()
        digest, offset = hashlib.sha256(), 0
        for _ in range(3):  # 12 MiB in 1 MiB chunks over three appends
            pieces = [os.urandom(MiB) for _ in range(4)]
            for piece in pieces:
                digest.update(piece)
            offset = await media_store.append(key, offset, chunks_of(*pieces))
        assert offset == 12 * MiB
        await media_store.finish_upload(key, offset)
        assert await media_store.size(key) == 12 * MiB
        read_back = hashlib.sha256()
        async for piece in media_store.read(key):
            read_back.update(piece)
        assert read_back.hexdigest() == digest.hexdigest()

    async def test_a_large_put_round_trips_byte_exactly(self, media_store: MediaStore) -> None:
        key = media_key("render", ext="mp4")
        data = os.urandom(11 * MiB + 12345)
        assert await media_store.put(key, chunks_of(*_split(data, 700_000))) == len(data)
        middle = await read_all(media_store, key, 5 * MiB - 3, 9 * MiB + 7)
        assert middle == data[5 * MiB - 3 : 9 * MiB + 7]
        whole = hashlib.sha256()
        async for piece in media_store.read(key):
            whole.update(piece)
        assert whole.hexdigest() == hashlib.sha256(data).hexdigest()

    # -- deleting ------------------------------------------------------------------------------
    async def test_delete_exact_keys(self, media_store: MediaStore) -> None:
        gone, kept = media_key(submission="ws_1/sub_1"), media_key(submission="ws_1/sub_1")
        for key in (gone, kept):
            await media_store.put(key, chunks_of(b"object"))
            await media_store.append(key, 0, chunks_of(b"upload"))
        await media_store.delete([gone, media_key()])  # a missing key is no error
        assert await media_store.size(gone) is None
        with pytest.raises(MediaNotFound):
            await media_store.finish_upload(gone, 6)
        assert await read_all(media_store, kept) == b"object"
        await media_store.finish_upload(kept, 6)
        assert await read_all(media_store, kept) == b"upload"

    async def test_delete_a_prefix_leaves_its_siblings(self, media_store: MediaStore) -> None:
        workspace = f"ws_{secrets.token_hex(4)}"
        erased = f"{workspace}/sub_1"
        objects = [media_key(submission=erased), f"{erased}/renders/render_1.mp4"]
        upload = media_key(submission=erased)
        siblings = [
            media_key(submission=f"{workspace}/sub_10"),
            f"{workspace}/sub_1.mp4",
            media_key(submission=f"ws_{secrets.token_hex(4)}/sub_1"),
        ]
        sibling_upload = media_key(submission=f"{workspace}/sub_10")
        for key in objects + siblings:
            await media_store.put(key, chunks_of(key.encode()))
        for key in (upload, sibling_upload):
            await media_store.append(key, 0, chunks_of(b"partial"))

        await media_store.delete([f"{erased}/"])

        for key in objects:
            assert await media_store.size(key) is None, key
        with pytest.raises(MediaNotFound):
            await media_store.finish_upload(upload, 7)
        for key in siblings:
            assert await read_all(media_store, key) == key.encode(), key
        await media_store.finish_upload(sibling_upload, 7)
        assert await read_all(media_store, sibling_upload) == b"partial"
        await media_store.delete([f"{erased}/"])  # nothing left: still no error
        await media_store.put(objects[0], chunks_of(b"again"))
        assert await read_all(media_store, objects[0]) == b"again"

    # -- keys ----------------------------------------------------------------------------------
    @pytest.mark.parametrize(
        "bad_key",
        ["", "../etc/passwd", "/etc/passwd", "ws_1/../../x", "ws_1//x", "ws_1\\x", "ws_1/x/"],
    )
    async def test_keys_that_could_escape_are_refused(
        self, media_store: MediaStore, bad_key: str
    ) -> None:
        with pytest.raises(ValueError):
            await media_store.append(bad_key, 0, chunks_of(b"x"))
        with pytest.raises(ValueError):
            await media_store.put(bad_key, chunks_of(b"x"))
        with pytest.raises(ValueError):
            await read_all(media_store, bad_key)
        with pytest.raises(ValueError):
            await media_store.size(bad_key)
        with pytest.raises(ValueError):
            await media_store.finish_upload(bad_key, 0)
        with pytest.raises(ValueError):
            await media_store.abort_upload(bad_key)

    @pytest.mark.parametrize("bad_prefix", ["/", "../", "ws_1/../", "/ws_1/", "ws_1//", "ws_1\\x/"])
    async def test_prefixes_that_could_escape_are_refused(
        self, media_store: MediaStore, bad_prefix: str
    ) -> None:
        with pytest.raises(ValueError):
            await media_store.delete([bad_prefix])

    # -- playback ------------------------------------------------------------------------------
    async def test_playback_url_serves_the_object_or_is_none(self, media_store: MediaStore) -> None:
        import aiohttp  # a dependency of the core, imported only by the test that needs it

        key = media_key()
        data = os.urandom(100_000)
        await media_store.put(key, chunks_of(data))
        expires_at = datetime.now(UTC) + timedelta(minutes=10)
        url = await media_store.playback_url(key, expires_at=expires_at, content_type="video/webm")
        if url is None:
            return  # the store cannot sign: RavePilot serves it through its own /media route
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as response:
                assert response.status == 200
                assert await response.read() == data
            async with session.get(url, headers={"Range": "bytes=1000-1999"}) as response:
                assert response.status == 206
                assert await response.read() == data[1000:2000]
