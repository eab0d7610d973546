"""RavePilot's S3 media store: ``RAVEPILOT_MEDIA_URL=s3://bucket/prefix?region=eu-west-1``.

Installed, it serves the ``s3`` scheme of the ``ravepilot.media`` entry-point group, so the core
finds it by URL; any S3-compatible server works through ``endpoint_url``::

    media = await open_backend("media", "s3://clips/ravepilot?endpoint_url=http://127.0.0.1:9000")

Credentials come from the standard ``AWS_*`` environment variables.
"""

from __future__ import annotations

from ravepilot_s3.settings import S3Settings, parse_s3_url
from ravepilot_s3.store import MAX_URL_LIFETIME, PART_SIZE, S3MediaStore, open_s3_media

__all__ = [
    "MAX_URL_LIFETIME",
    "PART_SIZE",
    "S3MediaStore",
    "S3Settings",
    "open_s3_media",
    "parse_s3_url",
]
