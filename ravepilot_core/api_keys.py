"""Workspace API keys: minted once, stored as a hash, scoped, revocable."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from datetime import timedelta

from ravepilot_core.context import Context
from ravepilot_core.crypto import API_KEY_PREFIX, hash_secret, new_api_key
from ravepilot_core.errors import AuthenticationFailed, InvalidRequest, NotFound, PermissionDenied
from ravepilot_core.ids import new_id
from ravepilot_core.models import ALL_SCOPES, ApiKey, Principal, Scope

__all__ = ["ApiKeyService", "require_scope"]

# Writing last_used_at on every request would turn every read into a write; once a minute per key
# is as precise as anyone reading "last used" needs.
_TOUCH_INTERVAL = timedelta(minutes=1)


def require_scope(principal: Principal, scope: Scope) -> None:
    """Raise PermissionDenied unless the caller's key carries ``scope``."""
    if scope not in principal.scopes:
        raise PermissionDenied(
            f"this API key lacks the {scope!r} scope; create a key with --scope {scope}"
        )


class ApiKeyService:
    """Create, authenticate and revoke API keys."""

    def __init__(self, context: Context) -> None:
        self._ctx = context

    async def create(
        self, workspace_id: str, scopes: Iterable[str] = ALL_SCOPES, name: str = ""
    ) -> tuple[ApiKey, str]:
        """Mint a key; returns the stored record and the plaintext key (shown once)."""
        chosen = tuple(dict.fromkeys(scopes)) or ALL_SCOPES
        unknown = [s for s in chosen if s not in ALL_SCOPES]
        if unknown:
            raise InvalidRequest(
                f"unknown scope(s) {', '.join(unknown)}; valid scopes are {', '.join(ALL_SCOPES)}"
            )
        if await self._ctx.storage.get_workspace(workspace_id) is None:
            raise NotFound(f"no workspace {workspace_id!r}")
        plaintext = new_api_key()
        now = self._ctx.clock.now()
        key = ApiKey(
            id=new_id("key", now),
            workspace_id=workspace_id,
            name=name,
            prefix=plaintext[: len(API_KEY_PREFIX) + 4],
            key_hash=hash_secret(plaintext),
            scopes=tuple(s for s in ALL_SCOPES if s in chosen),
            created_at=now,
        )
        await self._ctx.storage.create_api_key(key)
        return key, plaintext

    async def authenticate(self, presented: str | None) -> Principal:
        """Return who holds ``presented``; raise AuthenticationFailed for anything else."""
        if not presented:
            raise AuthenticationFailed(
                "missing API key: send 'Authorization: Bearer rp_live_...' "
                "or 'X-API-Key: rp_live_...'"
            )
        if not presented.startswith("rp_") or len(presented) > 200:
            raise AuthenticationFailed("malformed API key: keys start with rp_")
        presented_hash = hash_secret(presented)
        key = await self._ctx.storage.get_api_key_by_hash(presented_hash)
        # The look-up is by hash, so timing reveals nothing about the key; compare anyway.
        if key is None or not hmac.compare_digest(key.key_hash, presented_hash):
            raise AuthenticationFailed("unknown API key")
        if key.revoked_at is not None:
            raise AuthenticationFailed("this API key was revoked")
        now = self._ctx.clock.now()
        last = key.last_used_at
        if last is None or now - last >= _TOUCH_INTERVAL:
            await self._ctx.storage.touch_api_key(key.id, now)
        return Principal(workspace_id=key.workspace_id, key_id=key.id, scopes=frozenset(key.scopes))

    async def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key at once; revoking twice keeps the first time."""
        key = await self._ctx.storage.revoke_api_key(key_id, self._ctx.clock.now())
        if key is None:
            raise NotFound(f"no API key {key_id!r}")
        return key

    async def list(self, workspace_id: str) -> list[ApiKey]:
        """Return the workspace's keys, newest first."""
        return await self._ctx.storage.list_api_keys(workspace_id)
