"""Secrets: API keys, invite tokens and webhook secrets, and the keys that protect them.

Everything derives from the one server secret (``RAVEPILOT_SECRET_KEY``) with HKDF, one key per
purpose, so leaking one derived key exposes nothing else. What the database holds:

- API keys and invite tokens: a SHA-256 hash only (both carry >= 256 random or keyed bits, so a
  plain hash is enough and keeps look-ups a single indexed equality).
- webhook secrets: AES-GCM ciphertext, because they must be read back to sign deliveries.
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
        self._aead = AESGCM(self._derive(material, b"ravepilot/webhook-secrets"))
        self._invite_key = self._derive(material, b"ravepilot/invite-tokens")
        self._signing_key = self._derive(material, b"ravepilot/signed-urls")

    @staticmethod
    def _derive(material: bytes, purpose: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(material)

    def encrypt(self, plaintext: str) -> str:
        """Encrypt a secret for storage (random 96-bit nonce, AES-256-GCM)."""
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), None)
        return f"{_CIPHERTEXT_VERSION}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, ciphertext: str) -> str:
        """Decrypt what :meth:`encrypt` produced; a wrong server secret is a ConfigurationError."""
        version, _, encoded = ciphertext.partition(":")
        if version != _CIPHERTEXT_VERSION:
            raise ConfigurationError(f"unknown secret ciphertext version {version!r}")
        raw = base64.b64decode(encoded)
        try:
            return self._aead.decrypt(raw[:12], raw[12:], None).decode()
        except InvalidTag:
            raise ConfigurationError(
                "a stored webhook secret cannot be decrypted: RAVEPILOT_SECRET_KEY changed since "
                "it was stored; restore the previous key"
            ) from None

    def invite_token(self, submission_id: str) -> str:
        """Return the submission's invite token: always the same, unguessable without the key."""
        digest = hmac.new(self._invite_key, submission_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def sign(self, message: str) -> str:
        """Return a URL-safe MAC of ``message`` (for signed, expiring URLs)."""
        digest = hmac.new(self._signing_key, message.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
