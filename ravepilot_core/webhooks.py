"""Webhook endpoints and their deliveries, as an operator manages them.

Registration checks the URL policy; secrets are encrypted at rest and rotate with a 24 h
overlap; re-enabling sends a test event that must succeed; failed or held deliveries can be sent
again one by one (retry) or all since a time (recover).
"""

from __future__ import annotations

import builtins
import secrets
from datetime import datetime, timedelta
from typing import Annotated

import msgspec

from ravepilot_core.context import Context
from ravepilot_core.crypto import new_webhook_secret
from ravepilot_core.dispatch import LEASE, Sender
from ravepilot_core.errors import Conflict, InvalidRequest, NotFound
from ravepilot_core.events import EVENT_TYPES, make_event, validate_event_selection
from ravepilot_core.ids import new_id
from ravepilot_core.mail import webhook_disabled_job
from ravepilot_core.models import (
    Delivery,
    DeliveryDetail,
    DeliveryResult,
    DeliveryTask,
    EventRecord,
    WebhookEndpoint,
    WebhookEndpointRecord,
)
from ravepilot_core.retries import DISABLE_AFTER
from ravepilot_core.urlpolicy import check_webhook_url

__all__ = [
    "ROTATION_OVERLAP",
    "NewWebhookEndpoint",
    "RecoverRequest",
    "TestRequest",
    "WebhookChanges",
    "WebhookService",
]

ROTATION_OVERLAP = timedelta(hours=24)  # the old secret keeps signing this long

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


class TestRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of ``POST /v1/webhooks/{id}/test``: which event name the test carries."""

    event: Annotated[str, msgspec.Meta(max_length=100)] = "webhook.test"


class RecoverRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of ``POST /v1/webhooks/{id}/recover``: re-queue what failed since then."""

    since: datetime


class WebhookService:
    """Manage a workspace's webhook endpoints and their deliveries."""

    def __init__(self, context: Context, sender: Sender) -> None:
        self._ctx = context
        self._sender = sender

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
                # The endpoint must prove it is healthy before deliveries flow to it again.
                result = await self._send_test_now(
                    msgspec.structs.replace(
                        record, endpoint=msgspec.structs.replace(endpoint, **values)
                    )
                )
                if result.outcome != "succeeded":
                    problem = result.attempt.error if result.attempt else "not sent"
                    raise Conflict(
                        f"the endpoint stays disabled: the webhook.test event sent to re-enable "
                        f"it failed ({problem}); fix the receiver and try again"
                    )
                record = await self._record(workspace_id, endpoint_id)  # the test's bookkeeping
                endpoint = record.endpoint
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
        """Return the endpoint's current signing secret."""
        record = await self._record(workspace_id, endpoint_id)
        return self._ctx.keyring.decrypt(record.secret_ciphertext)

    async def rotate_secret(self, workspace_id: str, endpoint_id: str) -> str:
        """Give the endpoint a new secret; the current one keeps signing for 24 hours."""
        record = await self._record(workspace_id, endpoint_id)
        secret = new_webhook_secret()
        await self._ctx.storage.update_webhook_endpoint(
            msgspec.structs.replace(
                record,
                secret_ciphertext=self._ctx.keyring.encrypt(secret),
                previous_secret_ciphertext=record.secret_ciphertext,
                previous_secret_expires_at=self._ctx.clock.now() + ROTATION_OVERLAP,
            )
        )
        return secret

    def _test_event(self, record: WebhookEndpointRecord, event_type: str) -> EventRecord:
        if event_type not in EVENT_TYPES:
            raise InvalidRequest(
                f"unknown event name {event_type!r}; valid names are {', '.join(EVENT_TYPES)}"
            )
        data = {
            "test": True,
            "endpoint_id": record.endpoint.id,
            "message": "A test event from RavePilot: if you can read this, your endpoint works.",
        }
        return make_event(
            event_type, workspace_id=record.workspace_id, data=data, at=self._ctx.clock.now()
        )

    async def test(
        self, workspace_id: str, endpoint_id: str, request: TestRequest | None = None
    ) -> Delivery:
        """Queue a synthetic event to this endpoint only (whatever it subscribes to)."""
        record = await self._record(workspace_id, endpoint_id)
        event = self._test_event(record, (request or TestRequest()).event)
        delivery = await self._ctx.storage.create_direct_delivery(event, endpoint_id)
        self._ctx.wake_worker()
        return delivery

    async def _send_test_now(self, record: WebhookEndpointRecord) -> DeliveryResult:
        """Send a ``webhook.test`` event right now and record it like any delivery."""
        event = self._test_event(record, "webhook.test")
        holder = f"sync-{secrets.token_hex(6)}"
        delivery = await self._ctx.storage.create_direct_delivery(
            event, record.endpoint.id, leased_to=holder, lease_until=event.created_at + LEASE
        )
        task = DeliveryTask(
            delivery_id=delivery.id,
            workspace_id=record.workspace_id,
            event_id=event.id,
            event_type=event.type,
            attempt=1,
            payload=event.payload,
            endpoint=record,
        )
        result = await self._sender.attempt(task)
        if result.outcome == "retry":  # an operator is waiting for the answer: no retries
            result = msgspec.structs.replace(result, outcome="failed", next_attempt_at=None)
        await self._ctx.storage.record_delivery_results(
            [result],
            worker_id=holder,
            at=self._ctx.clock.now(),
            disable_threshold=DISABLE_AFTER,
            disable_notice=webhook_disabled_job,
        )
        return result

    async def delivery(self, workspace_id: str, delivery_id: str) -> DeliveryDetail:
        """Return one delivery with its attempt log."""
        delivery = await self._ctx.storage.get_delivery(workspace_id, delivery_id)
        if delivery is None:
            raise NotFound(f"no delivery {delivery_id!r} in this workspace")
        attempts = await self._ctx.storage.list_delivery_attempts(delivery_id)
        return DeliveryDetail(**msgspec.structs.asdict(delivery), attempt_log=tuple(attempts))

    async def retry(self, workspace_id: str, delivery_id: str) -> Delivery:
        """Send a delivery again now, whatever its status (unless its endpoint is gone)."""
        delivery = await self._ctx.storage.get_delivery(workspace_id, delivery_id)
        if delivery is None:
            raise NotFound(f"no delivery {delivery_id!r} in this workspace")
        record = await self._ctx.storage.get_webhook_endpoint(workspace_id, delivery.endpoint_id)
        if record is None or delivery.status == "dropped":
            raise Conflict(f"delivery {delivery_id} cannot be sent: its endpoint was deleted")
        self._require_active(record)
        requeued = await self._ctx.storage.requeue_delivery(
            workspace_id, delivery_id, at=self._ctx.clock.now()
        )
        assert requeued is not None
        self._ctx.wake_worker()
        return requeued

    async def recover(self, workspace_id: str, endpoint_id: str, since: datetime) -> int:
        """Re-queue every failed or held delivery of the endpoint since ``since``."""
        record = await self._record(workspace_id, endpoint_id)
        if since.tzinfo is None:
            raise InvalidRequest("since must be an RFC 3339 time with a timezone, e.g. ...Z")
        self._require_active(record)
        count = await self._ctx.storage.recover_deliveries(
            endpoint_id, since=since, at=self._ctx.clock.now()
        )
        if count:
            self._ctx.wake_worker()
        return count

    @staticmethod
    def _require_active(record: WebhookEndpointRecord) -> None:
        if not record.endpoint.active:
            raise Conflict(
                f"endpoint {record.endpoint.id} is disabled ({record.endpoint.disabled_reason}); "
                'enable it first with PATCH {"active": true}'
            )
