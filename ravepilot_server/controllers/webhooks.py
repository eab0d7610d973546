"""``/v1/webhooks``: endpoints that receive signed events (scope ``webhooks``)."""

from __future__ import annotations

import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.params import FromPath, JSONBody

from ravepilot_core import EVENT_TYPES, NewWebhookEndpoint, WebhookChanges
from ravepilot_core.models import Delivery, DeliveryDetail, WebhookEndpoint
from ravepilot_core.webhooks import ROTATION_OVERLAP, RecoverRequest, TestRequest
from ravepilot_server.idempotency import idempotent
from ravepilot_server.openapi import documented
from ravepilot_server.request import RavePilotRequest
from ravepilot_server.schemas import (
    CreatedWebhookEndpoint,
    DeliveryList,
    Recovered,
    RotatedSecret,
    TestQueued,
    WebhookEndpointList,
)
from ravepilot_server.strict import strict_body

__all__ = ["DeliveryController", "WebhookController"]


class WebhookController(Controller):
    """Register, change, remove and inspect webhook endpoints."""

    path = "/webhooks"
    tags = ["webhooks"]
    opt = {"scope": "webhooks"}

    @post("/", status_code=201, summary="Register a webhook endpoint", responses=documented())
    async def create_endpoint(
        self, request: RavePilotRequest, data: JSONBody[NewWebhookEndpoint]
    ) -> Response[CreatedWebhookEndpoint]:
        """Register an endpoint; the response carries its secret, shown only this once."""
        spec = await strict_body(request, data)

        async def create() -> tuple[int, CreatedWebhookEndpoint]:
            endpoint, secret = await request.ravepilot.webhooks.create(
                request.principal.workspace_id, spec
            )
            return 201, CreatedWebhookEndpoint(**msgspec.structs.asdict(endpoint), secret=secret)

        return await idempotent(request, create)

    @get("/", summary="List webhook endpoints and the event catalog", responses=documented())
    async def list_endpoints(self, request: RavePilotRequest) -> WebhookEndpointList:
        """List endpoints (never with secrets) and every valid event name."""
        return WebhookEndpointList(
            data=await request.ravepilot.webhooks.list(request.principal.workspace_id),
            events=list(EVENT_TYPES),
        )

    @get("/{endpoint_id:str}", summary="Get a webhook endpoint", responses=documented())
    async def get_endpoint(
        self, request: RavePilotRequest, endpoint_id: FromPath[str]
    ) -> WebhookEndpoint:
        """Get one endpoint."""
        return await request.ravepilot.webhooks.get(request.principal.workspace_id, endpoint_id)

    @patch("/{endpoint_id:str}", summary="Change a webhook endpoint", responses=documented())
    async def update_endpoint(
        self, request: RavePilotRequest, endpoint_id: FromPath[str], data: JSONBody[WebhookChanges]
    ) -> WebhookEndpoint:
        """Change the URL, events, description, or switch the endpoint off and on."""
        changes = await strict_body(request, data)
        return await request.ravepilot.webhooks.update(
            request.principal.workspace_id, endpoint_id, changes
        )

    @delete(
        "/{endpoint_id:str}",
        status_code=204,
        summary="Remove a webhook endpoint",
        responses=documented(),
    )
    async def delete_endpoint(self, request: RavePilotRequest, endpoint_id: FromPath[str]) -> None:
        """Remove the endpoint; its pending deliveries are dropped."""
        await request.ravepilot.webhooks.delete(request.principal.workspace_id, endpoint_id)

    @get(
        "/{endpoint_id:str}/deliveries",
        summary="Recent deliveries of an endpoint",
        responses=documented(),
    )
    async def list_deliveries(
        self, request: RavePilotRequest, endpoint_id: FromPath[str]
    ) -> DeliveryList:
        """The 50 most recent deliveries, newest first."""
        return DeliveryList(
            data=await request.ravepilot.webhooks.deliveries(
                request.principal.workspace_id, endpoint_id
            )
        )

    @post(
        "/{endpoint_id:str}/rotate-secret",
        status_code=201,
        summary="Rotate an endpoint's signing secret",
        responses=documented(),
    )
    async def rotate_secret(
        self, request: RavePilotRequest, endpoint_id: FromPath[str]
    ) -> Response[RotatedSecret]:
        """Issue a new secret, shown only now; the old one keeps signing for 24 hours."""

        async def rotate() -> tuple[int, RotatedSecret]:
            secret = await request.ravepilot.webhooks.rotate_secret(
                request.principal.workspace_id, endpoint_id
            )
            expires = request.ravepilot.context.clock.now() + ROTATION_OVERLAP
            return 201, RotatedSecret(secret=secret, previous_secret_expires_at=expires)

        return await idempotent(request, rotate)

    @post(
        "/{endpoint_id:str}/test",
        status_code=202,
        summary="Send a test event to an endpoint",
        responses=documented(),
    )
    async def test_endpoint(
        self,
        request: RavePilotRequest,
        endpoint_id: FromPath[str],
        data: JSONBody[TestRequest | None] = None,
    ) -> Response[TestQueued]:
        """Queue a synthetic event (``webhook.test`` unless ``event`` names another) to it alone."""
        spec = await strict_body(request, data) if await request.body() else TestRequest()

        async def queue() -> tuple[int, TestQueued]:
            delivery = await request.ravepilot.webhooks.test(
                request.principal.workspace_id, endpoint_id, spec
            )
            return 202, TestQueued(delivery_id=delivery.id, event_type=delivery.event_type)

        return await idempotent(request, queue)

    @post(
        "/{endpoint_id:str}/recover",
        status_code=202,
        summary="Re-queue failed and held deliveries since a time",
        responses=documented(),
    )
    async def recover(
        self, request: RavePilotRequest, endpoint_id: FromPath[str], data: JSONBody[RecoverRequest]
    ) -> Recovered:
        """Queue again every failed or held delivery of the endpoint created since ``since``."""
        spec = await strict_body(request, data)
        count = await request.ravepilot.webhooks.recover(
            request.principal.workspace_id, endpoint_id, spec.since
        )
        return Recovered(queued=count)


class DeliveryController(Controller):
    """Inspect one delivery and send it again."""

    path = "/deliveries"
    tags = ["webhooks"]
    opt = {"scope": "webhooks"}

    @get(
        "/{delivery_id:str}", summary="Get a delivery with its attempt log", responses=documented()
    )
    async def get_delivery(
        self, request: RavePilotRequest, delivery_id: FromPath[str]
    ) -> DeliveryDetail:
        """One delivery and every attempt made (target IP, status, latency, error, body)."""
        return await request.ravepilot.webhooks.delivery(
            request.principal.workspace_id, delivery_id
        )

    @post(
        "/{delivery_id:str}/retry",
        status_code=202,
        summary="Send a delivery again now",
        responses=documented(),
    )
    async def retry_delivery(
        self, request: RavePilotRequest, delivery_id: FromPath[str]
    ) -> Delivery:
        """Queue the delivery to be sent at once, whatever its status (not a dropped one)."""
        return await request.ravepilot.webhooks.retry(request.principal.workspace_id, delivery_id)
