"""Renders in the SQL storage: queued by the API, finished by the render job."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from ravepilot_core.clock import utc_from_ms
from ravepilot_core.models import EventRecord, Job, RenderRecord
from ravepilot_core.sql import rows
from ravepilot_core.sql.statements import SQLStatements, placeholders

__all__ = ["RenderQueries", "render_from_row", "render_row"]

ms = rows.ms
_ids_decoder = msgspec.json.Decoder(tuple[str, ...])


def render_row(render: RenderRecord) -> dict[str, Any]:
    """Return the column values of a render."""
    return {
        "id": render.id,
        "workspace_id": render.workspace_id,
        "submission_id": render.submission_id,
        "format": render.format,
        "status": render.status,
        "clip_ids": msgspec.json.encode(render.clip_ids).decode(),
        "duration_ms": render.duration_ms,
        "media_key": render.media_key,
        "error": render.error,
        "created_at": ms(render.created_at),
        "finished_at": ms(render.finished_at),
    }


def render_from_row(row: Mapping[str, Any]) -> RenderRecord:
    """Build a RenderRecord from its row."""
    return RenderRecord(
        id=row["id"],
        workspace_id=row["workspace_id"],
        submission_id=row["submission_id"],
        format=row["format"],
        status=row["status"],
        clip_ids=_ids_decoder.decode(row["clip_ids"]),
        duration_ms=row["duration_ms"],
        media_key=row["media_key"],
        error=row["error"],
        created_at=utc_from_ms(row["created_at"]),
        finished_at=None if row["finished_at"] is None else utc_from_ms(row["finished_at"]),
    )


class RenderQueries(SQLStatements):
    """The renders half of the Storage protocol, for SQLStorage."""

    async def create_render(self, render: RenderRecord, *, jobs: Sequence[Job] = ()) -> None:
        """Insert a render with the job that makes it."""
        async with self.engine.transaction():
            await self._insert("rp_renders", [render_row(render)])
            await self._write_jobs(jobs)

    async def get_render(self, workspace_id: str, render_id: str) -> RenderRecord | None:
        """Select one render of the workspace."""
        row = await self._one(
            "SELECT * FROM rp_renders WHERE id = {} AND workspace_id = {}",
            render_id,
            workspace_id,
        )
        return render_from_row(row) if row else None

    async def list_renders(self, submission_ids: Sequence[str]) -> list[RenderRecord]:
        """Select the renders of the submissions, oldest first."""
        if not submission_ids:
            return []
        found = await self._all(
            "SELECT * FROM rp_renders "
            f"WHERE submission_id IN ({placeholders(len(submission_ids))}) ORDER BY id",
            *submission_ids,
        )
        return [render_from_row(row) for row in found]

    async def update_render(
        self, render: RenderRecord, *, events: Sequence[EventRecord] = ()
    ) -> bool:
        """Write a render's progress; a success makes its submission ``rendered``."""
        async with self.engine.transaction():
            updated = await self._all(
                "UPDATE rp_renders SET status = {}, duration_ms = {}, media_key = {}, error = {}, "
                "finished_at = {} WHERE id = {} RETURNING id",
                render.status,
                render.duration_ms,
                render.media_key,
                render.error,
                ms(render.finished_at),
                render.id,
            )
            if not updated:
                return False
            if render.status == "succeeded":
                await self._all(
                    "UPDATE rp_submissions SET status = 'rendered', updated_at = {} "
                    "WHERE id = {} AND status IN ('submitted', 'reviewed')",
                    ms(render.finished_at),
                    render.submission_id,
                )
            await self._write_events(events)
        return True
