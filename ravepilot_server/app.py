"""``create_app(settings)``: the Litestar reference server. Nothing happens at import time."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from litestar import Litestar, Router
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from ravepilot_core import RavePilot, Settings, __version__
from ravepilot_server.allow import allow_header_middleware
from ravepilot_server.auth import api_key_middleware
from ravepilot_server.controllers import (
    ClipController,
    CollectorController,
    DeliveryController,
    InvitationController,
    PortalApiController,
    PortalPageController,
    RenderController,
    SubmissionController,
    TusController,
    WebhookController,
    health,
    media,
    metrics,
)
from ravepilot_server.controllers.portal_pages import portal_static_router, portal_template_config
from ravepilot_server.errors import handle_exception
from ravepilot_server.foreground import foreground_middleware
from ravepilot_server.process import tune_for_serving
from ravepilot_server.ratelimit import PortalRateLimit
from ravepilot_server.request import RavePilotRequest

__all__ = ["app_from_env", "create_app"]


def create_app(
    settings: Settings | None = None,
    *,
    ravepilot: RavePilot | None = None,
    run_worker: bool = True,
) -> Litestar:
    """Return the RavePilot ASGI app.

    Args:
        settings: where the backends are; read from the environment when omitted.
        ravepilot: an already-open RavePilot to serve (embedding, tests); the caller closes it.
        run_worker: also run the background worker (emails, webhooks) in this process.
    """
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        owned = ravepilot is None
        instance = ravepilot or await RavePilot.from_settings(settings)
        app.state.ravepilot = instance
        try:
            async with anyio.create_task_group() as group:
                if run_worker:
                    worker = instance.worker(
                        webhook_concurrency=settings.webhook_concurrency,
                        webhook_per_endpoint=settings.webhook_per_endpoint,
                    )
                    group.start_soon(worker.run)
                yield
                group.cancel_scope.cancel()
        finally:
            if owned:
                await instance.close()

    api = Router(
        path="/v1",
        route_handlers=[
            InvitationController,
            SubmissionController,
            ClipController,
            RenderController,
            CollectorController,
            WebhookController,
            DeliveryController,
        ],
        middleware=[api_key_middleware],
        security=[{"BearerAuth": []}, {"ApiKeyHeader": []}],
    )
    portal = Router(
        path="/",
        route_handlers=[PortalPageController, PortalApiController, TusController, media],
        middleware=[
            PortalRateLimit(
                per_token=settings.portal_rate_limit, per_address=4 * settings.portal_rate_limit
            )
        ],
    )
    return Litestar(
        route_handlers=[api, portal, portal_static_router(), health, metrics],
        template_config=portal_template_config(),
        request_class=RavePilotRequest,  # handlers read request.ravepilot and .principal
        exception_handlers={Exception: handle_exception},
        middleware=[foreground_middleware, allow_header_middleware],
        lifespan=[lifespan],
        request_max_body_size=settings.max_body_bytes,
        # Logging belongs to the process (the CLI's basicConfig, or the embedding app). Litestar's
        # default replaced the root logger's handlers with a queue drained by a thread, which
        # changed the format and cost each log line a hand-off of the GIL (~0.15 ms an email).
        # Unexpected errors are logged by handle_exception.
        logging_config=None,
        openapi_config=OpenAPIConfig(
            title="RavePilot API",
            version=__version__,
            description="Invite customers, collect video testimonials, receive signed webhooks.",
            path="/schema",
            render_plugins=[ScalarRenderPlugin()],
            components=Components(
                security_schemes={
                    "BearerAuth": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="Authorization: Bearer rp_live_...",
                    ),
                    "ApiKeyHeader": SecurityScheme(
                        type="apiKey", name="X-API-Key", security_scheme_in="header"
                    ),
                }
            ),
        ),
        debug=False,
    )


def app_from_env() -> Litestar:
    """Factory for ``uvicorn --factory`` and multi-worker serving: settings from the environment."""
    run_worker = os.environ.get("RAVEPILOT_RUN_WORKER", "true").lower() not in ("0", "false", "no")
    tune_for_serving()  # this process is a server's: `serve --workers N` started it
    return create_app(Settings.from_env(), run_worker=run_worker)
