"""Workspaces (tenants), each created with its primary collector."""

from __future__ import annotations

import re

from ravepilot_core.collectors import default_collector
from ravepilot_core.context import Context
from ravepilot_core.errors import InvalidRequest, NotFound
from ravepilot_core.ids import new_id
from ravepilot_core.models import Workspace

__all__ = ["WorkspaceService"]

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class WorkspaceService:
    """Create and look up workspaces."""

    def __init__(self, context: Context) -> None:
        self._ctx = context

    async def create(self, slug: str, name: str | None = None) -> Workspace:
        """Create a workspace and its primary collector; a taken slug is a Conflict."""
        if not _SLUG.match(slug):
            raise InvalidRequest(
                f"invalid workspace slug {slug!r}: use 1-63 lowercase letters, digits and dashes, "
                "starting with a letter or digit"
            )
        now = self._ctx.clock.now()
        display_name = name or slug
        workspace = Workspace(id=new_id("ws", now), slug=slug, name=display_name, created_at=now)
        await self._ctx.storage.create_workspace(workspace, default_collector(display_name, now))
        return workspace

    async def get_by_slug(self, slug: str) -> Workspace:
        """Return the workspace with ``slug`` or raise NotFound."""
        workspace = await self._ctx.storage.get_workspace_by_slug(slug)
        if workspace is None:
            raise NotFound(f"no workspace with slug {slug!r}")
        return workspace
