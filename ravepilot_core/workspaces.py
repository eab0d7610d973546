"""Workspaces (tenants), each created with its primary collector."""

from __future__ import annotations

import re

import msgspec

from ravepilot_core.collectors import default_collector
from ravepilot_core.context import Context
from ravepilot_core.errors import InvalidRequest, NotFound
from ravepilot_core.ids import new_id
from ravepilot_core.invitations import normalise_email
from ravepilot_core.models import Workspace

__all__ = ["WorkspaceService"]

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class WorkspaceService:
    """Create and look up workspaces."""

    def __init__(self, context: Context) -> None:
        self._ctx = context

    async def create(
        self, slug: str, name: str | None = None, *, notify_email: str | None = None
    ) -> Workspace:
        """Create a workspace and its primary collector; a taken slug is a Conflict.

        ``notify_email`` receives operator notices, such as a webhook endpoint being disabled.
        """
        if not _SLUG.match(slug):
            raise InvalidRequest(
                f"invalid workspace slug {slug!r}: use 1-63 lowercase letters, digits and dashes, "
                "starting with a letter or digit"
            )
        now = self._ctx.clock.now()
        display_name = name or slug
        workspace = Workspace(
            id=new_id("ws", now),
            slug=slug,
            name=display_name,
            created_at=now,
            notify_email=_checked_notify_email(notify_email),
        )
        await self._ctx.storage.create_workspace(workspace, default_collector(display_name, now))
        return workspace

    async def update(
        self, slug: str, *, name: str | None = None, notify_email: str | None = None
    ) -> Workspace:
        """Change the name and/or notify email (an empty notify email clears it)."""
        workspace = await self.get_by_slug(slug)
        changes: dict[str, str | None] = {}
        if name is not None:
            if not name.strip():
                raise InvalidRequest("name must not be empty")
            changes["name"] = name.strip()
        if notify_email is not None:
            changes["notify_email"] = _checked_notify_email(notify_email)
        updated = msgspec.structs.replace(workspace, **changes)
        await self._ctx.storage.update_workspace(updated)
        return updated

    async def get_by_slug(self, slug: str) -> Workspace:
        """Return the workspace with ``slug`` or raise NotFound."""
        workspace = await self._ctx.storage.get_workspace_by_slug(slug)
        if workspace is None:
            raise NotFound(f"no workspace with slug {slug!r}")
        return workspace


def _checked_notify_email(address: str | None) -> str | None:
    if address is None or not address.strip():
        return None
    try:
        return normalise_email(address)
    except InvalidRequest as exc:
        raise InvalidRequest(exc.message.replace("customer_email", "notify email")) from None
