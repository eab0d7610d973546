"""``Idempotency-Key`` handling: replay within 24 h, 409 on another body or while in flight."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import msgspec

from ravepilot_core.context import Context
from ravepilot_core.errors import IdempotencyConflict, InvalidRequest
from ravepilot_core.models import IdempotencyRecord

__all__ = ["IDEMPOTENCY_TTL", "IdempotencyService", "request_fingerprint"]

IDEMPOTENCY_TTL = timedelta(hours=24)
MAX_KEY_LENGTH = 255


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    """Return what must match for a key to replay: the method, the path and the exact body."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class IdempotencyService:
    """Remember the first response to each key per workspace."""

    def __init__(self, context: Context) -> None:
        self._ctx = context

    async def begin(
        self, workspace_id: str, key: str, fingerprint: str
    ) -> IdempotencyRecord | None:
        """Claim ``key``; return the stored response to replay, or None to go ahead.

        Raises IdempotencyConflict when the key was used with another request, or when the first
        request with it is still running.
        """
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise InvalidRequest(f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters")
        now = self._ctx.clock.now()
        existing = await self._ctx.storage.begin_idempotent_request(
            IdempotencyRecord(
                workspace_id=workspace_id,
                key=key,
                fingerprint=fingerprint,
                created_at=now,
                expires_at=now + IDEMPOTENCY_TTL,
            )
        )
        if existing is None:
            return None
        if existing.fingerprint != fingerprint:
            raise IdempotencyConflict(
                "this Idempotency-Key was already used with a different request; "
                "use a new key for a new request"
            )
        if existing.in_flight:
            raise IdempotencyConflict(
                "a request with this Idempotency-Key is still in progress; retry shortly"
            )
        assert existing.response_body is not None
        return msgspec.structs.replace(
            existing, response_body=self._ctx.keyring.open_response(existing.response_body)
        )

    async def complete(self, workspace_id: str, key: str, status: int, body: bytes) -> None:
        """Store the response (encrypted) so later requests with the key replay it."""
        await self._ctx.storage.complete_idempotent_request(
            workspace_id, key, status=status, body=self._ctx.keyring.seal_response(body)
        )

    async def release(self, workspace_id: str, key: str) -> None:
        """Forget the key after a failed request, so the client's retry runs for real."""
        await self._ctx.storage.release_idempotent_request(workspace_id, key)
