"""Embed RavePilot's core in your own async application.

Run it: ``python docs/examples/example_embedding.py``. The test suite runs it too (see the
bottom), so this example cannot rot.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import anyio

from ravepilot_core import InvitationRequest, RavePilot, Settings


async def main(data_dir: Path) -> str:
    # 1. Open the backends. Settings.from_env() reads RAVEPILOT_* variables; here we pass the
    #    data dir explicitly, which gives SQLite, the outbox mailer and local media in it.
    settings = Settings(data_dir=data_dir, secret_key=secrets.token_urlsafe(48))
    async with await RavePilot.from_settings(settings) as ravepilot:
        # 2. A workspace is a tenant; it comes with a primary collector (campaign).
        workspace = await ravepilot.workspaces.create("acme", "Acme Inc.")

        # 3. Invite a customer. Idempotent per email: calling it again returns the same link.
        result = await ravepilot.invitations.create(
            workspace.id,
            InvitationRequest(customer_email="marjorie@acme.com", customer_name="Marjorie"),
        )
        print("recording link:", result.link)

        # 4. The email is a durable job. In a long-running app, run the worker in your task
        #    group: `task_group.start_soon(ravepilot.worker().run)`. Here one pass is enough.
        await ravepilot.worker().run_due()
        submission = await ravepilot.submissions.get(workspace.id, result.submission.id)
        print("invitation email:", submission.invitation_email.status)
        return result.link


if __name__ == "__main__":
    anyio.run(main, Path("ravepilot-example-data"))


def test_example_runs(tmp_path: Path) -> None:
    link = anyio.run(main, tmp_path)
    assert link.startswith("http://127.0.0.1:8000/r/")
    emails = list((tmp_path / "outbox").glob("*.eml"))
    assert len(emails) == 1
    assert link in emails[0].read_text()
