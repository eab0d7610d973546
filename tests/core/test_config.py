from __future__ import annotations

import os
from pathlib import Path

import pytest

from ravepilot_core import ConfigurationError, Settings


def test_environment_values_and_flag_overrides(tmp_path: Path) -> None:
    env = {
        "RAVEPILOT_DATA_DIR": str(tmp_path / "data"),
        "RAVEPILOT_PUBLIC_URL": "https://reviews.example.com",
        "RAVEPILOT_ALLOW_PRIVATE_WEBHOOKS": "TRUE",
        "RAVEPILOT_MAIL_FROM": "Acme <hi@acme.test>",
    }
    settings = Settings.from_env(env, mail_from="Override <o@acme.test>", public_url=None)
    assert settings.data_dir == tmp_path / "data"
    assert settings.public_url == "https://reviews.example.com"
    assert settings.allow_private_webhooks is True
    assert settings.mail_from == "Override <o@acme.test>"
    assert (
        settings.resolved_database_url == f"sqlite:///{(tmp_path / 'data').resolve()}/ravepilot.db"
    )
    assert settings.resolved_mailer_url == f"outbox://{(tmp_path / 'data').resolve()}/outbox"


def test_defaults_without_environment() -> None:
    settings = Settings.from_env({})
    assert settings.data_dir == Path("./ravepilot-data")
    assert settings.public_url == "http://127.0.0.1:8000"
    assert settings.allow_private_webhooks is False
    assert (settings.webhook_concurrency, settings.webhook_per_endpoint) == (256, 64)


def test_webhook_concurrency_from_the_environment() -> None:
    env = {"RAVEPILOT_WEBHOOK_CONCURRENCY": "32", "RAVEPILOT_WEBHOOK_PER_ENDPOINT": "8"}
    settings = Settings.from_env(env)
    assert (settings.webhook_concurrency, settings.webhook_per_endpoint) == (32, 8)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RAVEPILOT_ALLOW_PRIVATE_WEBHOOKS": "maybe"}, "must be true or false"),
        ({"RAVEPILOT_PUBLIC_URL": "reviews.example.com"}, "must start with http"),
        ({"RAVEPILOT_MAX_BODY_BYTES": "lots"}, "max_body_bytes"),
        ({"RAVEPILOT_WEBHOOK_PER_ENDPOINT": "0"}, r">= 1 - at `\$.webhook_per_endpoint`"),
        ({"RAVEPILOT_WEBHOOK_CONCURRENCY": "many"}, "webhook_concurrency"),
    ],
)
def test_bad_settings_say_what_to_fix(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env(env)


def test_secret_key_is_generated_once_and_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    first = settings.load_secret_key()
    assert len(first) >= 32
    assert settings.load_secret_key() == first
    mode = os.stat(tmp_path / "data" / "secret.key").st_mode & 0o777
    assert mode == 0o600
    assert Settings(data_dir=tmp_path, secret_key="k" * 40).load_secret_key() == "k" * 40
