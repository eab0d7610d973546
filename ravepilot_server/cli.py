"""The ``ravepilot`` command line: serve, worker, migrate, workspaces, keys, plugins.

Every command reads the ``RAVEPILOT_*`` environment variables; the matching flags override them.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import click

from ravepilot_core import ALL_SCOPES, RavePilot, RavePilotError, Settings, installed_backends
from ravepilot_core.backends import open_backend
from ravepilot_server.process import tune_for_serving

__all__ = ["main"]

T = TypeVar("T")
DEFAULT_WORKSPACE = "default"


def _settings_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the flags that mirror the RAVEPILOT_* variables and build Settings from both."""
    options = [
        click.option("--data-dir", type=click.Path(path_type=Path), help="RAVEPILOT_DATA_DIR"),
        click.option("--database-url", help="RAVEPILOT_DATABASE_URL"),
        click.option("--mailer-url", help="RAVEPILOT_MAILER_URL"),
        click.option("--mail-from", help="RAVEPILOT_MAIL_FROM"),
        click.option("--media-url", help="RAVEPILOT_MEDIA_URL"),
        click.option("--public-url", help="RAVEPILOT_PUBLIC_URL"),
        click.option(
            "--allow-private-webhooks",
            is_flag=True,
            default=None,
            help="RAVEPILOT_ALLOW_PRIVATE_WEBHOOKS (development only)",
        ),
        click.option("--webhook-concurrency", type=int, help="RAVEPILOT_WEBHOOK_CONCURRENCY"),
        click.option("--webhook-per-endpoint", type=int, help="RAVEPILOT_WEBHOOK_PER_ENDPOINT"),
    ]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        names = (
            "data_dir",
            "database_url",
            "mailer_url",
            "mail_from",
            "media_url",
            "public_url",
            "allow_private_webhooks",
            "webhook_concurrency",
            "webhook_per_endpoint",
        )
        overrides = {name: kwargs.pop(name) for name in names}
        try:
            settings = Settings.from_env(**overrides)
        except RavePilotError as exc:
            raise click.ClickException(exc.message) from None
        return command(settings, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


# uvloop (installed with uvicorn[standard], except where it has no build) runs the commands, as
# uvicorn runs `serve` on it: a worker's time is mostly event-loop and socket work, which
# uvloop does for 2-17% less CPU per delivery (benchmarks/README.md).
_HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None


def _run(settings: Settings, action: Callable[[RavePilot], Awaitable[T]]) -> T:
    """Open RavePilot on ``settings``, run ``action``, close; errors become clean CLI errors."""

    async def runner() -> T:
        async with await RavePilot.from_settings(settings) as ravepilot:
            return await action(ravepilot)

    try:
        return anyio.run(runner, backend_options={"use_uvloop": _HAVE_UVLOOP})
    except RavePilotError as exc:
        raise click.ClickException(exc.message) from None


async def initialise(ravepilot: RavePilot) -> str | None:
    """Create the ``default`` workspace and an all-scope key on a fresh install.

    Returns the new key, or None when the workspace already existed.
    """
    if await ravepilot.storage.get_workspace_by_slug(DEFAULT_WORKSPACE) is not None:
        return None
    workspace = await ravepilot.workspaces.create(DEFAULT_WORKSPACE, "Default")
    _, key = await ravepilot.api_keys.create(workspace.id, ALL_SCOPES, name="first key")
    return key


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ravepilot")
def main() -> None:
    """RavePilot: collect customer video testimonials on your own server."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("piccolo").setLevel(logging.WARNING)  # it announces the SQLite version


@main.command()
@_settings_options
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--no-worker", is_flag=True, help="Do not run the background worker in-process.")
def serve(settings: Settings, host: str, port: int, workers: int, no_worker: bool) -> None:
    """Run the API and the customer portal (and the background worker)."""
    import uvicorn

    tune_for_serving()
    key = _run(settings, initialise)
    if key is not None:
        # Printed once, on stdout: only its hash is stored, so it cannot be shown again.
        click.echo(
            "RavePilot is initialised: created the 'default' workspace.\n"
            "Its API key (all scopes), shown only this once; store it now:\n\n"
            f"    {key}\n"
        )
    if workers == 1:
        from ravepilot_server.app import create_app

        uvicorn.run(create_app(settings, run_worker=not no_worker), host=host, port=port)
        return
    # Worker processes build the app themselves from the environment.
    os.environ.update(_environment_for(settings))
    os.environ["RAVEPILOT_RUN_WORKER"] = "false" if no_worker else "true"
    uvicorn.run(
        "ravepilot_server.app:app_from_env", factory=True, host=host, port=port, workers=workers
    )


def _environment_for(settings: Settings) -> dict[str, str]:
    return {
        "RAVEPILOT_DATA_DIR": str(settings.data_dir),
        "RAVEPILOT_DATABASE_URL": settings.resolved_database_url,
        "RAVEPILOT_MAILER_URL": settings.resolved_mailer_url,
        "RAVEPILOT_MAIL_FROM": settings.mail_from,
        "RAVEPILOT_MEDIA_URL": settings.resolved_media_url,
        "RAVEPILOT_PUBLIC_URL": settings.public_url,
        "RAVEPILOT_ALLOW_PRIVATE_WEBHOOKS": str(settings.allow_private_webhooks).lower(),
        "RAVEPILOT_WEBHOOK_CONCURRENCY": str(settings.webhook_concurrency),
        "RAVEPILOT_WEBHOOK_PER_ENDPOINT": str(settings.webhook_per_endpoint),
    }


@main.command()
@_settings_options
def worker(settings: Settings) -> None:
    """Run only the background worker (emails, webhooks, media jobs)."""
    tune_for_serving()

    async def work(ravepilot: RavePilot) -> None:
        async with anyio.create_task_group() as group:
            await group.start(_stop_on_signal, group.cancel_scope)
            click.echo("worker started; Ctrl-C or SIGTERM to stop", err=True)
            await ravepilot.worker(
                webhook_concurrency=settings.webhook_concurrency,
                webhook_per_endpoint=settings.webhook_per_endpoint,
            ).run()

    _run(settings, work)
    click.echo("worker stopped", err=True)


async def _stop_on_signal(
    scope: anyio.CancelScope, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Cancel ``scope`` on SIGTERM or SIGINT: started deliveries finish and are recorded."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for received in signals:
            click.echo(f"{signal.Signals(received).name}: stopping after started work", err=True)
            scope.cancel()
            return


@main.command()
@_settings_options
def migrate(settings: Settings) -> None:
    """Create or upgrade the storage schema."""

    async def run() -> None:
        storage = await open_backend("storage", settings.resolved_database_url)
        try:
            await storage.migrate()
        finally:
            await storage.close()

    try:
        anyio.run(run, backend_options={"use_uvloop": _HAVE_UVLOOP})
    except RavePilotError as exc:
        raise click.ClickException(exc.message) from None
    click.echo("schema is up to date", err=True)


@main.group()
def workspaces() -> None:
    """Manage workspaces."""


@workspaces.command("create")
@_settings_options
@click.argument("slug")
@click.option("--name", help="Display name (defaults to the slug).")
@click.option("--notify-email", help="Where operator notices go (a webhook endpoint disabled...).")
def create_workspace(
    settings: Settings, slug: str, name: str | None, notify_email: str | None
) -> None:
    """Create a workspace; prints its id."""

    async def create(ravepilot: RavePilot) -> str:
        return (await ravepilot.workspaces.create(slug, name, notify_email=notify_email)).id

    click.echo(_run(settings, create))


@workspaces.command("update")
@_settings_options
@click.argument("slug")
@click.option("--name", help="New display name.")
@click.option("--notify-email", help="Where operator notices go; an empty string clears it.")
def update_workspace(
    settings: Settings, slug: str, name: str | None, notify_email: str | None
) -> None:
    """Change a workspace's name or notify email."""

    async def update(ravepilot: RavePilot) -> str:
        workspace = await ravepilot.workspaces.update(slug, name=name, notify_email=notify_email)
        return f"{workspace.slug}: name {workspace.name!r}, notify email {workspace.notify_email}"

    click.echo(_run(settings, update))


@main.group()
def keys() -> None:
    """Manage API keys."""


@keys.command("create")
@_settings_options
@click.option("--workspace", "workspace_slug", required=True, help="Workspace slug.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(ALL_SCOPES),
    help="Repeat for several scopes; all scopes when none is given.",
)
@click.option("--name", default="", help="A label to recognise the key by.")
def create_key(settings: Settings, workspace_slug: str, scopes: tuple[str, ...], name: str) -> None:
    """Create an API key; prints only the key (shown once)."""

    async def create(ravepilot: RavePilot) -> str:
        workspace = await ravepilot.workspaces.get_by_slug(workspace_slug)
        _, key = await ravepilot.api_keys.create(workspace.id, scopes or ALL_SCOPES, name=name)
        return key

    click.echo(_run(settings, create))


@keys.command("revoke")
@_settings_options
@click.argument("key_id")
def revoke_key(settings: Settings, key_id: str) -> None:
    """Revoke an API key by its id (key_...); it stops working at once."""

    async def revoke(ravepilot: RavePilot) -> None:
        await ravepilot.api_keys.revoke(key_id)

    _run(settings, revoke)
    click.echo(f"revoked {key_id}", err=True)


@main.command()
def plugins() -> None:
    """List every installed backend and where it comes from."""
    rows = [
        (b.kind, f"{b.scheme}://", b.target, f"{b.distribution} {b.version}")
        for b in installed_backends()
    ]
    header = ("KIND", "SCHEME", "ENTRY POINT", "DISTRIBUTION")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        click.echo(
            "  ".join(
                str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
