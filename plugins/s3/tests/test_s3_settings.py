"""Reading s3:// URLs, and the errors that say what to fix."""

from __future__ import annotations

from datetime import timedelta

import obstore
import pytest

from ravepilot_core.backends import open_backend
from ravepilot_core.errors import ConfigurationError
from ravepilot_s3 import S3MediaStore, S3Settings, open_s3_media, parse_s3_url


@pytest.mark.parametrize(
    ("url", "settings"),
    [
        ("s3://clips", S3Settings("clips")),
        ("s3://clips/", S3Settings("clips")),
        ("s3://clips/ravepilot/media/", S3Settings("clips", "ravepilot/media")),
        (
            "s3://acme.clips-2/rp?region=eu-west-1",
            S3Settings("acme.clips-2", "rp", region="eu-west-1"),
        ),
        (
            "s3://clips?endpoint_url=http://127.0.0.1:9000/&region=auto",
            S3Settings("clips", endpoint_url="http://127.0.0.1:9000", region="auto"),
        ),
        (
            "s3://clips?endpoint_url=https%3A%2F%2Fs3.example.com",
            S3Settings("clips", endpoint_url="https://s3.example.com"),
        ),
    ],
)
def test_good_urls(url: str, settings: S3Settings) -> None:
    assert parse_s3_url(url) == settings


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("s3://", "names no bucket; write it like s3://my-bucket/ravepilot"),
        ("s3:///prefix", "names no bucket"),
        ("s3://clips?endpoint=http://x", "unknown parameter 'endpoint'.*endpoint_url, region"),
        ("s3://clips?access_key=AKIA", "unknown parameter 'access_key'.*AWS_ACCESS_KEY_ID"),
        ("s3://clips?region=eu-west-1&region=us-east-1", "region is given twice"),
        ("s3://clips?region=EU%20West", "region='EU West' is not a region name.*eu-west-1"),
        ("s3://clips?region=eu_west_1", "region='eu_west_1' is not a region name"),
        ("s3://clips?region=", "region='' is not a region name"),
        ("s3://AKIA:secret@clips", "must not hold credentials.*AWS_SECRET_ACCESS_KEY"),
        ("s3://clips:9000", "takes no port.*endpoint_url=http://host:port"),
        ("s3://Clips", "'Clips' is not a bucket name: 3 to 63 lowercase"),
        ("s3://ab", "'ab' is not a bucket name"),
        ("s3://my_bucket", "'my_bucket' is not a bucket name"),
        ("s3://a..b", "'a..b' is not a bucket name"),
        ("s3://clips/../other", "the prefix '../other'"),
        ("s3://clips/a//b", "the prefix 'a//b'"),
        ("s3://clips/.hidden", "the prefix '.hidden'"),
        ("s3://clips?endpoint_url=127.0.0.1:9000", "must be the S3 API's http:// or https://"),
        ("s3://clips?endpoint_url=ftp://host", "must be the S3 API's http:// or https://"),
        ("s3://clips?endpoint_url=http://host:port", "has a port that is not a number"),
        ("s3://clips?endpoint_url=http://host/?x=1", "takes no query"),
        ("s3://clips#frag", "takes no #fragment"),
        ("gs://clips", "not an s3:// URL"),
    ],
)
def test_bad_urls_say_what_to_fix(url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=f"^RAVEPILOT_MEDIA_URL: .*{problem}"):
        parse_s3_url(url)


def test_the_factory_refuses_bad_urls_too() -> None:
    with pytest.raises(ConfigurationError, match="names no bucket"):
        open_s3_media("s3://")


@pytest.mark.anyio
async def test_open_backend_passes_the_error_on() -> None:
    with pytest.raises(ConfigurationError, match="unknown parameter 'bucket'"):
        await open_backend("media", "s3://clips?bucket=x")


def _signed(store: S3MediaStore) -> str:
    return obstore.sign(store.store, "GET", "ws_1/clip.webm", timedelta(minutes=1))


def test_the_store_uses_the_url_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    store = open_s3_media("s3://clips/rp?endpoint_url=http://127.0.0.1:9000&region=eu-west-1")
    assert store.store.prefix == "rp"
    assert store.store.client_options == {"allow_http": "true"}
    url = _signed(store)
    assert url.startswith("http://127.0.0.1:9000/clips/rp/ws_1/clip.webm?")
    assert "%2Feu-west-1%2Fs3%2F" in url  # the URL's region wins over the environment's
    assert "Credential=AKIATEST%2F" in url  # the credentials come from the environment


def test_without_a_region_the_environment_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    store = open_s3_media("s3://clips")
    assert not store.store.client_options  # https only
    url = _signed(store)
    assert url.startswith("https://")
    assert "%2Fus-west-2%2Fs3%2F" in url
