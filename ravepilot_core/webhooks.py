"""Webhook endpoints: registration with URL policy, secrets encrypted at rest, delivery logs."""

from __future__ import annotations

import builtins
from typing import Annotated

import msgspec

from ravepilot_core.context import Context
from ravepilot_core.crypto import new_webhook_secret
from ravepilot_core.errors import NotFound
from ravepilot_core.events import validate_event_selection
from ravepilot_core.ids import new_id
from ravepilot_core.models import Delivery, WebhookEndpoint, WebhookEndpointRecord
from ravepilot_core.urlpolicy import check_webhook_url

__all__ = ["NewWebhookEndpoint", "WebhookChanges", "WebhookService"]

Description = Annotated[str, msgspec.Meta(max_length=500)]
EventNames = Annotated[
    list[Annotated[str, msgspec.Meta(max_length=100)]], msgspec.Meta(max_length=50)
]


class NewWebhookEndpoint(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of ``POST /v1/webhooks``."""

    url: Annotated[str, msgspec.Meta(max_length=2048)]
    events: EventNames = msgspec.field(default_factory=lambda: ["*"])
    description: Description | None = None


class WebhookChanges(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of ``PATCH /v1/webhooks/{id}``: fields left out keep their value."""

    url: Annotated[str, msgspec.Meta(max_length=2048)] | msgspec.UnsetType = msgspec.UNSET
    events: EventNames | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType | None = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET


class WebhookService:
    """Manage a workspace's webhook endpoints."""

    def __init__(self, context: Context) -> None:
        self._ctx = context

    async def _check_url(self, url: str) -> str:
        return await check_webhook_url(
            url, resolver=self._ctx.resolver, allow_private=self._ctx.allow_private_webhooks
        )

    async def create(
        self, workspace_id: str, spec: NewWebhookEndpoint
    ) -> tuple[WebhookEndpoint, str]:
        """Register an endpoint; returns it and its ``whsec_`` secret (shown only now)."""
        url = await self._check_url(spec.url)
        events = validate_event_selection(spec.events)
        now = self._ctx.clock.now()
        secret = new_webhook_secret()
        endpoint = WebhookEndpoint(
            id=new_id("we", now),
            url=url,
            events=events,
            description=spec.description,
            created_at=now,
        )
        await self._ctx.storage.create_webhook_endpoint(
            WebhookEndpointRecord(
                workspace_id=workspace_id,
                endpoint=endpoint,
                secret_ciphertext=self._ctx.keyring.encrypt(secret),
            )
        )
        return endpoint, secret

    async def _record(self, workspace_id: str, endpoint_id: str) -> WebhookEndpointRecord:
        record = await self._ctx.storage.get_webhook_endpoint(workspace_id, endpoint_id)
        if record is None:
            raise NotFound(f"no webhook endpoint {endpoint_id!r} in this workspace")
        return record

    async def get(self, workspace_id: str, endpoint_id: str) -> WebhookEndpoint:
        """Return one endpoint or raise NotFound."""
        return (await self._record(workspace_id, endpoint_id)).endpoint

    async def list(self, workspace_id: str) -> list[WebhookEndpoint]:
        """Return the workspace's endpoints, newest first."""
        return [r.endpoint for r in await self._ctx.storage.list_webhook_endpoints(workspace_id)]

    async def update(
        self, workspace_id: str, endpoint_id: str, changes: WebhookChanges
    ) -> WebhookEndpoint:
        """Change an endpoint's URL, events, description or active flag."""
        record = await self._record(workspace_id, endpoint_id)
        endpoint = record.endpoint
        values: dict[str, object] = {}
        if changes.url is not msgspec.UNSET:
            values["url"] = await self._check_url(changes.url)
        if changes.events is not msgspec.UNSET:
            values["events"] = validate_event_selection(changes.events)
        if changes.description is not msgspec.UNSET:
            values["description"] = changes.description
        if changes.active is not msgspec.UNSET and changes.active != endpoint.active:
            if changes.active:
                # Re-enabling clears the failure streak; the delivery engine (issue #3) adds
                # the test send that must succeed first.
                values.update(
                    active=True,
                    disabled_reason=None,
                    failure_count=0,
                    first_failure_at=None,
                    auto_disabled_at=None,
                )
            else:
                values.update(active=False, disabled_reason="manual")
        if not values:
            return endpoint
        updated = msgspec.structs.replace(endpoint, **values)
        await self._ctx.storage.update_webhook_endpoint(
            msgspec.structs.replace(record, endpoint=updated)
        )
        return updated

    async def delete(self, workspace_id: str, endpoint_id: str) -> None:
        """Delete an endpoint; its pending deliveries are dropped and never sent."""
        if not await self._ctx.storage.delete_webhook_endpoint(workspace_id, endpoint_id):
            raise NotFound(f"no webhook endpoint {endpoint_id!r} in this workspace")

    async def deliveries(self, workspace_id: str, endpoint_id: str) -> builtins.list[Delivery]:
        """Return the endpoint's 50 most recent deliveries, newest first."""
        await self._record(workspace_id, endpoint_id)
        return await self._ctx.storage.list_deliveries(endpoint_id, limit=50)

    async def secret(self, workspace_id: str, endpoint_id: str) -> str:
        """Return the endpoint's current signing secret (for the delivery engine)."""
        record = await self._record(workspace_id, endpoint_id)
        return self._ctx.keyring.decrypt(record.secret_ciphertext)
