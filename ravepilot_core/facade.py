"""The :class:`RavePilot` facade: what an embedding application holds."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

from ravepilot_core.api_keys import ApiKeyService
from ravepilot_core.backends import open_backend
from ravepilot_core.clock import SystemClock
from ravepilot_core.collectors import CollectorService
from ravepilot_core.config import Settings
from ravepilot_core.context import Context, Resolver, resolve_with_dns
from ravepilot_core.crypto import Keyring
from ravepilot_core.dispatch import Dispatcher, Sender
from ravepilot_core.erasure import ErasureService
from ravepilot_core.foreground import Foreground
from ravepilot_core.idempotency import IdempotencyService
from ravepilot_core.invitations import InvitationService
from ravepilot_core.jobs import JobWorker
from ravepilot_core.metrics import Metrics
from ravepilot_core.portal import PortalService
from ravepilot_core.protocols import Clock, Mailer, MediaStore, Renderer, Storage, Transcriber
from ravepilot_core.renders import RenderService
from ravepilot_core.review import ReviewService
from ravepilot_core.submissions import SubmissionService
from ravepilot_core.uploads import UploadService
from ravepilot_core.webhooks import WebhookService
from ravepilot_core.worker import Worker
from ravepilot_core.workspaces import WorkspaceService

__all__ = ["RavePilot"]

log = logging.getLogger("ravepilot")


class RavePilot:
    """RavePilot's services over one set of backends.

    Example::

        async with await RavePilot.from_settings(Settings.from_env()) as rp:
            workspace = await rp.workspaces.get_by_slug("default")
            result = await rp.invitations.create(
                workspace.id, InvitationRequest(customer_email="marjorie@acme.com")
            )
            print(result.link)
    """

    def __init__(
        self,
        *,
        storage: Storage,
        mailer: Mailer,
        secret_key: str,
        media: MediaStore | None = None,
        transcriber: Transcriber | None = None,
        renderer: Renderer | None = None,
        max_upload_bytes: int = 1024**3,
        public_url: str = "http://127.0.0.1:8000",
        mail_from: str = "RavePilot <noreply@localhost>",
        clock: Clock | None = None,
        allow_private_webhooks: bool = False,
        resolver: Resolver = resolve_with_dns,
    ) -> None:
        self.context = Context(
            storage=storage,
            mailer=mailer,
            clock=clock or SystemClock(),
            keyring=Keyring(secret_key),
            public_url=public_url,
            mail_from=mail_from,
            allow_private_webhooks=allow_private_webhooks,
            resolver=resolver,
            media_store=media,
            transcriber=transcriber,
            renderer=renderer,
            max_upload_bytes=max_upload_bytes,
        )
        if allow_private_webhooks:
            log.warning(
                "private and plain-http webhook URLs are allowed: use this only in development"
            )
        self.metrics = Metrics()
        self.sender = Sender(self.context)
        self.workspaces = WorkspaceService(self.context)
        self.api_keys = ApiKeyService(self.context)
        self.collectors = CollectorService(self.context)
        self.submissions = SubmissionService(self.context)
        self.invitations = InvitationService(self.context, self.collectors, self.submissions)
        self.webhooks = WebhookService(self.context, self.sender)
        self.idempotency = IdempotencyService(self.context)
        self.erasure = ErasureService(self.context, self.submissions)
        self.portal = PortalService(self.context, self.submissions, self.erasure)
        self.uploads = UploadService(self.context)
        self.renders = RenderService(self.context)
        self.review = ReviewService(self.context, self.renders)

    @classmethod
    async def from_settings(cls, settings: Settings, *, clock: Clock | None = None) -> RavePilot:
        """Open the backends the settings name (migrating storage) and return a RavePilot."""
        secret_key = settings.load_secret_key()
        storage = await open_backend("storage", settings.resolved_database_url)
        opened: list[Any] = []
        try:
            await storage.migrate()
            mailer = await open_backend("mailer", settings.resolved_mailer_url)
            opened.append(mailer)
            media = await open_backend("media", settings.resolved_media_url)
            opened.append(media)
            transcriber = renderer = None
            if settings.transcriber_url != "none":
                transcriber = await open_backend("transcriber", settings.transcriber_url)
                opened.append(transcriber)
            if settings.renderer_url != "none":
                renderer = await open_backend("renderer", settings.renderer_url)
        except BaseException:
            for backend in reversed(opened):
                await backend.close()
            await storage.close()
            raise
        return cls(
            storage=storage,
            mailer=mailer,
            secret_key=secret_key,
            media=media,
            transcriber=transcriber,
            renderer=renderer,
            max_upload_bytes=settings.max_clip_bytes,
            public_url=settings.public_url,
            mail_from=settings.mail_from,
            clock=clock,
            allow_private_webhooks=settings.allow_private_webhooks,
        )

    @property
    def foreground(self) -> Foreground:
        """The requests this app is answering, which an in-process worker steps aside for.

        Wrap each request in ``with ravepilot.foreground.serving():`` (docs/embedding.md).
        """
        return self.context.foreground

    @property
    def storage(self) -> Storage:
        """The storage backend."""
        return self.context.storage

    def worker(
        self,
        *,
        concurrency: int = 4,
        poll_interval: float = 5.0,
        webhook_concurrency: int = 256,
        webhook_per_endpoint: int = 64,
        webhook_poll_interval: float = 1.0,
    ) -> Worker:
        """Return a background worker; run it with ``await worker.run()`` in a task group.

        Commits made through this instance wake it at once; the poll intervals bound how late
        it notices work committed by other processes (and retries falling due).

        Args:
            concurrency: jobs (emails, media work) run at once.
            poll_interval: seconds between looks for due jobs when nothing wakes the worker.
            webhook_concurrency: webhook requests in flight at once.
            webhook_per_endpoint: webhook requests in flight to any one endpoint, so a slow
                endpoint cannot take every slot.
            webhook_poll_interval: seconds between looks for due deliveries when nothing wakes
                the worker.
        """
        return Worker(
            self.context,
            JobWorker(self.context, concurrency=concurrency, poll_interval=poll_interval),
            Dispatcher(
                self.context,
                self.sender,
                self.metrics,
                concurrency=webhook_concurrency,
                per_endpoint=webhook_per_endpoint,
                poll_interval=webhook_poll_interval,
            ),
            self.uploads,
        )

    async def close(self) -> None:
        """Close the backends."""
        try:
            await self.sender.close()
            await self.context.mailer.close()
            for backend in (
                self.context.media_store,
                self.context.transcriber,
                self.context.renderer,
            ):
                if backend is not None:
                    await backend.close()
        finally:
            await self.context.storage.close()

    async def __aenter__(self) -> RavePilot:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
