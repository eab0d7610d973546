"""The S3 media store passes the whole MediaStore contract against moto_server."""

from __future__ import annotations

import pytest

from ravepilot_core.testing import MediaStoreContract
from ravepilot_s3 import S3MediaStore


class TestS3MediaStore(MediaStoreContract):
    """Under a fresh prefix of the session's bucket."""

    @pytest.fixture
    def media_store(self, s3_store: S3MediaStore) -> S3MediaStore:
        return s3_store
