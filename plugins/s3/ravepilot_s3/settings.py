"""Read ``s3://bucket/prefix?endpoint_url=https://…&region=eu-west-1``.

Every mistake is a :class:`~ravepilot_core.errors.ConfigurationError` raised at start-up with a
message that says what to write instead. Credentials never go in the URL: like every AWS tool,
the store reads ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``,
``AWS_REGION``, ...) from the environment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlsplit

from obstore.exceptions import BaseError as ObstoreError
from obstore.store import S3Store

from ravepilot_core.errors import ConfigurationError
from ravepilot_core.filemedia import check_media_key

if TYPE_CHECKING:  # obstore's typed dicts exist only in its stubs
    from obstore.store import ClientConfig, S3Config

__all__ = ["S3Settings", "make_s3_store", "parse_s3_url"]

_EXAMPLE = "s3://my-bucket/ravepilot?region=eu-west-1"
_PARAMETERS = ("endpoint_url", "region")
# S3's bucket naming rules (the ones every S3-compatible server accepts too).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# AWS regions (eu-west-1) and the names other servers use (auto, garage, us-east-1 on MinIO).
_REGION = re.compile(r"[a-z0-9][a-z0-9-]{0,49}")


@dataclass(frozen=True)
class S3Settings:
    """Which bucket and prefix to use, and where the S3 API is, as read from the URL.

    Attributes:
        bucket: The bucket; it must exist already.
        prefix: Where under the bucket RavePilot's keys go (``""`` for the bucket's root).
        endpoint_url: The S3 API of another provider or server (MinIO, R2, Garage, ...), or
            None for AWS itself.
        region: The region, or None to take ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` (and
            ``us-east-1`` without either).
    """

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None


def _fail(problem: str) -> ConfigurationError:
    return ConfigurationError(f"RAVEPILOT_MEDIA_URL: {problem}")


def _query(query: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in _PARAMETERS:
            raise _fail(
                f"unknown parameter {name!r} in the s3:// URL; the known ones are "
                f"{', '.join(_PARAMETERS)} (credentials come from AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY in the environment)"
            )
        if name in values:
            raise _fail(f"{name} is given twice in the s3:// URL; keep one")
        values[name] = value
    return values


def _bucket(netloc: str) -> str:
    if "@" in netloc:
        raise _fail(
            "the s3:// URL must not hold credentials; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY in the environment instead"
        )
    if not netloc:
        raise _fail(f"the s3:// URL names no bucket; write it like {_EXAMPLE}")
    if ":" in netloc:
        raise _fail(
            f"the s3:// URL's host is the bucket and takes no port ({netloc!r}); put the "
            "server's address in endpoint_url=http://host:port"
        )
    if not _BUCKET.fullmatch(netloc) or ".." in netloc:
        raise _fail(
            f"{netloc!r} is not a bucket name: 3 to 63 lowercase letters, digits, '.' and '-', "
            "starting and ending with a letter or digit"
        )
    return netloc


def _prefix(path: str) -> str:
    prefix = unquote(path).strip("/")
    if prefix:
        try:
            check_media_key(prefix)
        except ValueError:
            raise _fail(
                f"the prefix {prefix!r} in the s3:// URL must be '/'-separated names of "
                "A-Z a-z 0-9 . _ - that do not start with '.', e.g. s3://my-bucket/ravepilot/media"
            ) from None
    return prefix


def _endpoint(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _fail(
            f"endpoint_url={value!r} must be the S3 API's http:// or https:// address, e.g. "
            "endpoint_url=https://s3.eu-central-003.backblazeb2.com or http://127.0.0.1:9000"
        )
    if parts.query or parts.fragment or parts.username:
        raise _fail(f"endpoint_url={value!r} takes no query, fragment or credentials")
    try:
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError:
        raise _fail(f"endpoint_url={value!r} has a port that is not a number") from None
    return value.rstrip("/")


def _region(value: str | None) -> str | None:
    if value is None:
        return None
    if not _REGION.fullmatch(value):
        raise _fail(
            f"region={value!r} is not a region name; write it like region=eu-west-1 "
            "(lowercase letters, digits and '-'; 'auto' for Cloudflare R2)"
        )
    return value


def parse_s3_url(url: str) -> S3Settings:
    """Read an ``s3://`` URL into :class:`S3Settings`.

    Args:
        url: ``s3://BUCKET[/PREFIX][?endpoint_url=URL][&region=REGION]``.

    Returns:
        The settings.

    Raises:
        ConfigurationError: Saying what to fix.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "s3":
        raise _fail(f"not an s3:// URL: {url!r}; write it like {_EXAMPLE}")
    if parts.fragment:
        raise _fail("the s3:// URL takes no #fragment")
    query = _query(parts.query)
    return S3Settings(
        bucket=_bucket(parts.netloc),
        prefix=_prefix(parts.path),
        endpoint_url=_endpoint(query.get("endpoint_url")),
        region=_region(query.get("region")),
    )


def make_s3_store(settings: S3Settings) -> S3Store:
    """Create obstore's S3 client for ``settings``; the rest comes from ``AWS_*`` variables.

    Raises:
        ConfigurationError: If obstore refuses the configuration.
    """
    config: S3Config = {}
    if settings.endpoint_url is not None:
        config["endpoint"] = settings.endpoint_url
    if settings.region is not None:
        config["region"] = settings.region
    client: ClientConfig = {}
    if (settings.endpoint_url or "").startswith("http://"):
        client["allow_http"] = True  # the URL asked for plain HTTP (a server on loopback)
    try:
        return S3Store(
            settings.bucket, prefix=settings.prefix or None, config=config, client_options=client
        )
    except (ObstoreError, ValueError) as exc:
        raise _fail(f"the S3 settings are unusable: {exc}") from None
