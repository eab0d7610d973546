"""Secrets: API keys, invite tokens and webhook secrets, and the keys that protect them.

Everything derives from the one server secret (``RAVEPILOT_SECRET_KEY``) with HKDF, one key per
purpose, so leaking one derived key exposes nothing else. What the database holds:

- API keys and invite tokens: a SHA-256 hash only (both carry >= 256 random or keyed bits, so a
  plain hash is enough and keeps look-ups a single indexed equality).
- webhook secrets: AES-GCM ciphertext, because they must be read back to sign deliveries;
- responses kept for ``Idempotency-Key`` replays: AES-GCM too, since one may hold a secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ravepilot_core.errors import ConfigurationError

__all__ = [
    "API_KEY_PREFIX",
    "Keyring",
    "hash_secret",
    "new_api_key",
    "new_webhook_secret",
]

API_KEY_PREFIX = "rp_live_"
WEBHOOK_SECRET_PREFIX = "whsec_"
_CIPHERTEXT_VERSION = "v1"


def hash_secret(secret: str) -> str:
    """Return the hex SHA-256 of a high-entropy secret (API key or invite token)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_api_key() -> str:
    """Return a new API key: ``rp_live_`` and 256 random bits, URL-safe."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def new_webhook_secret() -> str:
    """Return a new ``whsec_`` secret: base64 of 32 random bytes (the Standard Webhooks form)."""
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(os.urandom(32)).decode()


class Keyring:
    """The purpose-bound keys derived from the server secret."""

    def __init__(self, secret_key: str | bytes) -> None:
        material = secret_key.encode() if isinstance(secret_key, str) else secret_key
        if len(material) < 32:
            raise ConfigurationError(
                "RAVEPILOT_SECRET_KEY must be at least 32 characters; "
                "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        self._secrets_aead = AESGCM(self._derive(material, b"ravepilot/webhook-secrets"))
        self._responses_aead = AESGCM(self._derive(material, b"ravepilot/stored-responses"))
        self._invite_key = self._derive(material, b"ravepilot/invite-tokens")
        self._media_key = self._derive(material, b"ravepilot/media-urls")

    @staticmethod
    def _derive(material: bytes, purpose: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(material)

    @staticmethod
    def _seal(aead: AESGCM, plaintext: bytes) -> str:
        nonce = os.urandom(12)
        sealed = aead.encrypt(nonce, plaintext, None)
        return f"{_CIPHERTEXT_VERSION}:{base64.b64encode(nonce + sealed).decode()}"

    @staticmethod
    def _open(aead: AESGCM, ciphertext: str, what: str) -> bytes:
        version, _, encoded = ciphertext.partition(":")
        if version != _CIPHERTEXT_VERSION:
            raise ConfigurationError(f"unknown ciphertext version {version!r} of a stored {what}")
        raw = base64.b64decode(encoded)
        try:
            return aead.decrypt(raw[:12], raw[12:], None)
        except InvalidTag:
            raise ConfigurationError(
                f"a stored {what} cannot be decrypted: RAVEPILOT_SECRET_KEY changed since it "
                "was stored; restore the previous key"
            ) from None

    def encrypt(self, plaintext: str) -> str:
        """Encrypt a webhook secret for storage (random 96-bit nonce, AES-256-GCM)."""
        return self._seal(self._secrets_aead, plaintext.encode())

    def decrypt(self, ciphertext: str) -> str:
        """Decrypt what :meth:`encrypt` produced; a wrong server secret is a ConfigurationError."""
        return self._open(self._secrets_aead, ciphertext, "webhook secret").decode()

    def seal_response(self, body: bytes) -> bytes:
        """Encrypt a response kept for replay: it may hold a secret shown only once."""
        return self._seal(self._responses_aead, body).encode()

    def open_response(self, sealed: bytes) -> bytes:
        """Decrypt what :meth:`seal_response` produced."""
        return self._open(self._responses_aead, sealed.decode(), "response")

    def invite_token(self, submission_id: str) -> str:
        """Return the submission's invite token: always the same, unguessable without the key."""
        # hmac.digest is the one-shot C path: a page of 50 submissions derives 50 tokens.
        digest = hmac.digest(self._invite_key, submission_id.encode(), "sha256")
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def media_signature(self, key: str, expires: int, content_type: str | None = None) -> str:
        """Sign a playback URL for the media ``key`` that works until Unix time ``expires``."""
        message = f"{expires}\n{content_type or ''}\n{key}".encode()
        return hmac.digest(self._media_key, message, "sha256").hex()

    def media_signature_valid(
        self, key: str, expires: int, signature: str, content_type: str | None = None
    ) -> bool:
        """Tell, in constant time, whether ``signature`` is :meth:`media_signature`'s."""
        expected = self.media_signature(key, expires, content_type)
        return hmac.compare_digest(expected, signature)
