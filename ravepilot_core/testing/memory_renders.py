"""The renders half of :class:`~ravepilot_core.testing.MemoryStorage`."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from ravepilot_core.errors import Conflict
from ravepilot_core.models import EventRecord, Job, RenderRecord
from ravepilot_core.testing.memory_tables import MemoryTables, stored_copy

__all__ = ["MemoryRenders"]


class MemoryRenders(MemoryTables):
    """Renders kept in memory, with the SQL storage's semantics."""

    def __init__(self) -> None:
        super().__init__()
        self._renders: dict[str, RenderRecord] = {}

    async def create_render(self, render: RenderRecord, *, jobs: Sequence[Job] = ()) -> None:
        """Store a queued render with its job."""
        async with self._locked():
            if render.id in self._renders:
                raise Conflict(f"render {render.id} exists")
            self._check_new_events_and_jobs((), jobs)
            self._renders[render.id] = stored_copy(render)
            self._write_jobs(jobs)

    async def get_render(self, workspace_id: str, render_id: str) -> RenderRecord | None:
        """Return the render if it belongs to the workspace."""
        async with self._locked():
            render = self._renders.get(render_id)
            return render if render and render.workspace_id == workspace_id else None

    async def list_renders(self, submission_ids: Sequence[str]) -> list[RenderRecord]:
        """Return the submissions' renders, oldest first."""
        async with self._locked():
            wanted = set(submission_ids)
            return sorted(
                (r for r in self._renders.values() if r.submission_id in wanted),
                key=lambda r: r.id,
            )

    async def update_render(
        self, render: RenderRecord, *, events: Sequence[EventRecord] = ()
    ) -> bool:
        """Store a render's progress; a success makes its submission rendered."""
        async with self._locked():
            stored = self._renders.get(render.id)
            if stored is None:
                return False
            self._check_new_events_and_jobs(events, ())
            self._renders[render.id] = stored_copy(
                msgspec.structs.replace(
                    stored,
                    status=render.status,
                    duration_ms=render.duration_ms,
                    media_key=render.media_key,
                    error=render.error,
                    finished_at=render.finished_at,
                )
            )
            submission = self._submissions.get(render.submission_id)
            if (
                render.status == "succeeded"
                and submission is not None
                and submission.status in ("submitted", "reviewed")
                and render.finished_at is not None
            ):
                self._submissions[submission.id] = self._normalised_submission(
                    msgspec.structs.replace(
                        submission, status="rendered", updated_at=render.finished_at
                    )
                )
            self._write_events(events)
            return True
