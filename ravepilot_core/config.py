"""Settings from ``RAVEPILOT_*`` environment variables, with the embedded defaults."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import msgspec

from ravepilot_core.errors import ConfigurationError

__all__ = ["Settings"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _decode_path(type_: type, value: object) -> object:
    """Let msgspec turn strings (environment values) into ``Path`` fields."""
    if type_ is Path and isinstance(value, str | Path):
        return Path(value)
    raise NotImplementedError(f"cannot convert {value!r} to {type_}")


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    """Everything an operator configures; see docs/configuration.md."""

    data_dir: Path = Path("./ravepilot-data")
    database_url: str | None = None
    mailer_url: str | None = None
    mail_from: str = "RavePilot <noreply@localhost>"
    media_url: str | None = None
    # "none" switches transcription (or rendering) off.
    transcriber_url: str = "sphinx://"
    renderer_url: str = "ffmpeg://"
    public_url: str = "http://127.0.0.1:8000"
    secret_key: str | None = None
    allow_private_webhooks: bool = False
    max_body_bytes: int = 1024 * 1024
    # The largest clip a customer may upload (a file picked instead of recording can be big).
    max_clip_bytes: Annotated[int, msgspec.Meta(ge=1)] = 1024**3
    # Requests a minute to the public portal routes per invite link (and 4x per address).
    portal_rate_limit: Annotated[int, msgspec.Meta(ge=1)] = 600
    # Webhook requests a worker keeps in flight, in all and to any one endpoint.
    webhook_concurrency: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 256
    webhook_per_endpoint: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 64

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read the ``RAVEPILOT_*`` variables; ``overrides`` (CLI flags) win over them."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name in cls.__struct_fields__:
            raw = env.get(f"RAVEPILOT_{name.upper()}")
            if raw is not None:
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(values.get("allow_private_webhooks"), str):
            flag = str(values["allow_private_webhooks"]).strip().lower()
            if flag not in _TRUE | _FALSE:
                raise ConfigurationError(
                    f"RAVEPILOT_ALLOW_PRIVATE_WEBHOOKS must be true or false, got {flag!r}"
                )
            values["allow_private_webhooks"] = flag in _TRUE
        try:
            settings = msgspec.convert(values, cls, strict=False, dec_hook=_decode_path)
        except msgspec.ValidationError as exc:
            raise ConfigurationError(f"invalid setting: {exc}") from None
        if not settings.public_url.startswith(("http://", "https://")):
            raise ConfigurationError(
                "RAVEPILOT_PUBLIC_URL must start with http:// or https://, "
                f"got {settings.public_url!r}"
            )
        return settings

    @property
    def resolved_database_url(self) -> str:
        """The storage URL, defaulting to SQLite in the data dir."""
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'ravepilot.db'}"

    @property
    def resolved_mailer_url(self) -> str:
        """The mailer URL, defaulting to the outbox in the data dir."""
        return self.mailer_url or f"outbox://{self.data_dir.resolve() / 'outbox'}"

    @property
    def resolved_media_url(self) -> str:
        """The media URL, defaulting to local files in the data dir."""
        return self.media_url or f"file://{self.data_dir.resolve() / 'media'}"

    def load_secret_key(self) -> str:
        """Return the secret key, generating ``<data_dir>/secret.key`` (mode 0600) on first run."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret.key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        # O_EXCL: two processes starting at once must not both write (and disagree on) a key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
        return key
